import BatonAccess
import BatonNamespace
import BatonProtocol

// Access control in the engine (Proto/PROTOCOL.md §17): every request with a path is checked
// against the rules before it runs (`AccessPolicy.requirements`). Without rules (`batond` without
// `--acl`) nothing is checked: whoever may connect may do everything, as before.

/// One refused request, for the log.
public struct AccessDenial: Sendable, Equatable {
    public var identity: AccessIdentity
    public var peer: String?
    public var opcode: Opcode
    public var permission: AccessPermissions
    public var path: String
}

/// Rules, named tokens and denial accounting.
struct EngineAccess {
    var policy: AccessPolicy?
    /// Bumped by every `setAccessRules`: a connection's narrowed rules of an older one are stale.
    var generation: UInt64 = 0
    /// TCP tokens by principal name (`token NAME FILE` lines), besides the `--tcp-token-file` one.
    var namedTokens: [(name: String, bytes: [UInt8])] = []
    var deniedByOpcode: [Opcode: UInt64] = [:]
    /// Denials not yet taken by the shell's log, at most `deniedLogPerSecondMax` per second.
    var deniedToLog: [AccessDenial] = []
    /// Denials in the current second, and those of them not logged.
    var logWindowSecond: UInt64 = 0
    var loggedInWindow = 0
    var suppressedFromLog: UInt64 = 0
}

extension Engine {
    /// Denials logged per second at most; the others are counted (`takeAccessDenialsToLog`), so a
    /// client retrying in a loop cannot flood the log.
    public static let deniedLogPerSecondMax = 10

    /// Installs the rules and named tokens (start, SIGHUP). nil: no access control. Decisions for
    /// requests already answered stand; every later request is judged by the new rules, connections
    /// already authenticated keep the token name they proved.
    public func setAccessRules(_ policy: AccessPolicy?, namedTokens: [String: [UInt8]] = [:]) {
        access.policy = policy
        access.generation += 1
        access.namedTokens = namedTokens.sorted { $0.key < $1.key }.map { (name: $0.key, bytes: $0.value) }
    }

    public var accessPolicy: AccessPolicy? { access.policy }

    /// The Unix user behind a connection and its groups (the shell resolves them on accept).
    public func connectionCredentials(_ connection: ConnectionID, userID: UInt32, groupIDs: [UInt32]) {
        connections[connection]?.access.userID = userID
        connections[connection]?.access.groupIDs = groupIDs
        connections[connection]?.accessRules = nil
    }

    /// The principal name of the token `presented` matches (`AccessFile.defaultTokenName` for the
    /// `--tcp-token-file` token), or nil. Every token is compared, each in constant time, so the
    /// time taken does not say which one came close.
    func matchingTokenName(_ presented: [UInt8]) -> String? {
        var matched: String?
        if let expected = configuration.tcpAuthenticationToken, Engine.tokensMatch(presented, expected) {
            matched = AccessFile.defaultTokenName
        }
        for token in access.namedTokens where Engine.tokensMatch(presented, token.bytes) {
            if matched == nil { matched = token.name }
        }
        return matched
    }

    /// Answers `permissionDenied` (and returns true) if the rules do not let this connection make
    /// this request. Called for every request after the handshake and authentication checks.
    func refusesByAccessRules(_ request: Request, state: ConnectionState, requestID: UInt32, connection: ConnectionID,
                              now: Time) -> Bool {
        guard let policy = access.policy else { return false }
        var rules = state.accessRules
        if rules?.generation != access.generation {
            // First request, or new rules, or a new identity (authenticate): only this identity's rules.
            rules = (access.generation, policy.narrowed(to: state.access))
            connections[connection]?.accessRules = rules
        }
        guard let missing = rules!.policy.denial(of: request, by: state.access) else { return false }
        access.deniedByOpcode[request.opcode, default: 0] += 1
        noteDenialForLog(AccessDenial(identity: state.access, peer: state.peerIdentity, opcode: request.opcode,
                                      permission: missing.permission, path: missing.path), now: now)
        let error = ReplyError(.permissionDenied, "\(missing.permission.description) on \(missing.path) is not granted to \(state.access.description)")
        reply(connection, requestID, request.opcode,
              .failure(MultiFailure(index: missing.operationIndex, error: error).replyError), now: now)
        return true
    }

    private func noteDenialForLog(_ denial: AccessDenial, now: Time) {
        let second = now.monotonicMilliseconds / 1_000
        if second != access.logWindowSecond {
            access.logWindowSecond = second
            access.loggedInWindow = 0
        }
        guard access.loggedInWindow < Engine.deniedLogPerSecondMax else {
            access.suppressedFromLog += 1
            return
        }
        access.loggedInWindow += 1
        access.deniedToLog.append(denial)
    }

    /// Denials to log since the last call, and how many more were not kept for the log (rate limit).
    public func takeAccessDenialsToLog() -> (denials: [AccessDenial], suppressed: UInt64) {
        defer {
            access.deniedToLog.removeAll()
            access.suppressedFromLog = 0
        }
        return (access.deniedToLog, access.suppressedFromLog)
    }

    /// Requests refused by the access rules since start, by opcode.
    public var accessDeniedCounts: [Opcode: UInt64] { access.deniedByOpcode }
}
