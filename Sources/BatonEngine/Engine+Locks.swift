import BatonLocks
import BatonNamespace
import BatonProtocol

// The lock integration point. Owned by the lock layer: everything the engine calls for locks is
// here, and nothing else in the engine knows about locks.

// The engine's ticket (`LockTicket`, the connection and request id to answer) is declared in BatonLocks,
// so that the recipe's generic code is specialized for it there.

/// A current hold as the engine keeps it (`EngineLocks.holders`).
struct LockHolder {
    var node: String
    var ticket: LockTicket
    var session: UInt64
    var owned: Bool
    /// The manager's handle of the hold (nil for a lock set's): its release goes straight to the waiter.
    var hold: LockHold?

    /// Whether this is `session`'s hold of `node`.
    func isHold(of session: UInt64, at node: String) -> Bool { self.session == session && self.node == node }
}

/// State of the lock layer inside the engine.
struct EngineLocks {
    /// Created on first use (the engine builds this struct before its namespace is in place).
    var manager: LockManager<LockTicket>?
    var adapter: EngineLockNamespace?
    /// The acquire that got each current hold, by its token: lock-lost events go to its session or
    /// connection. Keyed by the token (unique per node: the node's creation transaction, THEORY.md) and
    /// not the node's path: an integer hashed at the grant and the release, not a path (`node` is
    /// compared on use, so a release naming another hold's token finds no holder).
    /// `owned`: granted to an `acquireOwned`, so it may be reentered (only those count their acquires).
    var holders: [UInt64: LockHolder] = [:]
    /// Waiting acquires that named an owner token (`acquireOwned`): answered with a hold count.
    var ownedAcquires: Set<LockTicket> = []
    /// `acquireAll`s not answered yet, by the ticket of the whole request (Engine+LockSets).
    var sets: [LockTicket: LockSetAcquire] = [:]
    /// The manager's effects of the last step, emptied: given back with the next input (no array made per step).
    var spareEffects: [LockEffect<LockTicket>] = []
    /// Holds of those sets, by node: a loss before the reply fails the set.
    var setOfNode: [String: (set: LockTicket, token: UInt64)] = [:]
    /// The lock path `Engine.lockRefusal` passed last ("": none yet; it is not a valid path).
    var lastValidLockPath = ""
    /// Whether it is ASCII: then a path equal to it of as many bytes has its bytes (no canonical
    /// equivalent of an ASCII character is one byte), and an acquire can take this string instead.
    var lastValidLockPathIsASCII = false

    init() {}
}

