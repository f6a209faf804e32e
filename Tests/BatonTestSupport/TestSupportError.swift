import BatonProtocol

/// Why a test helper gave up; the message says enough to diagnose a failing test from its log.
public enum TestSupportError: Error, CustomStringConvertible {
    /// Nothing arrived (or the daemon did not come up) in time.
    case timedOut(String)
    /// The peer closed the connection.
    case closed
    /// A system call failed.
    case system(String)
    /// The server sent bytes that do not decode.
    case undecodable(DecodeFailure)
    /// Something other than what the test asked for.
    case unexpected(String)

    public var description: String {
        switch self {
        case .timedOut(let what): return "timed out: \(what)"
        case .closed: return "connection closed by the server"
        case .system(let what): return what
        case .undecodable(let failure): return "undecodable server frame: \(failure.code.name): \(failure.message)"
        case .unexpected(let what): return "unexpected: \(what)"
        }
    }
}
