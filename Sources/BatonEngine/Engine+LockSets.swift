import BatonLocks
import BatonProtocol

// acquireAll (PROTOCOL.md §12.14): several locks, all or none. The set is taken one lock at a time in
// the byte order of the paths, each by an ordinary acquire of the recipe in the request's session
// (so it works the same over any LockNamespace), and answered once: every hold, or an error after
// the locks already taken are released. The global order is what rules out deadlock between sets.

/// An `acquireAll` waiting for its answer.
struct LockSetAcquire {
    let members: [LockSetMember]
    /// Indices into `members` in the order they are taken (byte order of the paths).
    let order: [Int]
    let session: UInt64
    let clientName: String
    let waitMilliseconds: UInt32
    let leaseMilliseconds: UInt32
    let arrivedMilliseconds: UInt64
    /// The locks taken so far, in `order`: `held.count` is the position of the one being acquired.
    var held: [(index: Int, node: String, token: UInt64)] = []

    /// The ticket of the acquire now in the recipe.
    func currentTicket(_ set: LockTicket) -> LockTicket {
        LockTicket(connection: set.connection, requestID: set.requestID, part: .setAcquire(order[held.count], session: session))
    }
}

extension Engine {
    func lockSetAcquire(_ members: [LockSetMember], waitMilliseconds: UInt32, leaseMilliseconds: UInt32,
                        requestID: UInt32, connection: ConnectionID, session: UInt64, now: Time) {
        let clientName: String
        switch admitPendingAcquire(requestID, connection: connection, otherwise: lockSetRefusal(members)) {
        case .success(let name): clientName = name
        case .failure(let refusal):
            reply(connection, requestID, .acquireAll, .failure(refusal), now: now)
            return
        }
        let set = LockTicket(connection: connection, requestID: requestID)
        let order = members.indices.sorted { members[$0].path.utf8.lexicographicallyPrecedes(members[$1].path.utf8) }
        locks.sets[set] = LockSetAcquire(members: members, order: order, session: session,
                                         clientName: clientName,
                                         waitMilliseconds: waitMilliseconds, leaseMilliseconds: leaseMilliseconds,
                                         arrivedMilliseconds: now.monotonicMilliseconds)
        lockSetTakeNext(set, now: now)
    }

    /// The set's own refusal (checked after the connection's, `admitPendingAcquire`), or nil.
    private func lockSetRefusal(_ members: [LockSetMember]) -> ReplyError? {
        guard (1...LockSetMember.countMax).contains(members.count) else {
            return ReplyError(.invalidArgument, "acquireAll takes 1 to \(LockSetMember.countMax) locks")
        }
        var paths = Set<String>()
        for member in members {
            if let refusal = lockRefusal(path: member.path, kind: member.kind, permits: member.permits) { return refusal }
            guard paths.insert(member.path).inserted else {
                return ReplyError(.invalidArgument, "\(member.path) is named twice")
            }
        }
        return nil
    }

    /// The ticket to cancel for a waiting acquire: an `acquireAll`'s is that of its lock now in the recipe.
    func lockPendingTicket(_ ticket: LockTicket) -> LockTicket {
        locks.sets[ticket].map { $0.currentTicket(ticket) } ?? ticket
    }

    /// Acquires the set's next lock with what is left of its wait.
    private func lockSetTakeNext(_ set: LockTicket, now: Time) {
        guard let state = locks.sets[set] else { return }
        let member = state.members[state.order[state.held.count]]
        var wait = state.waitMilliseconds
        if wait != 0 && wait != LockRequest.waitForever {
            let elapsed = now.monotonicMilliseconds - min(now.monotonicMilliseconds, state.arrivedMilliseconds)
            guard elapsed < UInt64(wait) else {
                return lockSetFail(set, ReplyError(.lockTimeout, member.path), now: now)
            }
            wait -= UInt32(elapsed)
        }
        let request = LockRequest(path: member.path, kind: member.kind, permits: member.permits,
                                  waitMilliseconds: wait, leaseMilliseconds: state.leaseMilliseconds)
        applyLockInput(.acquire(request, ticket: state.currentTicket(set), session: state.session,
                                clientName: state.clientName), now: now)
    }

