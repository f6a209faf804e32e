import BatonProtocol

// Access control (Proto/PROTOCOL.md §17): who may do what under which path. Pure: the rules, the
// identity of a connection and a path in, a decision out. No files, no users database, no clock;
// the shell resolves names to ids when it loads the rule file (AccessFile.parse takes resolvers).

/// The operations a rule grants. One request needs one or more (`AccessPolicy.requirements`).
public struct AccessPermissions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let read = AccessPermissions(rawValue: 1 << 0)
    public static let write = AccessPermissions(rawValue: 1 << 1)
    public static let create = AccessPermissions(rawValue: 1 << 2)
    public static let delete = AccessPermissions(rawValue: 1 << 3)
    public static let lock = AccessPermissions(rawValue: 1 << 4)
    public static let watch = AccessPermissions(rawValue: 1 << 5)
    public static let admin = AccessPermissions(rawValue: 1 << 6)
    public static let all: AccessPermissions = [.read, .write, .create, .delete, .lock, .watch, .admin]

    /// The names the rule file uses, in a fixed order.
    public static let named: [(name: String, permission: AccessPermissions)] = [
        ("read", .read), ("write", .write), ("create", .create), ("delete", .delete),
        ("lock", .lock), ("watch", .watch), ("admin", .admin),
    ]

    /// "read,lock", "none" for the empty set.
    public var description: String {
        let names = AccessPermissions.named.filter { contains($0.permission) }.map(\.name)
        return names.isEmpty ? "none" : names.joined(separator: ",")
    }
}

/// Whom a rule names.
public enum AccessPrincipal: Sendable, Hashable {
    /// A Unix user, by uid (SO_PEERCRED on the Unix socket).
    case user(UInt32)
    /// Members of a Unix group, primary or supplementary, by gid.
    case group(UInt32)
    /// A TCP client that authenticated with the named token.
    case token(String)
    /// Every connection (`*`).
    case anyone
}

/// Who is behind a connection, as far as the rules care.
public struct AccessIdentity: Sendable, Equatable {
    public var userID: UInt32?
    /// Primary and supplementary groups of `userID`, resolved when the connection was accepted.
    public var groupIDs: [UInt32]
    /// The name of the token a TCP connection authenticated with.
    public var tokenName: String?

    public init(userID: UInt32? = nil, groupIDs: [UInt32] = [], tokenName: String? = nil) {
        self.userID = userID
        self.groupIDs = groupIDs
        self.tokenName = tokenName
    }

    public func matches(_ principal: AccessPrincipal) -> Bool {
        switch principal {
        case .anyone: true
        case .user(let id): userID == id
        case .group(let id): groupIDs.contains(id)
        case .token(let name): tokenName == name
        }
    }

    /// "uid=1001", "token=ci", for logs.
    public var description: String {
        if let tokenName { return "token=\(tokenName)" }
        if let userID { return "uid=\(userID)" }
        return "unidentified"
    }
}

/// One line of the rule file: under `prefix`, `principal` may do `permissions`.
public struct AccessRule: Sendable, Equatable {
    /// A valid absolute path without a trailing slash ("/" is the root): it covers itself and
    /// everything below it, by whole path components (`/a` covers `/a/b`, not `/ab`).
    public var prefix: String
    public var principal: AccessPrincipal
    public var permissions: AccessPermissions
    public init(prefix: String, principal: AccessPrincipal, permissions: AccessPermissions) {
        self.prefix = prefix
        self.principal = principal
        self.permissions = permissions
    }

    /// By Swift's `==` on characters (canonical equivalence), as the namespace finds a node by its
    /// path: two spellings of one node must get one decision, or a rule could be bypassed by the other.
    public func covers(_ path: String) -> Bool {
        guard path.hasPrefix(prefix) else { return false }
        if prefix == "/" { return true }
        let rest = path.dropFirst(prefix.count)
        return rest.isEmpty || rest.first == "/"
    }
}

