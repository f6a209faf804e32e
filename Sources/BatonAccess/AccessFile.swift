// The rule file of `batond --acl` (Proto/PROTOCOL.md §17.1): one rule or token per line, fields
// separated by blanks, `#` starts a comment. A line format, so a rule is one line in a diff.
//
//     # PREFIX       PRINCIPAL     PERMISSIONS
//     token ci /etc/baton/ci.token
//     /              group:ops     all
//     /locks/orders  user:alice    read,lock,watch
//     /locks         token:ci      lock
//     /secret        *             none

/// What a rule file says, names resolved.
public struct AccessFileContents: Sendable, Equatable {
    public var policy: AccessPolicy
    /// Named TCP tokens: name -> the file holding the token (read by the shell, as `--tcp-token-file`).
    public var tokenFiles: [String: String]
}

/// A rule file that cannot be used, with the line that says why.
public struct AccessFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var message: String
    public var description: String { "line \(line): \(message)" }
}

public enum AccessFile {
    /// Rules in one file; more is a mistake worth a clear refusal (each request scans them).
    public static let rulesMax = 10_000
    /// The principal the single `--tcp-token-file` token authenticates as.
    public static let defaultTokenName = "default"

    /// Parses a rule file. `user`/`group` look names up (the shell: getpwnam, getgrnam); `uid:N` and
    /// `gid:N` need no lookup. A `token:NAME` principal must be declared by a `token` line or be
    /// `token:default` when `hasDefaultToken` (the `--tcp-token-file` token).
    public static func parse(_ text: String, hasDefaultToken: Bool = false,
                             user: (String) -> UInt32?, group: (String) -> UInt32?) throws(AccessFileError) -> AccessFileContents {
        var rules: [AccessRule] = []
        var tokenFiles: [String: String] = [:]
        var tokenUses: [(name: String, line: Int)] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            let content = rawLine.prefix { $0 != "#" }
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            if fields.isEmpty { continue }
            if fields[0] == "token" {
                guard fields.count == 3 else {
                    throw AccessFileError(line: number, message: "a token line is: token NAME FILE")
                }
                let name = fields[1]
                guard isName(name) else {
                    throw AccessFileError(line: number, message: "token name \"\(name)\": use letters, digits, '-', '_' and '.'")
                }
                guard tokenFiles[name] == nil, !(hasDefaultToken && name == defaultTokenName) else {
                    throw AccessFileError(line: number, message: "token \(name) is declared twice")
                }
                guard fields[2].hasPrefix("/") else {
                    throw AccessFileError(line: number, message: "the token file must be an absolute path, not \(fields[2])")
                }
                tokenFiles[name] = fields[2]
                continue
            }
            guard fields.count == 3 else {
                throw AccessFileError(line: number, message: "a rule is: PREFIX PRINCIPAL PERMISSIONS (\(fields.count) fields found)")
            }
            let prefix = try self.prefix(fields[0], line: number)
            let principal = try self.principal(fields[1], line: number, user: user, group: group)
            if case .token(let name) = principal { tokenUses.append((name, number)) }
            let permissions = try self.permissions(fields[2], line: number)
            rules.append(AccessRule(prefix: prefix, principal: principal, permissions: permissions))
            guard rules.count <= rulesMax else {
                throw AccessFileError(line: number, message: "more than \(rulesMax) rules")
            }
        }
        for use in tokenUses where tokenFiles[use.name] == nil && !(hasDefaultToken && use.name == defaultTokenName) {
            let hint = use.name == defaultTokenName ? " (token:default is the --tcp-token-file token, and there is none)" : ""
            throw AccessFileError(line: use.line, message: "token \(use.name) is not declared by a token line\(hint)")
        }
        return AccessFileContents(policy: AccessPolicy(rules: rules), tokenFiles: tokenFiles)
    }

    private static func isName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
    }

    private static func prefix(_ field: String, line: Int) throws(AccessFileError) -> String {
        guard field.hasPrefix("/") else {
            throw AccessFileError(line: line, message: "the prefix must be an absolute path such as /locks, not \(field)")
        }
        var prefix = Substring(field)
        while prefix.count > 1 && prefix.hasSuffix("/") { prefix = prefix.dropLast() }
        if prefix.contains("//") || prefix.split(separator: "/").contains(where: { $0 == "." || $0 == ".." }) {
            throw AccessFileError(line: line, message: "the prefix \(field) has an empty, . or .. component")
        }
        return String(prefix)
    }

    private static func principal(_ field: String, line: Int, user: (String) -> UInt32?,
                                   group: (String) -> UInt32?) throws(AccessFileError) -> AccessPrincipal {
        if field == "*" { return .anyone }
        guard let colon = field.firstIndex(of: ":") else {
            throw AccessFileError(line: line, message: "principal \(field): use user:NAME, uid:N, group:NAME, gid:N, token:NAME or *")
        }
        let kind = field[..<colon]
        let value = String(field[field.index(after: colon)...])
        guard !value.isEmpty else { throw AccessFileError(line: line, message: "principal \(field) names no one") }
        switch kind {
        case "uid":
            guard let id = UInt32(value) else { throw AccessFileError(line: line, message: "uid \(value) is not a number") }
            return .user(id)
        case "gid":
            guard let id = UInt32(value) else { throw AccessFileError(line: line, message: "gid \(value) is not a number") }
            return .group(id)
        case "user":
            guard let id = user(value) else { throw AccessFileError(line: line, message: "no such user: \(value)") }
            return .user(id)
        case "group":
            guard let id = group(value) else { throw AccessFileError(line: line, message: "no such group: \(value)") }
            return .group(id)
        case "token":
            guard isName(value) else { throw AccessFileError(line: line, message: "token name \"\(value)\" is not valid") }
            return .token(value)
        default:
            throw AccessFileError(line: line, message: "principal \(field): use user:NAME, uid:N, group:NAME, gid:N, token:NAME or *")
        }
    }

    private static func permissions(_ field: String, line: Int) throws(AccessFileError) -> AccessPermissions {
        if field == "all" { return .all }
        if field == "none" { return [] }
        var permissions: AccessPermissions = []
        for name in field.split(separator: ",", omittingEmptySubsequences: false) {
            guard let named = AccessPermissions.named.first(where: { $0.name == name }) else {
                let known = AccessPermissions.named.map(\.name).joined(separator: ", ")
                throw AccessFileError(line: line, message: "unknown permission \"\(name)\": use \(known), all or none")
            }
            permissions.insert(named.permission)
        }
        return permissions
    }
}
