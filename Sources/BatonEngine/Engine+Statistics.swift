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
    /// Holds over all locks (a shared lock or a semaphore counts each holder).
    public var lockHolders: Int?
    /// Acquires waiting for their grant. nil (with `lockHolders`) for a lock layer that cannot count.
    public var lockWaiters: Int?
    public var authenticationSuccesses: UInt64 = 0
    public var authenticationFailures: UInt64 = 0
    /// Requests refused by the access rules, by opcode (Engine+Access.swift).
    public var accessDenied: [Opcode: UInt64] = [:]
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
        statistics.accessDenied = access.deniedByOpcode
        return statistics
    }

    /// Holders and waiters over all locks, read from the lock layer without changing it: waiters are
    /// the acquires still waiting for their reply; the manager knows every acquire from its request
    /// until its node is deleted, so the rest of those are holds. Between engine calls the embedded
    /// namespace has no step in flight, so the split is exact there (a scrape always sees that).
    var lockStatistics: (holders: Int?, waiters: Int?) {
        guard let manager = locks.manager else { return (0, 0) }
        let waiting = connections.values.reduce(0) { $0 + $1.pendingAcquires.count }
        return (max(0, manager.waiterCount - waiting), waiting)
    }
}
