import BatonProtocol

/// What happens to a client's connection and holds, as the application sees it (`statusChanges()`,
/// `onStatusChange`). Connection statuses come from the client itself; hold statuses from the
/// server's events (PROTOCOL.md §12.7, §12.8).
public enum ClientStatus: Sendable, Equatable {
    /// The connection is up (the first status of a stream started on a connected client).
    case connected
    /// The connection dropped (why) and the client is reconnecting (`ClientOptions.reconnect`):
    /// requests in flight failed with `connectionLost`, new ones fail with it until `resumed`.
    case reconnecting(BatonError)
    /// A new connection resumed the session: its holds, ephemeral nodes and watches are as they were;
    /// events the server kept meanwhile (a `lockLost`, say) follow.
    case resumed
    /// The client is closed for good: closed here, the connection dropped with reconnect off, or
    /// the reconnect gave up (`sessionLost`).
    case closed(BatonError)
    /// A hold is in doubt: a multi-host sidecar lost its ZooKeeper connection (`lockSuspended`).
    case holdSuspended(node: String, token: UInt64)
    /// A suspended hold is good again: the sidecar reconnected within its ZooKeeper session (`lockResumed`).
    case holdResumed(node: String, token: UInt64)
    /// A hold ended other than by release (`lockLost`).
    case holdLost(LockLost)
}

/// How a client reconnects when its connection drops (`ClientOptions.reconnect`): it connects
/// again, says hello (and authenticates on TCP) and resumes its session, waiting `initialBackoff`
/// after a failed attempt, doubling up to `maximumBackoff`, until the session's timeout has passed
/// since the drop (the server has ended the session by then) or the server refuses the resume;
/// then it closes with `sessionLost`.
public struct ReconnectPolicy: Sendable, Equatable {
    public var initialBackoff: Duration
    public var maximumBackoff: Duration

    public init(initialBackoff: Duration = .milliseconds(50), maximumBackoff: Duration = .seconds(1)) {
        precondition(initialBackoff > .zero && maximumBackoff >= initialBackoff, "backoff must be positive and bounded")
        self.initialBackoff = initialBackoff
        self.maximumBackoff = maximumBackoff
    }
}

/// Everything the reader thread needs to resume a session on a new connection.
struct ReconnectPlan: Sendable {
    var endpoint: Endpoint
    var clientName: String
    var tcpAuthenticationToken: [UInt8]?
    var tls: TLSOptions?
    var connectTimeout: Duration
    var sessionID: UInt64
    var secret: SessionSecret
    var sessionTimeoutMilliseconds: UInt32
    var policy: ReconnectPolicy

    /// Answers to `resumeSession` after which trying again cannot help: the session is gone (or was
    /// never ours), or the token is refused.
    static let refusalsThatEnd: Set<ErrorCode> = [.sessionExpired, .sessionSecretMismatch, .sessionAlreadyOpen, .notAuthorized]

    init(endpoint: Endpoint, options: ClientOptions, session: SessionInfo, policy: ReconnectPolicy) {
        self.endpoint = endpoint
        clientName = options.clientName
        tcpAuthenticationToken = options.tcpAuthenticationToken
        tls = options.tls
        connectTimeout = options.connectTimeout
        sessionID = session.id
        secret = session.secret
        sessionTimeoutMilliseconds = session.timeoutMilliseconds
        self.policy = policy
    }
}
