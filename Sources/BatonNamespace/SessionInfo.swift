import BatonProtocol

/// A session as the namespace sees it: identity, secret and liveness deadline.
public struct SessionInfo: Sendable, Equatable {
    public var id: UInt64
    public var secret: SessionSecret
    public var timeoutMilliseconds: UInt32
    /// Monotonic time after which the session expires unless refreshed.
    public var deadlineMilliseconds: UInt64

    public init(id: UInt64, secret: SessionSecret, timeoutMilliseconds: UInt32, deadlineMilliseconds: UInt64) {
        self.id = id
        self.secret = secret
        self.timeoutMilliseconds = timeoutMilliseconds
        self.deadlineMilliseconds = deadlineMilliseconds
    }
}