    // The effects that concern sets, case by case: `applyLockEffect` asks in its one switch over the
    // effect (a second switch over a borrowed effect copied it whole, for every effect).

    /// A grant of a set's lock: true if taken.
    func lockSetGrant(_ ticket: LockTicket, node: String, token: UInt64, now: Time) -> Bool {
        guard case .setAcquire(let index, let session) = ticket.part else { return false }
        lockSetGranted(LockTicket(connection: ticket.connection, requestID: ticket.requestID), index: index,
                       session: session, node: node, token: token, now: now)
        return true
    }

    /// A failure of a set's acquire or of the sidecar's own release of a set's lock: true if taken.
    func lockSetFailure(_ ticket: LockTicket, _ error: ReplyError, now: Time) -> Bool {
        switch ticket.part {
        case .whole: return false
        case .setRelease: break // the sidecar's own release: nobody asked
        case .setAcquire(let index, _):
            let set = LockTicket(connection: ticket.connection, requestID: ticket.requestID)
            guard let state = locks.sets[set] else { break }
            let path = state.members[index].path
            lockSetFail(set, ReplyError(error.code, error.message.isEmpty || error.message == path ? path : "\(path): \(error.message)"), now: now)
        }
        return true
    }

    /// A loss of a set's hold before the set's reply: the set fails instead of an event. True if taken.
    func lockSetLoss(node: String, token: UInt64, reason: LockLostReason, now: Time) -> Bool {
        guard !locks.setOfNode.isEmpty, let entry = locks.setOfNode[node], entry.token == token else { return false }
        // The client never learned this node: the set fails instead of an event.
        let code: ErrorCode = reason == .sessionExpired ? .sessionExpired : .lockLost
        lockSetFail(entry.set, ReplyError(code, "\(node) was lost (\(reason)) before every lock was held"), now: now)
        return true
    }

    private func lockSetGranted(_ set: LockTicket, index: Int, session: UInt64, node: String, token: UInt64, now: Time) {
        guard var state = locks.sets[set] else {
            // The set failed while this grant was on its way (a hold lost in the same step): give it back.
            return applyLockInput(.release(node: node, token: token, session: session, ticket: LockTicket(
                connection: set.connection, requestID: set.requestID, part: .setRelease(index))), now: now)
        }
        state.held.append((index, node, token))
        locks.setOfNode[node] = (set, token)
        locks.sets[set] = state
        if state.held.count < state.members.count { return lockSetTakeNext(set, now: now) }
        locks.sets[set] = nil
        for hold in state.held { locks.setOfNode[hold.node] = nil }
        guard finishPendingAcquire(set), connections.index(forKey: set.connection) != nil else {
            // Nobody left to tell: give the locks back.
            return lockSetRelease(set, state, now: now)
        }
        for hold in state.held { locks.holders[hold.token] = LockHolder(node: hold.node, ticket: set, session: state.session, owned: false) }
        let byIndex = Dictionary(uniqueKeysWithValues: state.held.map { ($0.index, LockSetHold(node: $0.node, token: $0.token)) })
        reply(set.connection, set.requestID, .acquireAll,
              .success(.grantedAll(state.members.indices.map { byIndex[$0]! })), now: now)
    }

    /// The set cannot be had: release what it took, stop the acquire in the recipe, answer `error`.
    private func lockSetFail(_ set: LockTicket, _ error: ReplyError, now: Time) {
        guard let state = locks.sets.removeValue(forKey: set) else { return }
        for hold in state.held { locks.setOfNode[hold.node] = nil }
        lockSetRelease(set, state, now: now)
        if state.held.count < state.members.count {
            // Still in the recipe if the failure was not its own (a hold lost): its answer is ignored.
            applyLockInput(.cancel(ticket: state.currentTicket(set)), now: now)
        }
        guard finishPendingAcquire(set) else { return }
        reply(set.connection, set.requestID, .acquireAll, .failure(error), now: now)
    }

    private func lockSetRelease(_ set: LockTicket, _ state: LockSetAcquire, now: Time) {
        applyLockInputs(state.held.map { hold in
            .release(node: hold.node, token: hold.token, session: state.session,
                     ticket: LockTicket(connection: set.connection, requestID: set.requestID, part: .setRelease(hold.index)))
        }, now: now)
    }
}