extension Engine {
    /// The lock manager over the embedded namespace, made on first use.
    var lockManager: LockManager<LockTicket> {
        if let manager = locks.manager { return manager }
        let adapter = EngineLockNamespace(namespace: namespace, now: Time(milliseconds: 0))
        let managerConfiguration = LockManagerConfiguration(limits: limits)
        let namespace = self.namespace
        let manager = LockManager<LockTicket>(namespace: lockNamespace(embedded: adapter), configuration: managerConfiguration,
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
        case .acquire(var lockRequest):
            let clientName: String
            switch admitPendingAcquire(requestID, connection: connection,
                                       otherwise: lockRefusal(path: lockRequest.path, kind: lockRequest.kind, permits: lockRequest.permits)) {
            case .success(let name): clientName = name
            case .failure(let refusal):
                reply(connection, requestID, request.opcode, .failure(refusal), now: now)
                return
            }
            if !lockRequest.owner.isEmpty { locks.ownedAcquires.insert(ticket) }
            // Admitted, so `lockRefusal` found the path equal to the one accepted last: an ASCII one
            // has the same bytes. That string goes on (the recipe's lock state was made from it), so the
            // recipe's comparisons of the path are by identity (three byte comparisons per acquire).
            if locks.lastValidLockPathIsASCII { lockRequest.path = locks.lastValidLockPath }
            applyLockInput(.acquire(lockRequest, ticket: ticket, session: session, clientName: clientName), to: manager, now: now)
        case .acquireAll(let members, let waitMilliseconds, let leaseMilliseconds):
            lockSetAcquire(members, waitMilliseconds: waitMilliseconds, leaseMilliseconds: leaseMilliseconds,
                           requestID: requestID, connection: connection, session: session, now: now)
        case .release(let node, let token):
            // The holder entry, taken out (moved, not copied: one hash of the token); put back if it is
            // not this session's hold of this node, or a reentrant hold that stays (and keeps its
            // lockLost route) until its last release.
            var holder = locks.holders.index(forKey: token).map { locks.holders.remove(at: $0).value }
            if let other = holder, !other.isHold(of: session, at: node) {
                locks.holders[token] = other
                holder = nil
            }
            // A current hold's node is a path the namespace made (valid); `isHold` compared it with the
            // request's, of as many bytes: only another node is checked (a pass over it per release).
            if holder.map({ $0.node.utf8.count != node.utf8.count }) ?? true {
                do throws(ReplyError) {
                    try NamespacePath.validate(node, limits: limits)
                } catch {
                    reply(connection, requestID, .release, .failure(error), now: now)
                    return
                }
            }
            // No such node: the hold already ended (its lockLost event said so). The embedded
            // namespace answers at once, so a node the recipe still tracks always exists; so does a
            // current hold's (every end of a hold takes its entry out first: no lookup for it).
            guard backend != nil || holder != nil || namespace.contains(node) else {
                reply(connection, requestID, .release, .failure(ReplyError(
                    .lockLost, "\(node) does not exist: the hold already ended")), now: now)
                return
            }
            if let holder, holder.owned, (manager.holdCount(node: node, token: token) ?? 1) > 1 { locks.holders[token] = holder }
            // The grant's handle takes the release straight to the hold in the recipe, with the node's
            // path as the grant gave it (the same string as the recipe's: compared by identity there).
            applyLockInput(.release(node: holder?.node ?? node, token: token, session: session, ticket: ticket, hold: holder?.hold),
                           to: manager, now: now)
        case .cancel(let acquireRequestID):
            // An acquire already answered (granted, failed) or unknown: nothing to do, and still ok,
            // since a client cannot know whether the answer crossed its cancel (PROTOCOL.md §12.4).
            // The acquire's own failure (lockCancelled) goes out first.
            if connections.index(forKey: connection).map({ connections.values[$0].pendingAcquires.contains(acquireRequestID) }) == true {
                applyLockInput(.cancel(ticket: lockPendingTicket(LockTicket(connection: connection, requestID: acquireRequestID))), now: now)
            } else {
                routeLockEffects(now: now)
            }
            reply(connection, requestID, .cancel, .success(.empty), now: now)
        case .renew(let node, let token, let leaseMilliseconds):
            do throws(ReplyError) {
                try NamespacePath.validate(node, limits: limits)
                // As for release: no such node, the hold already ended (over a backend the lock
                // manager knows its holds and answers lockLost for one that ended).
                guard backend != nil || namespace.contains(node) else {
                    throw ReplyError(.lockLost, "\(node) does not exist: the hold already ended")
                }
                if let refusal = manager.renew(node: node, token: token, session: session,
                                               leaseMilliseconds: leaseMilliseconds, now: now) { throw refusal }
                reply(connection, requestID, .renew, .success(.empty), now: now)
            } catch {
                reply(connection, requestID, .renew, .failure(error), now: now)
            }
            routeLockEffects(now: now)
        case .requestRevocation(let path):
            do throws(ReplyError) {
                try NamespacePath.validate(path, limits: limits)
                // Over a backend the sidecar answers from the holds it manages without reading the
                // store: a path it knows no holds of is 0, not noNode (PROTOCOL.md §16).
                guard backend != nil || namespace.node(at: path) != nil else { throw ReplyError(.noNode, path) }
                // Told in queue order, before the reply: the requester's next step sees them sent.
                let holds = manager.revocableHolds(path: path)
                for hold in holds where sessions[hold.session] != nil {
                    deliver(.revocationRequested(node: hold.node, token: hold.token, requester: session), toSession: hold.session)
                }
                reply(connection, requestID, .requestRevocation, .success(.revocation(holdersAsked: UInt32(holds.count))), now: now)
            } catch {
                reply(connection, requestID, .requestRevocation, .failure(error), now: now)
            }
        case .checkToken(let path, let token):
            do throws(ReplyError) {
                try NamespacePath.validate(path, limits: limits)
                if let backend, !isBackendSuspended, !manager.checkToken(path: path, token: token) {
                    // Perhaps a holder on another sidecar: ZooKeeper's queue says.
                    return checkTokenOnBackend(backend, path: path, token: token, requestID: requestID, connection: connection, now: now)
                }
                reply(connection, requestID, .checkToken,
                      .success(.tokenStatus(current: !isBackendSuspended && manager.checkToken(path: path, token: token))), now: now)
            } catch {
                reply(connection, requestID, .checkToken, .failure(error), now: now)
            }
        case .inspect(let path):
            do throws(ReplyError) {
                try NamespacePath.validate(path, limits: limits)
                if let backend {
                    return inspectOnBackend(backend, path: path, requestID: requestID, connection: connection, now: now)
                }
                guard namespace.node(at: path) != nil else { throw ReplyError(.noNode, path) }
                reply(connection, requestID, .inspect, .success(.lockEntries(manager.inspect(path: path, now: now))), now: now)
            } catch {
                reply(connection, requestID, .inspect, .failure(error), now: now)
            }
        default:
            preconditionFailure("not a lock request: \(request.opcode)")
        }
    }

