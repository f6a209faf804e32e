import BatonNamespace
import BatonProtocol

/// What the engine holds right now, for the metrics endpoint. Read-only; taken on the loop thread.
public struct EngineStatistics: Sendable, Equatable {
    public var connections = 0
    public var sessions = 0
    /// Sessions kept without a connection (TCP, or Unix with keepOnDisconnect), awaiting a resume.
    public var detachedSessions = 0
    public var nodes = 0
    /// Watches registered by sessions (the lock layer's internal watches are not counted).
    public var watches = 0
    /// Lock holders and waiters: nil until the lock layer reports them (see `lockStatistics`).
    public var lockHolders: Int?
    public var lockWaiters: Int?
    public var authenticationSuccesses: UInt64 = 0
    public var authenticationFailures: UInt64 = 0
    public init() {}
}

extension Engine {
    /// Counts for a metrics scrape: O(sessions), so call it per scrape, not per request.
    public var statistics: EngineStatistics {
        var statistics = EngineStatistics()
        statistics.connections = connections.count
        statistics.sessions = sessions.count
        statistics.nodes = namespace.nodeCount
        for (sessionID, session) in sessions {
            if session.connection == nil { statistics.detachedSessions += 1 }
            statistics.watches += namespace.watchCount(of: .session(sessionID))
        }
        let locks = lockStatistics
        statistics.lockHolders = locks.holders
        statistics.lockWaiters = locks.waiters
        statistics.authenticationSuccesses = authentication.successes
        statistics.authenticationFailures = authentication.failures
        return statistics
    }

    /// Holders and waiters over all locks. The lock layer (Engine+Locks.swift) does not count them
    /// yet: once `EngineLocks` keeps its queues, return their sizes here (the metrics endpoint then
    /// exports `baton_lock_holders` and `baton_lock_waiters` with no other change).
    var lockStatistics: (holders: Int?, waiters: Int?) { (nil, nil) }
}
