import BatonProtocol

// TCP authentication (Proto/PROTOCOL.md §4.7): a TCP connection proves it knows one of the daemon's
// tokens (`--tcp-token-file`, or a named one of the access rules, §17) before it may open or resume a
// session; the token's name is then its principal for the access rules. Unix connections are authorized from the start: the
// socket file's permissions are their guard.

/// Counters of the authentication step, for metrics.
struct EngineAuthentication {
    var successes: UInt64 = 0
    var failures: UInt64 = 0
}

extension Engine {
    /// Wrong tokens one connection may present; the last one is answered, then the connection closes.
    public static let authenticationFailuresMax = 3

    /// Answers `notAuthorized` (and returns true) for a session request from a connection that has
    /// not authenticated. Called for every request after the handshake.
    func refusesUnauthorized(_ request: Request, state: ConnectionState, requestID: UInt32, connection: ConnectionID,
                             now: Time) -> Bool {
        guard !state.isAuthorized else { return false }
        switch request {
        case .openSession, .resumeSession:
            reply(connection, requestID, request.opcode, .failure(ReplyError(
                .notAuthorized, "a TCP connection must authenticate before it opens or resumes a session")), now: now)
            return true
        default:
            return false
        }
    }

    func authenticate(_ token: [UInt8], requestID: UInt32, connection: ConnectionID, now: Time) {
        guard !connections[connection]!.isAuthorized else {
            // Unix, or already proven: nothing to check.
            reply(connection, requestID, .authenticate, .success(.empty), now: now)
            return
        }
        if let name = matchingTokenName(token) {
            connections[connection]!.isAuthorized = true
            connections[connection]!.access.tokenName = name
            connections[connection]!.accessRules = nil
            authentication.successes += 1
            reply(connection, requestID, .authenticate, .success(.empty), now: now)
            return
        }
        authentication.failures += 1
        connections[connection]!.authenticationFailures += 1
        let failures = Int(connections[connection]!.authenticationFailures)
        if failures >= Engine.authenticationFailuresMax {
            reply(connection, requestID, .authenticate, .failure(ReplyError(
                .notAuthorized, "wrong token; \(failures) failed attempts close the connection")), now: now)
            closeConnection(connection, now: now)
            drain(now: now)
        } else {
            reply(connection, requestID, .authenticate, .failure(ReplyError(
                .notAuthorized, "wrong token (attempt \(failures) of \(Engine.authenticationFailuresMax))")), now: now)
        }
    }

    /// Compares in time that depends only on the lengths, never on where the bytes first differ.
    /// An empty expected token matches nothing.
    public static func tokensMatch(_ presented: [UInt8], _ expected: [UInt8]) -> Bool {
        var difference: UInt8 = presented.count == expected.count ? 0 : 1
        for index in 0..<expected.count {
            let byte = index < presented.count ? presented[index] : 0
            difference |= byte ^ expected[index]
        }
        return difference == 0 && !expected.isEmpty
    }

    /// Authentication attempts since start: successful, failed.
    public var authenticationCounts: (successes: UInt64, failures: UInt64) {
        (authentication.successes, authentication.failures)
    }
}