/// The rules in force. The decision: among the rules whose prefix covers the path and whose
/// principal matches the identity, the ones with the longest (most specific) prefix decide, and
/// grant the union of their permissions; rules under shorter prefixes are not consulted. No rule
/// matches: nothing is permitted. So a more specific rule can narrow rights as well as widen them
/// (`/secret * none` takes away from everyone what `/` gave).
public struct AccessPolicy: Sendable, Equatable {
    public var rules: [AccessRule]
    public init(rules: [AccessRule]) { self.rules = rules }

    public func permissions(of identity: AccessIdentity, at path: String) -> AccessPermissions {
        var bestLength = -1
        var granted: AccessPermissions = []
        for rule in rules where identity.matches(rule.principal) && rule.covers(path) {
            let length = rule.prefix.utf8.count
            if length > bestLength {
                bestLength = length
                granted = rule.permissions
            } else if length == bestLength {
                granted.formUnion(rule.permissions)
            }
        }
        return granted
    }

    /// The rules that name `identity`, in order: the same decisions for it as the whole policy, at
    /// a cost per request of the rules that concern it (the engine keeps one per connection).
    public func narrowed(to identity: AccessIdentity) -> AccessPolicy {
        AccessPolicy(rules: rules.filter { identity.matches($0.principal) })
    }

    /// The first requirement of `request` that `identity` lacks, or nil if it may go on.
    public func denial(of request: Request, by identity: AccessIdentity) -> AccessRequirement? {
        AccessPolicy.requirements(of: request).first { !permissions(of: identity, at: $0.path).contains($0.permission) }
    }

    /// What a request needs, on which path (the table in PROTOCOL.md §17.3). Requests without a
    /// path (handshake, sessions, ping, authenticate, cancel) need nothing: they touch only the
    /// connection's own state. `multi` needs what each of its operations needs.
    public static func requirements(of request: Request) -> [AccessRequirement] {
        switch request {
        case .hello, .openSession, .resumeSession, .closeSession, .ping, .authenticate, .cancel, .removeWatches:
            return []
        case .create(let path, _, _):
            return [AccessRequirement(.create, path)]
        case .delete(let path, _):
            return [AccessRequirement(.delete, path)]
        case .set(let path, _, _):
            return [AccessRequirement(.write, path)]
        case .check(let path, _):
            return [AccessRequirement(.read, path)]
        case .exists(let path, let watch), .get(let path, let watch), .children(let path, let watch, _, _):
            return watch ? [AccessRequirement(.read, path), AccessRequirement(.watch, path)] : [AccessRequirement(.read, path)]
        case .addWatch(let path, _):
            // A recursive watch is judged on its path alone: its events name changes anywhere below.
            return [AccessRequirement(.read, path), AccessRequirement(.watch, path)]
        case .multi(let operations):
            return operations.enumerated().map { index, operation in
                switch operation {
                case .create(let path, _, _): AccessRequirement(.create, path, operationIndex: index)
                case .delete(let path, _): AccessRequirement(.delete, path, operationIndex: index)
                case .set(let path, _, _): AccessRequirement(.write, path, operationIndex: index)
                case .check(let path, _): AccessRequirement(.read, path, operationIndex: index)
                }
            }
        case .acquire(let lock):
            return [AccessRequirement(.lock, lock.path)]
        case .release(let node, _), .renew(let node, _, _):
            // The waiter node lies under the lock's path, so the lock's rules cover it.
            return [AccessRequirement(.lock, node)]
        case .acquireAll(let locks, _, _):
            return locks.map { AccessRequirement(.lock, $0.path) }
        case .requestRevocation(let path):
            return [AccessRequirement(.lock, path)]
        case .checkToken(let path, _), .inspect(let path):
            return [AccessRequirement(.read, path)]
        case .forceRelease(let path, _):
            return [AccessRequirement(.admin, path)]
        case .backup:
            // A copy of the whole tree.
            return [AccessRequirement(.admin, "/")]
        }
    }
}

/// One permission a request needs on one path.
public struct AccessRequirement: Sendable, Equatable {
    public var permission: AccessPermissions
    public var path: String
    /// Which operation of a `multi` needs it.
    public var operationIndex: Int?
    public init(_ permission: AccessPermissions, _ path: String, operationIndex: Int? = nil) {
        self.permission = permission
        self.path = path
        self.operationIndex = operationIndex
    }
}
