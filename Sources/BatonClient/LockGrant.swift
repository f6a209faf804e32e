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
    /// The owner token of a reentrant acquire, or nil (PROTOCOL.md §12.9).
    public var owner: String?
    /// How many acquires of `owner` the hold counted when this one was answered (1 without an owner):
    /// the node goes at the release that brings the count to zero. Every such acquire returns the same
    /// `node` and `token`.
    public var holdCount: UInt32

    public init(path: String, node: String, token: UInt64, kind: LockKind, owner: String? = nil, holdCount: UInt32 = 1) {
        self.path = path
        self.node = node
        self.token = token
        self.kind = kind
        self.owner = owner
        self.holdCount = holdCount
    }

    public var description: String {
        "\(kind) \(path) token \(token) node \(node)" + (owner.map { " owner \($0) count \(holdCount)" } ?? "")
    }
}

/// Someone asks this session to give up a revocable hold (PROTOCOL.md §12.11).
public struct RevocationRequest: Sendable, Equatable {
    public var node: String
    public var token: UInt64
    /// The asking session.
    public var requester: UInt64
    public init(node: String, token: UInt64, requester: UInt64) {
        self.node = node
        self.token = token
        self.requester = requester
    }
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
