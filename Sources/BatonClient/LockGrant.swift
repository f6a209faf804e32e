import BatonProtocol

/// A granted hold on a lock: pass it to `release` (which names the hold by `node` and `token`: node
/// paths repeat, tokens do not). `token` is the fencing token: it increases strictly with every grant
/// of the same lock, so for an exclusive lock a resource can refuse writes carrying an older one;
/// shared and semaphore holds overlap, so there ask `checkToken` (PROTOCOL.md §12.6).
public struct LockGrant: Sendable, Hashable, CustomStringConvertible {
    /// The lock's path, as passed to `acquire`.
    public var path: String
    /// The waiter node the sidecar created for this hold (what `release` names and `locks` lists).
    public var node: String
    public var token: UInt64
    public var kind: LockKind

    public init(path: String, node: String, token: UInt64, kind: LockKind) {
        self.path = path
        self.node = node
        self.token = token
        self.kind = kind
    }

    public var description: String { "\(kind) \(path) token \(token) node \(node)" }
}

/// A hold that ended other than by its holder's release (lease expired, session expired, node deleted,
/// sidecar lost its backend).
public struct LockLost: Sendable, Equatable {
    public var node: String
    public var token: UInt64
    public var reason: LockLostReason
    public init(node: String, token: UInt64, reason: LockLostReason) {
        self.node = node
        self.token = token
        self.reason = reason
    }
}
