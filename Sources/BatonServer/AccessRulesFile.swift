import BatonAccess
import BatonEngine
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads the rule file of `batond --acl` (Proto/PROTOCOL.md §17.1) and what it names: users and
/// groups are looked up (getpwnam, getgrnam), the named tokens read like `--tcp-token-file`.
/// Used at start (a bad file refuses to start) and on SIGHUP (a bad file keeps the old rules).
public enum AccessRulesFile {
    /// A rule file is written by hand: more than this is a mistake.
    public static let fileBytesMax = 4 * 1_048_576

    public struct Loaded: Sendable {
        public var policy: AccessPolicy
        public var namedTokens: [String: [UInt8]]
    }

    public static func load(path: String, hasDefaultToken: Bool) throws(ServerError) -> Loaded {
        let text = try readText(path)
        let contents: AccessFileContents
        do throws(AccessFileError) {
            contents = try AccessFile.parse(text, hasDefaultToken: hasDefaultToken, user: userID(named:), group: groupID(named:))
        } catch {
            throw ServerError("access rules \(path): \(error)")
        }
        var tokens: [String: [UInt8]] = [:]
        for (name, file) in contents.tokenFiles {
            do throws(ServerError) {
                tokens[name] = try TokenFile.load(path: file, what: "token \(name)")
            } catch {
                throw ServerError("access rules \(path): \(error.message)")
            }
        }
        return Loaded(policy: contents.policy, namedTokens: tokens)
    }

    private static func readText(_ path: String) throws(ServerError) -> String {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard descriptor >= 0 else {
            throw ServerError("cannot open the access rules \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ServerError("cannot read the access rules \(path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            bytes += chunk[0..<count]
            guard bytes.count <= fileBytesMax else {
                throw ServerError("the access rules \(path) are larger than \(fileBytesMax) bytes")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ServerError("the access rules \(path) are not UTF-8 text")
        }
        return text
    }

    static func userID(named name: String) -> UInt32? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        guard getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.pw_uid
    }

    static func groupID(named name: String) -> UInt32? {
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 65_536)
        guard getgrnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.gr_gid
    }

    /// The groups of a user, primary and supplementary (getgrouplist); only the primary one for a
    /// uid without a passwd entry.
    static func groupIDs(ofUser userID: UInt32) -> [UInt32] {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        guard getpwuid_r(userID, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else {
            return []
        }
        let primary = entry.pw_gid
        var count: Int32 = 64
        while true {
            var groups = [gid_t](repeating: 0, count: Int(count))
            let wanted = count
            if getgrouplist(name, primary, &groups, &count) >= 0 { return Array(groups.prefix(Int(count))) }
            // Too small: count now says how many there are (bounded: a user is in at most NGROUPS_MAX).
            guard count > wanted, count <= 65_536 else { return [primary] }
        }
    }
}
