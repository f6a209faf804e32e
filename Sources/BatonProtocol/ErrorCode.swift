/// Every error a reply can carry. The numbers are the wire contract (Proto/PROTOCOL.md), never reused.
/// `closesConnection` says which ones end the connection after the error frame is sent.
public enum ErrorCode: UInt16, Sendable, CaseIterable, Error {
    case ok = 0
    // Framing and handshake: the connection closes after the error frame.
    case malformedFrame = 1
    case frameTooLarge = 2
    case unknownOpcode = 3
    case unsupportedVersion = 4
    case handshakeRequired = 5
    // Sessions.
    case sessionRequired = 6
    case sessionExpired = 7
    case sessionSecretMismatch = 8
    case sessionAlreadyOpen = 9
    case sessionBusy = 10
    // Paths and data.
    case invalidPath = 11
    case pathTooLong = 12
    case dataTooLarge = 13
    // Namespace outcomes.
    case noNode = 14
    case nodeExists = 15
    case badVersion = 16
    case notEmpty = 17
    case ephemeralParent = 18
    case invalidArgument = 19
    // Limits.
    case tooManyNodes = 20
    case tooManyWatches = 21
    case tooManySessions = 22
    case tooManyConnections = 23
    case tooManyWaiters = 24
    case tooManyOperations = 25
    case tooManyPendingRequests = 26
    /// A reply would exceed `replyBytesMax`: ask for less (a `children` page, a narrower `inspect`).
    case replyTooLarge = 27
    /// A quota of the session or of its peer (PROTOCOL.md §8, "Admission and quotas") is used up;
    /// the message names the quota.
    case quotaExceeded = 28
    /// The connection missed an admission deadline (`hello`, `authenticate`, a frame started and not
    /// finished, or idle): sent unattributed, then the connection closes.
    case deadlineExceeded = 29
    // Locks.
    case lockTimeout = 30
    case lockBusy = 31
    case lockCancelled = 32
    case notHolder = 33
    case lockLost = 34
    case lockKindMismatch = 35
    /// A client request that would create, delete or change a waiter node, or a lock path through one
    /// (PROTOCOL.md §12.1): waiter nodes belong to the lock manager.
    case lockNodeReserved = 36
    /// An acquire without an owner token of a lock this session already holds or awaits, where one of the
    /// two is exclusive: it would wait for itself (PROTOCOL.md §12.9).
    case lockHeldBySession = 37
    /// The acquire would close a cycle of waits among this sidecar's sessions (PROTOCOL.md §12.10).
    case deadlock = 38
    /// `renew` of a hold that has no lease (PROTOCOL.md §12.5).
    case noLease = 39
    // Daemon.
    case notAuthorized = 40
    case shuttingDown = 41
    case storageFailure = 42
    case internalError = 43
    // Storage.
    case storageFull = 44
    case storageUnavailable = 45
    // Access control.
    /// The access rules (`batond --acl`) do not give this client the permission the request needs
    /// on its path (PROTOCOL.md §17); the message names the permission and the path.
    case permissionDenied = 46
    // Admission.
    /// Too many failed `authenticate` from this peer lately: the connection is refused on accept
    /// (unattributed), and the message says when to retry.
    case loginThrottled = 48
    // Watches and stores.
    /// `removeWatches` of a watch the session does not hold (ZooKeeper's NOWATCHER).
    case noWatch = 51
    /// The request is valid but the daemon's store cannot serve it (PROTOCOL.md §16): nothing was done.
    case unsupportedByStore = 52

    /// Errors after which the server closes the connection: the byte stream can no longer be trusted
    /// or the peer never completed the handshake.
    public var closesConnection: Bool {
        switch self {
        case .malformedFrame, .frameTooLarge, .unknownOpcode, .unsupportedVersion, .handshakeRequired,
             .tooManyConnections, .shuttingDown, .deadlineExceeded, .loginThrottled:
            return true
        default:
            return false
        }
    }

    public var name: String { String(describing: self) }
}

/// A failed reply as the client sees it: the code plus the server's human-readable detail.
public struct ReplyError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    public init(_ code: ErrorCode, _ message: String = "") {
        self.code = code
        self.message = message
    }
    public var description: String { message.isEmpty ? code.name : "\(code.name): \(message)" }
}
