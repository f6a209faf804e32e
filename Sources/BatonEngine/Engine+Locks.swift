import BatonLocks
import BatonNamespace
import BatonProtocol

// The lock integration point. Owned by the lock layer: everything the engine calls for locks is
// here, and nothing else in the engine knows about locks.

/// Names one request for the lock manager: the connection and the request id to answer.
struct LockTicket: Hashable {
    var connection: ConnectionID
    var requestID: UInt32
}

/// State of the lock layer inside the engine.
struct EngineLocks {
    /// Created on first use (the engine builds this struct before its namespace is in place).
    var manager: LockManager<LockTicket>?
    var adapter: EngineLockNamespace?
    /// Acquires waiting for their answer, by connection (a closed connection's acquires are cancelled).
    var pendingAcquires: [ConnectionID: Set<UInt32>] = [:]
    /// The acquire that got each current hold: lock-lost events go to its session or connection.
    var holders: [String: (ticket: LockTicket, session: UInt64)] = [:]

    init() {}
}

extension Engine {
    /// The lock manager over the embedded namespace, made on first use.
    var lockManager: LockManager<LockTicket> {
        if let manager = locks.manager { return manager }
        let adapter = EngineLockNamespace(namespace: namespace, now: Time(milliseconds: 0))
        let managerConfiguration = LockManagerConfiguration(limits: limits)
        let namespace = self.namespace
        let manager = LockManager<LockTicket>(namespace: adapter, configuration: managerConfiguration,
                                              now: Time(milliseconds: 0),
                                              sessionIsAlive: { namespace.session($0) != nil })
        locks.adapter = adapter
        locks.manager = manager
        return manager
    }

    /// Gives the recipe's namespace adapter the time of the current call.
    private func lockTime(_ now: Time) -> LockManager<LockTicket> {
        let manager = lockManager
        locks.adapter!.now = now
        return manager
    }

    /// The single dispatch point for lock requests: acquire, release, cancel, checkToken, inspect.
    /// Called with a live session; the engine drains namespace outputs afterwards.
    func handleLockRequest(_ request: Request, requestID: UInt32, connection: ConnectionID, session: UInt64, now: Time) {
        let manager = lockTime(now)
        let ticket = LockTicket(connection: connection, requestID: requestID)
        switch request {
        case .acquire(let lockRequest):
            guard locks.pendingAcquires[connection]?.contains(requestID) != true else {
                reply(connection, requestID, .acquire, .failure(ReplyError(
                    .invalidArgument, "request id \(requestID) names an acquire still waiting")), now: now)
                return
            }
            beginPendingRequest(on: connection)
            locks.pendingAcquires[connection, default: []].insert(requestID)
            manager.acquire(lockRequest, ticket: ticket, session: session,
                            clientName: sessions[session]?.clientName ?? "", now: now)
            routeLockEffects(now: now)
        case .release(let node):
            if locks.holders[node]?.session == session { locks.holders[node] = nil }
            manager.release(node: node, session: session, ticket: ticket, now: now)
            routeLockEffects(now: now)
        case .cancel(let acquireRequestID):
            let acquire = LockTicket(connection: connection, requestID: acquireRequestID)
            let cancelled = locks.pendingAcquires[connection]?.contains(acquireRequestID) == true
                && manager.cancel(ticket: acquire, now: now)
            // The acquire's own failure (lockCancelled) goes out first.
            routeLockEffects(now: now)
            reply(connection, requestID, .cancel, cancelled ? .success(.empty)
                  : .failure(ReplyError(.invalidArgument, "no pending acquire with request id \(acquireRequestID)")), now: now)
        case .checkToken(let path, let token):
            reply(connection, requestID, .checkToken, .success(.tokenStatus(current: manager.checkToken(path: path, token: token))),
                  now: now)
        case .inspect(let path):
            do throws(ReplyError) {
                try NamespacePath.validate(path, limits: limits)
                reply(connection, requestID, .inspect, .success(.lockEntries(manager.inspect(path: path, now: now))), now: now)
            } catch {
                reply(connection, requestID, .inspect, .failure(error), now: now)
            }
        default:
            preconditionFailure("not a lock request: \(request.opcode)")
        }
    }

    /// A session ended (closed, expired, disconnected): called before its ephemeral nodes are deleted.
    func lockSessionEnded(_ sessionID: UInt64, now: Time) {
        guard locks.manager != nil else { return }
        lockTime(now).sessionEnded(sessionID, now: now)
        routeLockEffects(now: now)
    }

