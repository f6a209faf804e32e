import BatonNamespace
import BatonProtocol

// The lock integration point. Owned by the lock layer: everything the engine calls for locks is
// here, and nothing else in the engine knows about locks.

/// State of the lock layer inside the engine.
struct EngineLocks {
    init() {}
}

extension Engine {
    /// The single dispatch point for lock requests: acquire, release, cancel, checkToken, inspect.
    /// Called with a live session; the engine drains namespace outputs afterwards.
    func handleLockRequest(_ request: Request, requestID: UInt32, connection: ConnectionID, session: UInt64, now: Time) {
        reply(connection, requestID, request.opcode, .failure(ReplyError(.internalError, "locks not available yet")), now: now)
    }

    /// A session ended (closed, expired, disconnected): called before its ephemeral nodes are deleted.
    func lockSessionEnded(_ sessionID: UInt64, now: Time) {}

    /// A connection went away (its session may live on, detached): its waiting requests have no one to answer.
    func lockConnectionClosed(_ connection: ConnectionID, now: Time) {}

    /// An internal watch (`Watcher.internal(token)`) fired.
    func lockWatchFired(token: UInt64, type: WatchEventType, path: String, now: Time) {}

    /// Wait timeouts and leases that are due.
    func lockTick(now: Time) {}

    /// The earliest lock deadline (wait timeout, lease), or nil.
    var lockNextDeadlineMilliseconds: UInt64? { nil }
}