    /// The rule that keeps lock queues honest (PROTOCOL.md §12.1): a client request may not create,
    /// delete or change a node with a waiter node's name; only the lock manager does, for the acquires
    /// of live sessions. So no client request can put a node in a lock's queue (a forged waiter that
    /// never goes, or one that takes the name the manager is about to create), end another session's
    /// hold, or change a semaphore waiter's permits. Stateless, so nothing to keep across restarts,
    /// and checked where requests enter the sidecar, so it holds for any `LockNamespace` behind it.
    /// Reads stay open to everyone. nil if the request may go on to the namespace.
    func lockNodeRefusal(_ request: Request) -> ReplyError? {
        switch request {
        case .create(let path, _, let mode):
            return lockNodeRefusal(path, sequential: mode.sequential)
        case .delete(let path, _):
            return lockNodeRefusal(deleting: path)
        case .set(let path, _, _):
            return lockNodeRefusal(path, sequential: false)
        case .multi(let operations):
            for (index, operation) in operations.enumerated() {
                let refusal: ReplyError?
                switch operation {
                case .create(let path, _, let mode): refusal = lockNodeRefusal(path, sequential: mode.sequential)
                case .delete(let path, _): refusal = lockNodeRefusal(deleting: path)
                case .set(let path, _, _): refusal = lockNodeRefusal(path, sequential: false)
                case .check: refusal = nil
                }
                if let refusal { return MultiFailure(index: index, error: refusal).replyError }
            }
            return nil
        default:
            return nil
        }
    }

    /// Every waiter node the manager makes is ephemeral. One that is not can only come from a data
    /// directory written before this rule (a client's forgery): deleting it repairs the lock it jams.
    private func lockNodeRefusal(deleting path: String) -> ReplyError? {
        guard let refusal = lockNodeRefusal(path, sequential: false) else { return nil }
        if let node = namespace.node(at: path), node.kind != .ephemeral { return nil }
        return refusal
    }

    private func lockNodeRefusal(_ path: String, sequential: Bool) -> ReplyError? {
        // An invalid path is left to the namespace, which names what is wrong with it (`invalidPath`).
        guard WaiterName.isReserved(path: path, sequential: sequential),
              (try? NamespacePath.validate(path, limits: limits)) != nil else { return nil }
        return ReplyError(.lockNodeReserved, "\(path) is a waiter node's name: only acquire and release change those")
    }

    /// Starts a waiting acquire (or `acquireAll`) on the connection, in one lookup of its state, and
    /// gives its client name (its session's: a session takes it
    /// from the connection that speaks for it); or says why it is refused before the recipe sees it
    /// (PROTOCOL.md §4.3, §12.2): its id names one still waiting, the connection is at its limit, or
    /// `refusal` (the request's own, checked after those).
    func admitPendingAcquire(_ requestID: UInt32, connection: ConnectionID,
                             otherwise refusal: ReplyError?) -> Result<String, ReplyError> {
        let limit = limits.pendingRequestsPerConnectionMax
        // A connection the engine no longer knows sends nothing (`handle` drops its frames). Changed in
        // place at its index (through the optional subscript the state was moved out and back).
        guard let index = connections.index(forKey: connection) else {
            return .failure(ReplyError(.internalError, "connection \(connection) is closed"))
        }
        return connections.values[index].admitPendingAcquire(requestID, limit: limit, otherwise: refusal)
    }

