import BatonProtocol

/// How a client connects and what session it asks for.
public struct ClientOptions: Sendable {
    /// Shown by `baton locks` next to this client's holds and waits.
    public var clientName: String
    /// Requested session timeout; the server clamps it and the negotiated value is in `SessionInfo`.
    /// Zero asks for the server's default.
    public var sessionTimeout: Duration
    /// Keep the session for its timeout when a Unix-socket connection drops (by default the server
    /// ends it at once, so locks of a dead process pass on immediately). TCP sessions always survive.
    public var keepOnDisconnect: Bool
    /// Bound on the handshake (hello + session) so a wedged daemon fails the client instead of hanging it.
    public var connectTimeout: Duration
    /// Optional bound on every request other than `acquire` (which the server bounds with its wait).
    public var requestTimeout: Duration?
    /// Ping when nothing was sent for a third of the negotiated session timeout.
    public var heartbeats: Bool
    /// The shared token a TCP connection presents (`authenticate`) before it opens or resumes a
    /// session; batond reads it from its `--tcp-token-file`. Unix connections never send it.
    public var tcpAuthenticationToken: [UInt8]?
    /// TLS on TCP connections (batond `--tls-cert`); nil speaks plain TCP. Unix connections ignore it.
    public var tls: TLSOptions?
    /// Reconnect and resume the session automatically when the connection drops (nil: a drop closes
    /// the client). Implies `keepOnDisconnect`. Requests in flight at the drop fail with
    /// `connectionLost` and are never resent (they may have been performed); see `ClientStatus`.
    public var reconnect: ReconnectPolicy?

    public init(clientName: String = "baton-swift", sessionTimeout: Duration = .seconds(10),
                keepOnDisconnect: Bool = false, connectTimeout: Duration = .seconds(10),
                requestTimeout: Duration? = nil, heartbeats: Bool = true, tcpAuthenticationToken: [UInt8]? = nil,
                tls: TLSOptions? = nil, reconnect: ReconnectPolicy? = nil) {
        self.clientName = clientName
        self.sessionTimeout = sessionTimeout
        self.keepOnDisconnect = keepOnDisconnect
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
        self.heartbeats = heartbeats
        self.tcpAuthenticationToken = tcpAuthenticationToken
        self.tls = tls
        self.reconnect = reconnect
    }

    /// The flags of `openSession`: this client decodes `lockResumed`, so it always asks for it
    /// (PROTOCOL.md §3.3); a session that reconnects must outlive its Unix connection.
    var sessionFlags: SessionFlags {
        keepOnDisconnect || reconnect != nil ? [.keepOnDisconnect, .resumedEvents] : [.resumedEvents]
    }
}

/// The session a client holds: give `id` and `secret` to `resume` on a new connection.
public struct SessionInfo: Sendable, Equatable {
    public var id: UInt64
    public var secret: SessionSecret
    /// The timeout the server granted.
    public var timeoutMilliseconds: UInt32
    public init(id: UInt64, secret: SessionSecret, timeoutMilliseconds: UInt32) {
        self.id = id
        self.secret = secret
        self.timeoutMilliseconds = timeoutMilliseconds
    }
}

extension Endpoint {
    /// The endpoint a client uses when none is given: the default Unix socket, found exactly as batond does.
    public static func defaultEndpoint(environment: [String: String], userID: UInt32) -> Endpoint {
        .unix(path: defaultSocketPath(environment: environment, userID: userID))
    }
}

extension Duration {
    /// Whole milliseconds, rounded up so a tiny positive duration never becomes "no wait"; nil when
    /// negative or beyond `UInt32`.
    var wireMilliseconds: UInt32? {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 else { return nil }
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000)
        guard !overflow else { return nil }
        let fraction = attoseconds / 1_000_000_000_000_000 + (attoseconds % 1_000_000_000_000_000 == 0 ? 0 : 1)
        let total = whole + fraction
        return total <= Int64(UInt32.max) ? UInt32(total) : nil
    }
}

/// How a TCP connection checks batond and proves itself (PROTOCOL.md §4.7, "TLS"). The server's
/// certificate must chain to `caFile` and name the server: the endpoint's host (an IP address is
/// matched against the certificate's IP addresses), or `serverName` when given.
public struct TLSOptions: Sendable, Equatable {
    /// CA certificates (PEM) the server's certificate must chain to; nil trusts the system's.
    public var caFile: String?
    /// The name the server's certificate must carry, when it is not the endpoint's host.
    public var serverName: String?
    /// This client's certificate chain and key (PEM), for a server with `--tls-client-ca`.
    public var certificateFile: String?
    public var keyFile: String?

    public init(caFile: String? = nil, serverName: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.serverName = serverName
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }
}