    /// A connection went away (its session may live on, detached): its waiting requests have no one to answer.
    func lockConnectionClosed(_ connection: ConnectionID, now: Time) {
        guard locks.manager != nil, let requestIDs = locks.pendingAcquires.removeValue(forKey: connection) else { return }
        let manager = lockTime(now)
        for requestID in requestIDs.sorted() {
            manager.cancel(ticket: LockTicket(connection: connection, requestID: requestID), now: now)
        }
        routeLockEffects(now: now)
    }

    /// An internal watch (`Watcher.internal(token)`) fired.
    func lockWatchFired(token: UInt64, type: WatchEventType, path: String, now: Time) {
        guard locks.manager != nil else { return }
        _ = lockTime(now)
        locks.adapter!.fire(token: token, type: type)
        routeLockEffects(now: now)
    }

    /// Wait timeouts and leases that are due.
    func lockTick(now: Time) {
        guard locks.manager != nil else { return }
        lockTime(now).tick(now: now)
        routeLockEffects(now: now)
    }

    /// The earliest lock deadline (wait timeout, lease), or nil.
    var lockNextDeadlineMilliseconds: UInt64? { locks.manager?.nextDeadlineMilliseconds }

    /// Turns the manager's effects into replies and events. Log records the recipe's own operations
    /// produced go out first, since a grant may rest on them (the sequence and transaction counters
    /// behind its token); watch events those operations fired go out with them, in order.
    func routeLockEffects(now: Time) {
        guard let manager = locks.manager else { return }
        while true {
            routeNamespaceOutputsForLocks(now: now)
            let effects = manager.takeEffects()
            if effects.isEmpty { return }
            for effect in effects { applyLockEffect(effect, now: now) }
        }
    }

    /// Like the engine's drain, for outputs produced inside the lock layer's own steps. Called from
    /// `lockWatchFired` too (inside the engine's drain): outputs the recipe causes there are routed
    /// before the rest of the engine's current batch, which only matters to session watch events fired
    /// by the recipe's own deletes (abandoned waiters), not to anything a grant rests on.
    private func routeNamespaceOutputsForLocks(now: Time) {
        while namespace.hasOutputs {
            for output in namespace.takeOutputs() {
                switch output {
                case .persist(let record):
                    outputs.append(.persist(record))
                case .watch(.session(let sessionID), let type, let path):
                    deliver(.watch(type: type, path: path), toSession: sessionID)
                case .watch(.internal(let token), let type, _):
                    locks.adapter?.fire(token: token, type: type)
                }
            }
        }
    }

    private func applyLockEffect(_ effect: LockEffect<LockTicket>, now: Time) {
        switch effect {
        case .granted(let ticket, let node, let token):
            guard finishPendingAcquire(ticket) else {
                // Nobody left to tell (cannot happen: a closed connection's acquires are cancelled first).
                return
            }
            if let session = connections[ticket.connection]?.sessionID {
                locks.holders[node] = (ticket, session)
            }
            reply(ticket.connection, ticket.requestID, .acquire, .success(.granted(node: node, token: token)), now: now)
        case .failed(let ticket, let error):
            let wasAcquire = finishPendingAcquire(ticket)
            guard connections[ticket.connection] != nil else { return }
            if wasAcquire {
                reply(ticket.connection, ticket.requestID, .acquire, .failure(error), now: now)
            } else {
                reply(ticket.connection, ticket.requestID, .release, .failure(error), now: now)
            }
        case .released(let ticket):
            guard connections[ticket.connection] != nil else { return }
            reply(ticket.connection, ticket.requestID, .release, .success(.empty), now: now)
        case .lost(let session, let node, let token, let reason):
            let holder = locks.holders.removeValue(forKey: node)
            let event = Event.lockLost(node: node, token: token, reason: reason)
            if sessions[session] != nil {
                deliver(event, toSession: session)
            } else if let holder, connections[holder.ticket.connection] != nil {
                // The session just ended (expired, say) while its connection is still there.
                outputs.append(.send(holder.ticket.connection, .event(event)))
            }
        }
    }

    /// True if `ticket` was a waiting acquire (now answered).
    private func finishPendingAcquire(_ ticket: LockTicket) -> Bool {
        guard locks.pendingAcquires[ticket.connection]?.remove(ticket.requestID) != nil else { return false }
        if locks.pendingAcquires[ticket.connection]?.isEmpty == true { locks.pendingAcquires[ticket.connection] = nil }
        endPendingRequest(on: ticket.connection)
        return true
    }
}