    /// Why one lock of an acquire is refused before the recipe sees it, or nil.
    func lockRefusal(path: String, kind: LockKind, permits: UInt32) -> ReplyError? {
        // The lock path accepted last is not checked again (most acquires are of a lock just used).
        // Equal strings of as many UTF-8 bytes are valid alike (no canonical equivalent of a valid
        // path has a slash, dot or control character it lacks).
        if path.utf8.count != locks.lastValidLockPath.utf8.count || path != locks.lastValidLockPath {
            do throws(ReplyError) {
                try NamespacePath.validate(path, limits: limits)
            } catch {
                return error
            }
            locks.lastValidLockPath = path
            locks.lastValidLockPathIsASCII = path.utf8.allSatisfy { $0 < 0x80 }
        }
        if kind != .semaphore && permits != 1 {
            return ReplyError(.invalidArgument, "permits must be 1 for an \(kind) lock")
        }
        return nil
    }

    /// `closeSession`: the session's waiting acquires (all on its current connection: a closed
    /// connection's are cancelled when it goes) are answered `lockCancelled`.
    func lockCancelPendingAcquires(on connection: ConnectionID, now: Time) {
        guard locks.manager != nil, let index = connections.index(forKey: connection) else { return }
        let requestIDs = connections.values[index].pendingAcquires
        guard !requestIDs.isEmpty else { return }
        applyLockInputs(requestIDs.sorted().map { .cancel(ticket: lockPendingTicket(LockTicket(connection: connection, requestID: $0))) }, now: now)
    }

    /// Request ids of the acquires waiting on a connection, oldest first.
    func lockPendingAcquires(on connection: ConnectionID) -> [UInt32] {
        (connections.index(forKey: connection).map { connections.values[$0].pendingAcquires } ?? SmallSet()).sorted()
    }

    /// A session ended (closed, expired, disconnected): called before its ephemeral nodes are deleted.
    func lockSessionEnded(_ sessionID: UInt64, now: Time) {
        guard locks.manager != nil else { return }
        applyLockInput(.sessionEnded(sessionID), now: now)
    }

    /// A connection went away (its session may live on, detached): its waiting requests (`requestIDs`,
    /// from its state, already taken out of `connections`) have no one to answer.
    func lockConnectionClosed(_ connection: ConnectionID, pending requestIDs: SmallSet<UInt32>, now: Time) {
        guard locks.manager != nil, !requestIDs.isEmpty else { return }
        applyLockInputs(requestIDs.sorted().map { .cancel(ticket: lockPendingTicket(LockTicket(connection: connection, requestID: $0))) }, now: now)
    }

    /// Connections that all went away at once (shutdown): their waiting acquires are forgotten first,
    /// then cancelled, so that nothing the cancels cause is answered to any of them.
    /// `connections`: each with the waiting acquires of its state (already taken out of `connections`).
    func lockAbandonAcquires(of connections: [(ConnectionID, SmallSet<UInt32>)], now: Time) {
        var tickets: [LockTicket] = []
        for (connection, requestIDs) in connections {
            tickets += requestIDs.sorted().map { lockPendingTicket(LockTicket(connection: connection, requestID: $0)) }
        }
        guard locks.manager != nil, !tickets.isEmpty else { return }
        applyLockInputs(tickets.map { .cancel(ticket: $0) }, now: now)
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
        applyLockInput(.tick, now: now)
    }

    /// The earliest lock deadline (wait timeout, lease), or nil.
    var lockNextDeadlineMilliseconds: UInt64? { locks.manager?.nextDeadlineMilliseconds }

    /// Applies inputs to the lock manager in order and routes what they caused.
    func applyLockInputs(_ inputs: [LockInput<LockTicket>], now: Time) {
        let manager = lockTime(now)
        var effects: [LockEffect<LockTicket>] = []
        for input in inputs { effects += manager.apply(input, now: now) }
        routeLockEffects(now: now, effects)
    }

