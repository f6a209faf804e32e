import BatonProtocol

/// Every error the client reports.
public enum BatonError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The server answered the request with an error (`noNode`, `lockTimeout`, ...).
    case server(ReplyError)
    /// The connection to batond is gone (EOF, reset, or closed by this client); pending requests fail with it.
    case connectionClosed
    /// With automatic reconnect: the connection dropped while the request was in flight (it may or may
    /// not have been performed; it is not resent), or the request came while the client was reconnecting.
    /// The session lives on if the reconnect succeeds (`ClientStatus.resumed`).
    case connectionLost
    /// Automatic reconnect gave up: the session could not be resumed within its timeout, or the server
    /// refused the resume (it expired). Its holds and ephemeral nodes are gone; the client is closed.
    case sessionLost(String)
    /// No reply within the client's own deadline (connect/handshake timeout or `requestTimeout`).
    case timedOut
    /// The peer sent something this client cannot accept: an undecodable frame or an unexpected reply.
    case protocolViolation(String)
    /// The endpoint could not be reached (socket, connect or address resolution failed).
    case connectFailed(String)
    /// The awaiting task was cancelled; a cancelled acquire never leaves a hold behind.
    case cancelled
    /// A bad argument caught before anything was sent (a duration out of range, ...).
    case invalidArgument(String)
    /// The process behind the Unix socket runs as another user (not this one, not root): it may be
    /// an impostor that created the socket first. Nothing was sent to it.
    case untrustedServer(String)

    /// The protocol error code when the server refused the request.
    public var code: ErrorCode? {
        if case .server(let error) = self { return error.code }
        return nil
    }

    public var description: String {
        switch self {
        case .server(let error): return error.description
        case .connectionClosed: return "connection to batond closed"
        case .connectionLost: return "connection to batond lost; reconnecting (the request may or may not have been performed)"
        case .sessionLost(let detail): return "session lost: \(detail)"
        case .timedOut: return "timed out waiting for batond"
        case .protocolViolation(let detail): return "protocol violation: \(detail)"
        case .connectFailed(let detail): return "cannot connect: \(detail)"
        case .cancelled: return "cancelled"
        case .invalidArgument(let detail): return "invalid argument: \(detail)"
        case .untrustedServer(let detail): return "refusing to talk to the server: \(detail)"
        }
    }
}
