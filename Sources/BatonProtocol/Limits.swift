/// Every bound the daemon enforces, in one place, with the relations between them asserted.
/// Each limit, when hit, produces a named `ErrorCode`.
public struct Limits: Sendable, Equatable {
    /// Largest frame body (after the 4-byte length prefix). Bigger lengths: `frameTooLarge`, connection closed.
    public var frameBytesMax: Int = 1_048_576 + 65_536
    /// Longest path in UTF-8 bytes: `pathTooLong`.
    public var pathBytesMax: Int = 1_024
    /// Largest node data: `dataTooLarge`.
    public var dataBytesMax: Int = 1_048_576
    /// Nodes in the whole namespace: `tooManyNodes`.
    public var nodesMax: Int = 10_000_000
    /// Names in one `children` reply (a page; the client asks for the next with a cursor). A page of
    /// the longest names must fit `replyBytesMax`.
    public var childrenPageMax: Int = 10_000
    /// Watches registered by one session: `tooManyWatches`.
    public var watchesPerSessionMax: Int = 100_000
    /// Open sessions: `tooManySessions`.
    public var sessionsMax: Int = 100_000
    /// Nodes one session created that still exist, its waiter nodes included: `quotaExceeded`.
    public var nodesPerSessionMax: Int = 100_000
    /// Data bytes of the nodes one session created that still exist: `quotaExceeded`.
    public var dataBytesPerSessionMax: Int = 64 * 1_048_576
    /// Sessions open at once per peer identity (Unix uid from SO_PEERCRED, TCP peer address):
    /// `quotaExceeded`. Local clients usually share one uid: keep it well above what they need.
    public var sessionsPerPeerMax: Int = 10_000
    /// Open connections: `tooManyConnections`.
    /// Each is a file descriptor: kept below a hard open-file limit of 20,000 less what batond keeps for itself.
    public var connectionsMax: Int = 16_384
    /// Waiters (holders included) queued on one lock: `tooManyWaiters`.
    public var waitersPerLockMax: Int = 100_000
    /// Operations in one multi: `tooManyOperations`.
    public var multiOperationsMax: Int = 1_000
    /// Requests of one connection in flight (acquires waiting included): `tooManyPendingRequests`.
    public var pendingRequestsPerConnectionMax: Int = 10_000
    /// Largest reply frame body: a bigger one is answered `replyTooLarge` instead (a client accepts
    /// server frames up to this size).
    public var replyBytesMax: Int = 16 * 1_048_576
    /// Bytes queued to one client, in all. Reading stops long before (backpressure), so only events
    /// to a client that does not read can reach it; past it the client is disconnected.
    public var outputBytesPerConnectionMax: Int = 32 * 1_048_576
    /// Session timeouts are clamped into this range.
    public var sessionTimeoutMillisecondsMin: UInt32 = 200
    public var sessionTimeoutMillisecondsMax: UInt32 = 600_000
    /// Name length of a client, as reported by `inspect`.
    public var clientNameBytesMax: Int = 256
    /// Longest lock-delay an acquire may ask (PROTOCOL.md §12.12): `invalidArgument` beyond it.
    public var lockDelayMillisecondsMax: UInt32 = 60_000

    public init() {}

    /// The relations that must hold between limits; checked at daemon start.
    public func validate() {
        precondition(frameBytesMax >= dataBytesMax + 2 * pathBytesMax + 64,
                     "a frame must fit the largest create or set request")
        precondition(pathBytesMax >= 16 && pathBytesMax <= Int(UInt16.max), "paths are u16-length strings")
        precondition(sessionTimeoutMillisecondsMin > 0 && sessionTimeoutMillisecondsMin <= sessionTimeoutMillisecondsMax)
        precondition(replyBytesMax >= dataBytesMax + pathBytesMax + 128, "a get reply of the largest node must fit")
        precondition(childrenPageMax > 0 && childrenPageMax * (pathBytesMax + 2) + 128 <= replyBytesMax,
                     "a children page of the longest names must fit a reply")
        precondition(outputBytesPerConnectionMax >= replyBytesMax, "the largest reply must fit the output buffer")
        precondition(multiOperationsMax > 0 && nodesMax > 0 && sessionsMax > 0 && connectionsMax > 0)
        precondition(nodesPerSessionMax > 0 && sessionsPerPeerMax > 0 && watchesPerSessionMax > 0)
        precondition(dataBytesPerSessionMax >= dataBytesMax, "one node of the largest data must fit a session's quota")
    }

    public static let `default` = Limits()
}

public enum ProtocolVersion {
    /// The only protocol version this build speaks.
    public static let current: UInt16 = 1
    /// "BATN": the first four bytes of a hello, so a stray client fails fast.
    public static let magic: UInt32 = 0x4241_544E
}