    /// One input: no arrays of inputs or effects built for it.
    func applyLockInput(_ input: consuming LockInput<LockTicket>, now: Time) {
        applyLockInput(consume input, to: lockTime(now), now: now)
    }

    /// As above, to the manager `lockTime` gave for this call already (every acquire and release).
    private func applyLockInput(_ input: consuming LockInput<LockTicket>, to manager: LockManager<LockTicket>, now: Time) {
        // The spare array, if not in use by a call further up (an effect's own input): then a new one.
        var effects: [LockEffect<LockTicket>] = []
        swap(&effects, &locks.spareEffects)
        manager.apply(consume input, now: now, effects: &effects)
        routeLockEffects(now: now, draining: &effects)
        if effects.isEmpty && locks.spareEffects.capacity < effects.capacity { swap(&effects, &locks.spareEffects) }
    }

    /// Queues the manager's effects (those of asynchronous answers waiting in its outbox, then
    /// `effects`) behind what its own namespace operations produced in the same step (a grant may
    /// rest on those log records: the counters behind its token), then routes (`drain`). Called from
    /// inside the drain (a watch fired for the recipe), this only queues: the recipe's outputs are
    /// routed after everything that happened before them, in one order.
    /// The common case (nothing queued before the step, its namespace outputs only log records, nothing
    /// in the outbox) routes the effects in order without passing them through the queue: what they
    /// cause queues behind them and is drained after the last, as if they had been queued.
    func routeLockEffects(now: Time, _ effects: consuming [LockEffect<LockTicket>] = []) {
        var effects = effects
        routeLockEffects(now: now, draining: &effects)
    }

    /// As above, leaving `effects` empty (its storage kept for the next step).
    func routeLockEffects(now: Time, draining effects: inout [LockEffect<LockTicket>]) {
        guard let manager = locks.manager else { return }
        guard !manager.hasEffects, routeLogRecordsOnly() else {
            collectNamespaceOutputs()
            for effect in manager.takeEffects() { routing.append(.lock(effect)) }
            Self.drainInOrder(&effects) { effect in routing.append(.lock(consume effect)) }
            drain(now: now)
            return
        }
        guard !effects.isEmpty else { return }
        isDraining = true
        Self.drainInOrder(&effects) { effect in
            applyLockEffect(consume effect, now: now)
            finishRouted(now: now)
        }
        isDraining = false
        drain(now: now)
    }

    /// Moves each of `effects` out in order (not copied) into `body`, leaving it empty: a step's few
    /// effects are shifted down (moved bitwise: `remove(at:)`, where `removeFirst` copies the element
    /// out and destroys the original); many are reversed once (which copies each, as swapping does),
    /// then popped from the end.
    private static func drainInOrder(_ effects: inout [LockEffect<LockTicket>], _ body: (consuming LockEffect<LockTicket>) -> Void) {
        if effects.count > 8 {
            effects.reverse()
            while let effect = effects.popLast() { body(consume effect) }
        } else {
            while !effects.isEmpty { body(effects.remove(at: 0)) }
        }
    }

    func applyLockEffect(_ effect: consuming LockEffect<LockTicket>, now: Time) {
        switch consume effect {
        case .granted(let ticket, let node, let token, let hold):
            if lockSetGrant(ticket, node: node, token: token, now: now) { return }
            // The acquire's end, then its connection's count and session in one lookup of the connection.
            guard let session = finishPendingAcquireGivingSession(ticket) else {
                // Nobody left to tell (cannot happen: a closed connection's acquires are cancelled first).
                return
            }
            let owned = takeOwnedAcquire(ticket)
            if let session {
                locks.holders[token] = LockHolder(node: node, ticket: ticket, session: session, owned: owned, hold: hold)
            }
            if owned {
                reply(ticket.connection, ticket.requestID, .acquireOwned,
                      .success(.held(node: node, token: token, holdCount: 1)), now: now)
            } else {
                reply(ticket.connection, ticket.requestID, .acquire, .success(.granted(node: node, token: token)), now: now)
            }
        case .reentered(let ticket, let node, let token, let holdCount):
            if ticket.part != .whole { return } // never: a set names no owner
            _ = takeOwnedAcquire(ticket)
            guard finishPendingAcquire(ticket) else { return }
            reply(ticket.connection, ticket.requestID, .acquireOwned,
                  .success(.held(node: node, token: token, holdCount: holdCount)), now: now)
        case .failed(let ticket, let error):
            if lockSetFailure(ticket, error, now: now) { return }
            let owned = takeOwnedAcquire(ticket)
            let wasAcquire = finishPendingAcquire(ticket)
            guard connections.index(forKey: ticket.connection) != nil else { return }
            if wasAcquire {
                reply(ticket.connection, ticket.requestID, owned ? .acquireOwned : .acquire, .failure(error), now: now)
            } else {
                reply(ticket.connection, ticket.requestID, .release, .failure(error), now: now)
            }
        case .released(let ticket):
            guard ticket.part == .whole else { return } // a set's: the sidecar's own release
            guard connections.index(forKey: ticket.connection) != nil else { return }
            reply(ticket.connection, ticket.requestID, .release, .success(.empty), now: now)
        case .lost(let session, let node, let token, let reason):
            if lockSetLoss(node: node, token: token, reason: reason, now: now) { return }
            // Only this hold's entry: a later hold may have the same node path (PROTOCOL.md §12.6).
            let holderIndex = locks.holders.index(forKey: token)
            let holder = holderIndex.flatMap { locks.holders[$0].value.node == node ? locks.holders[$0].value : nil }
            if holder != nil { locks.holders.remove(at: holderIndex!) }
            let event = Event.lockLost(node: node, token: token, reason: lostReason(reason))
            if sessions[session] != nil {
                deliver(event, toSession: session)
            } else if let holder, connections.index(forKey: holder.ticket.connection) != nil {
                // The session just ended (expired, say) while its connection is still there.
                outputs.append(.send(holder.ticket.connection, .event(event)))
            }
        }
    }

    /// True if `ticket` was a waiting `acquireOwned` (now forgotten). Hashes no ticket while none waits.
    private func takeOwnedAcquire(_ ticket: LockTicket) -> Bool {
        !locks.ownedAcquires.isEmpty && locks.ownedAcquires.remove(ticket) != nil
    }

    /// True if `ticket` was a waiting acquire (now answered).
    func finishPendingAcquire(_ ticket: LockTicket) -> Bool {
        finishPendingAcquireGivingSession(ticket) != nil
    }

    /// As `finishPendingAcquire`: nil if `ticket` was no waiting acquire, else its connection's session (if any).
    private func finishPendingAcquireGivingSession(_ ticket: LockTicket) -> UInt64?? {
        // One lookup of the connection's state, changed in place at its index. A closed connection's
        // waiting acquires went with its state.
        guard let index = connections.index(forKey: ticket.connection) else { return nil }
        return connections.values[index].finishPendingAcquire(ticket.requestID)
    }
}

extension ConnectionState {
    /// See `Engine.admitPendingAcquire`: the client name if the acquire now waits and counts against the limit.
    mutating func admitPendingAcquire(_ requestID: UInt32, limit: Int, otherwise refusal: ReplyError?) -> Result<String, ReplyError> {
        if pendingAcquires.contains(requestID) {
            return .failure(ReplyError(.invalidArgument, "request id \(requestID) names an acquire still waiting"))
        }
        // Only acquires stay unanswered in the engine; every other request is answered when applied,
        // so a client at the limit can still cancel and release.
        if Int(pendingRequests) >= limit {
            return .failure(ReplyError(.tooManyPendingRequests, "at most \(limit) acquires waiting"))
        }
        if let refusal { return .failure(refusal) }
        pendingAcquires.insert(requestID)
        pendingRequests += 1
        return .success(clientName)
    }

    /// nil if `requestID` was no waiting acquire; else it is answered (the count goes down), and this
    /// gives the connection's session.
    mutating func finishPendingAcquire(_ requestID: UInt32) -> UInt64?? {
        guard pendingAcquires.remove(requestID) else { return nil }
        if pendingRequests > 0 { pendingRequests -= 1 }
        return .some(sessionID)
    }
}
