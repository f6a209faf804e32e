import BatonProtocol
import HeapModule

public struct LockManagerConfiguration: Sendable {
    /// Waiters (holders included) on one lock: `tooManyWaiters`.
    public var waitersPerLockMax: Int
    /// Longest node path; a lock path leaves room for the waiter node's name (`lockPathBytesMax`).
    public var pathBytesMax: Int
    /// Longest lock path: `pathBytesMax` less a slash and a waiter node's name (PROTOCOL.md §8).
    public var lockPathBytesMax: Int { pathBytesMax - 1 - WaiterName.nameBytes }
    /// Backoff of retries after the store could not be reached (`.storageFailure`).
    public var retryMillisecondsMin: UInt64 = 20
    public var retryMillisecondsMax: UInt64 = 2_000
    /// Creates of one waiter node (lock directory swept under it, lost replies) before giving up.
    public var createAttemptsMax: Int = 16
    /// Longest lock-delay an acquire may ask (`invalidArgument` beyond).
    public var lockDelayMillisecondsMax: UInt32

    public init(limits: Limits = .default) {
        waitersPerLockMax = limits.waitersPerLockMax
        pathBytesMax = limits.pathBytesMax
        lockDelayMillisecondsMax = limits.lockDelayMillisecondsMax
    }
}

/// Runs the lock recipe for many locks and sessions over a `LockNamespace`.
///
/// Theory of operation. An acquire creates the waiter's ephemeral sequential node under the lock node
/// (created as a container if absent), lists the children once and judges its entitlement from the
/// names alone: exclusive — first child; shared — no exclusive node before it; semaphore of N — fewer
/// than N nodes before it. A waiter that is not entitled watches exactly one node: its predecessor
/// (exclusive) or the nearest earlier exclusive node (shared). When that node goes, the lock is listed
/// again and judged again, so a release wakes only the waiter(s) it entitles. An entitled waiter is
/// re-checked (node exists, session alive) at the moment of the grant, with one read that also sets
/// the holder's watch on its own node; the token is the node's creation transaction. A holder watches its own node and is told `lost(nodeDeleted)` when someone else deletes it.
/// Over a namespace that `reportsDeletions` the manager watches none of its own nodes and reads none at
/// the grant: every deletion of one is its own or reported (`LockInput.nodeDeleted`), and it tells
/// those behind the node itself (`forget`).
///
/// Semaphores: with N holders releasing in any order, a waiter cannot know which single node to
/// watch (its N-th predecessor may stay while an earlier holder leaves). Instead the manager keeps one
/// children watch per semaphore lock: each change costs one notification and one listing for the
/// whole lock (not one per waiter), after which exactly the waiters newly inside the first N are
/// granted. Holders' losses show up in the same listing. Creates also fire that watch, which costs
/// the manager a listing but wakes no waiter.
///
/// A state machine: `apply(input, now) -> effects`. Inputs are the owner's requests, the passing of
/// time and the namespace's answers (`LockInput`); every waiter is in one `WaiterState`, and one
/// routine (`judge`, over `Standing.verdict`) decides what a waiting waiter does. Answers may come
/// before the namespace call returns: they are queued and applied after the step that caused them,
/// so the recipe never re-enters itself and both delivery modes see the same order. Answers that
/// come later are inputs of their own (their effects wait in the outbox, `takeEffects()`). The
/// manager reads no clock and is not thread-safe: drive it from one thread (the event loop).
public final class LockManager<Ticket: Hashable> {
    public let configuration: LockManagerConfiguration
    let namespace: LockNamespace
    let sessionIsAlive: (UInt64) -> Bool
    /// Whether the manager watches its own nodes (holders', waiters'): not over a namespace that
    /// `reportsDeletions` (read once: asked on every grant).
    let watchesOwnNodes: Bool
    /// The namespace, if it answers at once (no closure per call on the hot path).
    let immediate: (any ImmediateLockNamespace)?
    /// What the namespace's callbacks hold instead of the manager (see `ManagerLink`).
    let link = ManagerLink<Ticket>()
    /// Called when effects were produced by a namespace callback outside any call into the manager
    /// (an asynchronous namespace), so the owner knows to `takeEffects()`.
    public var effectsAvailable: (() -> Void)?

    var effects: [LockEffect<Ticket>] = []
    /// Namespace answers that arrived during the current step (applied after it, in order). An array
    /// appended to (moved in: a deque's append copied each answer), taken whole by `endStep`.
    var arrivedDuringStep: [NamespaceAnswer] = []
    /// The batch `endStep` is applying, in reverse (popped from the end, moved out); kept between steps
    /// with the other array's storage, so neither allocates per step.
    var applyingAnswers: [NamespaceAnswer] = []
    var running = false
    var nowMilliseconds: UInt64
    var waiters: [WaiterID: Waiter] = [:]
    /// Pending (unanswered) acquires. One that came while none was pending enters at the end of its
    /// step (`unenteredAcquire`), if still unanswered: an acquire answered in its own step (an
    /// uncontended grant, a refusal) hashes its ticket not at all. An entry stays when its acquire is
    /// answered (a removal hashed the ticket again and moved the entries behind it: ~700 instructions
    /// a contended grant): one whose waiter is answered or gone is stale, overwritten by the next
    /// acquire with its ticket, and every stale one goes when they outnumber the pending ones
    /// (`enterTicket`) or none is pending (`ticketAnswered`).
    var tickets: [Ticket: WaiterID] = [:]
    /// Entries of `tickets` whose acquires are pending.
    var pendingTicketCount = 0
    /// The acquire of the current step that is still to enter `tickets` (`Waiter.ticketEntered`).
    var unenteredAcquire: Waiter?
    /// The tickets the waiters hold: a pending acquire's (`Waiter.ticketSlot`; it leaves `tickets` and
    /// its slot with the reply) and that of the release removing a waiter (`Waiter.releaseTicketSlot`).
    /// A waiter (not generic over `Ticket`) finds its tickets by index: no hash. Freed slots are reused,
    /// so there are at most as many as tickets held at once.
    var ticketSlots: [Ticket?] = []
    var freeTicketSlots: [Int] = []
    var sessions: [UInt64: WaiterIDs] = [:]
    /// The one waiter not entered in `sessions` yet: an acquire of a lock without members cannot be
    /// reentrant, so it needs nothing of the table and waits here instead (an uncontended pair hashes
    /// no session: its release forgets the waiter from here). Entered before anyone reads the table
    /// (`enterDeferredSession`).
    var sessionDeferred: Waiter?
    /// Every lock with local waiters, and the idle ones (no members: see `queueRetire`) kept for the
    /// next acquire: an acquire and the release of an idle lock's only waiter hash its path once
    /// each, not to move the state between two tables. `activeLock` finds only locks with members.
    var locks: [String: LockState] = [:]
    /// The lock `lockState(at:)` found last (one of `locks`, or nil): a client, or sixteen, acquiring
    /// one lock again and again compare its path, not hash it.
    var recentLock: LockState?
    /// How many of `locks` are idle (at most `idleLocksMax`).
    var idleLockTotal = 0
    var nodeWatches: [String: NodeWatch] = [:]
    /// Lock paths in their lock-delay, and until when (PROTOCOL.md §12.12). Expired entries go when
    /// met, and all at once when the table grows: each lives at most `lockDelayMillisecondsMax`.
    var lockDelays: [String: UInt64] = [:]
    var deadlines = Heap<Deadline>()
    var nextWaiterID: WaiterID = 1
    var nextDeadlineOrder: UInt64 = 0
    var nextWatchGeneration: UInt64 = 0

    /// `sessionIsAlive` answers whether a session still lives: asked at the moment of every grant.
    public init(namespace: LockNamespace, configuration: LockManagerConfiguration = LockManagerConfiguration(),
                now: Time, sessionIsAlive: @escaping (UInt64) -> Bool) {
        precondition(configuration.waitersPerLockMax > 0 && configuration.createAttemptsMax > 0)
        precondition(configuration.retryMillisecondsMin > 0 && configuration.retryMillisecondsMin <= configuration.retryMillisecondsMax)
        self.namespace = namespace
        self.configuration = configuration
        self.sessionIsAlive = sessionIsAlive
        self.watchesOwnNodes = !namespace.reportsDeletions
        self.immediate = namespace as? any ImmediateLockNamespace
        self.nowMilliseconds = now.monotonicMilliseconds
        link.manager = self
    }

    /// A lock's state holds its waiters (`LockState.bySequence`, `.localOrder`) and each waiter its
    /// lock's state (`Waiter.lock`): a cycle that forgetting the waiter breaks. A manager dropped
    /// while it still tracks waiters (its engine gone with sessions open) breaks the rest here, or
    /// the states and waiters would never be freed.
    deinit {
        link.manager = nil
        sessionDeferred = nil
        for lock in locks.values { lock.dropWaiters() }
        for waiter in waiters.values { waiter.lock.dropWaiters() }
    }

    // MARK: Inputs

    /// The manager as a state machine: applies one input at time `now` and returns what it caused, in
    /// order (with any effects of earlier asynchronous answers not yet taken, first). This is the one
    /// way in for requests and time; `renew` and the queries below only read or set a field. Namespace calls
    /// the step makes that answer at once are applied within the same call, after the step (so the
    /// recipe never re-enters itself); answers that come later are inputs of their own
    /// (`NamespaceAnswer`), applied by the manager's namespace callbacks when they run: their
    /// effects wait in the outbox (`takeEffects`, announced by `effectsAvailable`).
    public func apply(_ input: consuming LockInput<Ticket>, now: Time) -> [LockEffect<Ticket>] {
        run(consume input, now)
        return takeEffects()
    }

    /// As `apply`, with the effects handed over in `taken`, which must be empty: its storage becomes
    /// the outbox of the next step, so an owner that gives the same (emptied) array back each time
    /// allocates none per step.
    public func apply(_ input: consuming LockInput<Ticket>, now: Time, effects taken: inout [LockEffect<Ticket>]) {
        precondition(taken.isEmpty, "the effects of the last step were not all taken")
        run(consume input, now)
        swap(&taken, &effects)
    }

    /// Sets the lease of the hold named by `node` and `token` to end `leaseMilliseconds` after `now`
    /// (PROTOCOL.md §12.5). Answered at once: nil, or why not (`notHolder`, `lockLost`, `noLease`).
    /// It calls no namespace operation, so it is a plain call rather than an input.
    public func renew(node: String, token: UInt64, session: UInt64, leaseMilliseconds: UInt32, now: Time) -> ReplyError? {
        precondition(!running, "LockManager is not reentrant: call it from outside its callbacks")
        nowMilliseconds = max(nowMilliseconds, now.monotonicMilliseconds)
        guard let lock = activeLock(NodePath.parent(of: node)), let name = WaiterName(lastComponentOf: node),
              let waiter = localWaiter(lock, name), waiter.session == session else {
            return ReplyError(.notHolder, "\(node) is not held by this session")
        }
        guard waiter.token == token else {
            return ReplyError(.lockLost, "the hold of \(node) with token \(token) already ended")
        }
        guard var hold = waiter.hold else {
            return ReplyError(waiter.phase == .removing ? .lockLost : .notHolder, "\(node) is not a hold (\(waiter.phase))")
        }
        guard leaseMilliseconds > 0 else {
            return ReplyError(.invalidArgument, "a renewal needs a lease of at least 1 ms")
        }
        guard waiter.leaseMilliseconds > 0 else {
            return ReplyError(.noLease, "\(node) was granted without a lease")
        }
        hold.leaseDeadlineMilliseconds = nowMilliseconds + UInt64(leaseMilliseconds)
        waiter.hold = hold
        schedule(.lease(waiter.id), at: hold.leaseDeadlineMilliseconds)
        return nil
    }

    /// The earliest monotonic time at which `tick` may have work (never later than the true one).
    public var nextDeadlineMilliseconds: UInt64? { deadlines.min?.atMilliseconds }

    /// Whether effects wait in the outbox (`takeEffects`).
    public var hasEffects: Bool { !effects.isEmpty }

    /// Effects produced since the last call, in order.
    public func takeEffects() -> [LockEffect<Ticket>] {
        // Handed over whole (emptying the array in place would copy it, as the caller shares it).
        guard !effects.isEmpty else { return [] }
        var taken: [LockEffect<Ticket>] = []
        swap(&taken, &effects)
        return taken
    }

    /// One input, then every namespace answer it caused that arrived meanwhile.
    /// Inputs are consumed along the way: the request moves into the step, not copied.
    private func run(_ input: consuming LockInput<Ticket>, _ now: Time) {
        beginStep(now)
        step(consume input)
        endStep()
    }

    private func beginStep(_ now: Time) {
        precondition(!running, "LockManager is not reentrant: call it from outside its callbacks")
        nowMilliseconds = max(nowMilliseconds, now.monotonicMilliseconds)
        running = true
    }

    /// Applies the answers that arrived during the step (each as its own input, without wrapping it in one).
    /// Answers arriving meanwhile go to the next batch, so all apply in the order they arrived.
    private func endStep() {
        while !arrivedDuringStep.isEmpty {
            swap(&applyingAnswers, &arrivedDuringStep)
            applyingAnswers.reverse()
            while let answer = applyingAnswers.popLast() { complete(answer) }
        }
        if let waiter = unenteredAcquire {
            unenteredAcquire = nil
            if !waiter.acquireAnswered, waiter.ticketSlot >= 0, let ticket = ticketSlots[waiter.ticketSlot] {
                enterTicket(ticket, waiter.id)
                waiter.ticketEntered = true
            }
        }
        running = false
    }

    /// An answer the step's own plain call produced (`ImmediateLockNamespace`, or the grant that needs
    /// no read): applied after the step, as `arrived` does with answers that come during a step.
    func answeredInStep(_ answer: consuming NamespaceAnswer) {
        assert(running)
        arrivedDuringStep.append(consume answer) // moved in, not copied
    }

    /// A namespace callback ran. During a step (a namespace that answers at once) the answer waits for
    /// the step to end; otherwise (a namespace that answers later) it is an input of its own, at the
    /// manager's latest time.
    func arrived(_ answer: consuming NamespaceAnswer) {
        guard !running else {
            arrivedDuringStep.append(consume answer)
            return
        }
        beginStep(Time(milliseconds: nowMilliseconds))
        complete(consume answer)
        endStep()
        if !effects.isEmpty { effectsAvailable?() }
    }

    private func step(_ input: consuming LockInput<Ticket>) {
        switch consume input {
        case .acquire(let request, let ticket, let session, let clientName):
            startAcquire(request, ticket: ticket, session: session, clientName: clientName)
        case .release(let node, let token, let session, let ticket, let hold):
            startRelease(node: node, token: token, session: session, ticket: ticket, hold: hold)
        case .cancel(let ticket):
            // A stale entry (its acquire answered) cancels nothing.
            guard let id = tickets[ticket], let waiter = waiters[id], !waiter.acquireAnswered else { return }
            abandon(waiter, ReplyError(.lockCancelled))
        case .sessionEnded(let session):
            endSession(session)
        case .nodeDeleted(let path):
            nodeDeleted(path)
        case .tick:
            while let next = deadlines.min, next.atMilliseconds <= nowMilliseconds {
                _ = deadlines.popMin()
                run(next.action)
            }
        }
    }

    private func startAcquire(_ request: LockRequest, ticket: Ticket, session: UInt64, clientName: String) {
        // The lock's state (active or idle), looked up once for the checks and the queue.
        let existing = lockState(at: request.path)
        let id = nextWaiterID
        // With acquires pending, one hash of the ticket: entered as pending, or found pending already
        // (refused, that one kept); taken out again if the acquire is answered here. With none, no
        // duplicate is possible and the ticket enters at the step's end if still pending.
        let entered = pendingTicketCount > 0
        if entered {
            if let pending = tickets.updateValue(id, forKey: ticket), waiters[pending].map({ !$0.acquireAnswered }) ?? false {
                tickets[ticket] = pending
                emit(.failed(ticket: ticket, error: ReplyError(.invalidArgument, "an acquire with this ticket is pending")))
                return
            }
        }
        if let refusal = refusal(of: request, lock: existing) {
            if entered { tickets[ticket] = nil }
            emit(.failed(ticket: ticket, error: refusal))
            return
        }
        // A lock without members: no reentrancy to judge, and the session's entry can wait (`sessionDeferred`).
        let deferSession = sessionDeferred == nil && (existing?.members.isEmpty ?? true)
        if !deferSession {
            // One hash of the session: its waiters looked at (reentrancy), then the new one entered.
            if sessionDeferred?.session == session { enterDeferredSession() }
            let answered = sessions[session].insert(id) { mine in
                existing.map { reentered(request, ticket: ticket, session: session, mine: mine, lock: $0) } ?? false
            }
            if answered {
                if entered { tickets[ticket] = nil }
                return
            }
        }
        let lock = activateLock(existing, request.path)
        let waiter = Waiter(id: id, session: session, clientName: clientName,
                            request: request, lock: lock, queuedMilliseconds: nowMilliseconds)
        if deferSession { sessionDeferred = waiter }
        nextWaiterID += 1
        waiters[waiter.id] = waiter
        waiter.ticketSlot = holdTicket(ticket)
        waiter.ticketEntered = entered
        if entered {
            pendingTicketCount += 1
            purgeTicketsIfStale() // after the waiter is known: its own entry stays
        }
        if !entered { unenteredAcquire = waiter }
        lock.enter(waiter)
        if waiter.kind == .semaphore { lock.semaphoreMembers += 1 }
        if request.waitMilliseconds != 0 && request.waitMilliseconds != LockRequest.waitForever {
            schedule(.waitTimeout(waiter.id), at: nowMilliseconds + UInt64(request.waitMilliseconds))
        }
        startCreate(waiter, lock)
    }

    private func startRelease(node: String, token: UInt64, session: UInt64, ticket: Ticket, hold: LockHold?) {
        guard let waiter = releasedWaiter(node: node, session: session, hold: hold) else {
            emit(.failed(ticket: ticket, error: ReplyError(.notHolder, "\(node) is not held or awaited by this session")))
            return
        }
        guard waiter.token == token else {
            emit(.failed(ticket: ticket, error: ReplyError(
                .lockLost, "the hold of \(node) with token \(token) already ended; the node is now token \(waiter.token)")))
            return
        }
        switch waiter.state {
        case .holding(var hold) where hold.count > 1:
            hold.count -= 1 // a reentrant hold: the node stays until the count is zero
            waiter.hold = hold
            emit(.released(ticket: ticket))
        case .holding:
            holdReleaseTicket(ticket, waiter)
            remove(waiter)
        case .waiting, .granting:
            holdReleaseTicket(ticket, waiter)
            abandon(waiter, ReplyError(.lockCancelled, "released while waiting"))
        case .queuedForCreate, .ensuringLock, .creating, .recovering, .removing:
            emit(.failed(ticket: ticket, error: ReplyError(.notHolder, "\(node) is already being released")))
        }
    }

    /// The session's waiter whose node is `node`, if any: the one `hold` names when it still has that node,
    /// else looked up by the node's lock and name. The shortcut only over a namespace that reports
    /// deletions: there a waiter not forgotten still has its node, so no other waiter has its path
    /// (elsewhere a lock node deleted behind the manager's back and made again repeats node paths, and
    /// the lookup finds the newer waiter, as it must).
    private func releasedWaiter(node: String, session: UInt64, hold: LockHold?) -> Waiter? {
        if let waiter = hold?.waiter, !watchesOwnNodes, !waiter.forgotten, waiter.session == session, waiter.nodePath == node {
            return waiter
        }
        guard let lock = activeLock(NodePath.parent(of: node)), let name = WaiterName(lastComponentOf: node),
              let waiter = localWaiter(lock, name), waiter.session == session else { return nil }
        return waiter
    }

    /// Pending acquires fail with `sessionExpired`, holds end with `lost(sessionExpired)` (starting
    /// their lock-delay), and every node of the session is deleted.
    @_specialize(where Ticket == LockTicket)
    private func endSession(_ session: UInt64) {
        enterDeferredSession()
        for id in (sessions[session]?.sorted() ?? []) {
            guard let waiter = waiters[id] else { continue }
            switch waiter.state {
            case .holding:
                if waiter.lockDelayMilliseconds > 0 { startLockDelay(waiter) }
                emitLost(waiter, .sessionExpired)
                remove(waiter)
            case .removing:
                break
            default:
                abandon(waiter, ReplyError(.sessionExpired))
            }
        }
    }

    // MARK: Queries (answered from the manager's own state: the waiters of this sidecar)

    /// Whether `token` is the fencing token of a current holder of the lock at `path`.
    public func checkToken(path: String, token: UInt64) -> Bool {
        guard let lock = activeLock(path) else { return false }
        return lock.members.contains { waiter in waiter.phase == .holding && waiter.token == token }
    }

    /// How many acquires the hold named by `node` and `token` answers (1 unless reentrant), or nil if no such hold.
    public func holdCount(node: String, token: UInt64) -> UInt32? {
        guard let lock = activeLock(NodePath.parent(of: node)), let name = WaiterName(lastComponentOf: node),
              let waiter = localWaiter(lock, name), waiter.token == token, let hold = waiter.hold else { return nil }
        return hold.count
    }

    /// The current holds of the lock at `path` whose acquire was revocable (PROTOCOL.md §12.11), in
    /// queue order: the sessions to ask to give the lock up.
    public func revocableHolds(path: String) -> [(session: UInt64, node: String, token: UInt64)] {
        guard let lock = activeLock(path) else { return [] }
        return lock.localOrder.compactMap { waiter in
            guard waiter.revocable, waiter.phase == .holding,
                  let node = waiter.nodePath else { return nil }
            return (waiter.session, node, waiter.token)
        }
    }

    /// Holders and waiters of the lock at `path` in queue order.
    public func inspect(path: String, now: Time) -> [LockEntry] {
        guard let lock = activeLock(path) else { return [] }
        let now = max(nowMilliseconds, now.monotonicMilliseconds)
        let queued = lock.members.filter { waiter in
            waiter.name != nil && (waiter.phase == .waiting || waiter.phase == .granting || waiter.phase == .holding)
        }
        return queued.sorted { $0.name! < $1.name! }.map { waiter in
            let holding = waiter.hold != nil
            let since = waiter.hold?.grantedMilliseconds ?? waiter.queuedMilliseconds
            return LockEntry(node: waiter.nodePath!, kind: waiter.kind, position: holding ? .holder : .waiter,
                             sessionID: waiter.session, clientName: waiter.clientName, token: waiter.token,
                             ageMilliseconds: now >= since ? now - since : 0)
        }
    }

    /// Acquires known to the manager, from request until node deletion (for tests and metrics).
    public var waiterCount: Int { waiters.count }

    /// Locks with local waiters (for tests and metrics).
    public var lockCount: Int { locks.count - idleLockTotal }

    /// Locks without local waiters whose state is kept for the next acquire (for tests and metrics).
    public var idleLockCount: Int { idleLockTotal }

    /// Tickets of pending acquires and releases the manager holds (for tests: none once all are answered).
    public var heldTicketCount: Int { ticketSlots.count - freeTicketSlots.count }

    /// Nodes the manager keeps a watch entry for (for tests: waiting behind a local node over a
    /// namespace that reports deletions needs none).
    public var watchedNodeCount: Int { nodeWatches.count }

    // MARK: Helpers

    /// Consumed: the effect made at the call moves into the outbox (borrowed, it was copied in and
    /// then destroyed: a profile's `initializeWithCopy for LockEffect`).
    func emit(_ effect: consuming LockEffect<Ticket>) {
        effects.append(consume effect)
    }

    /// Why the acquire is refused, or nil. `lock`: the state at the request's path, if any; there is one
    /// only for a path that passed the path's checks (a state is made for an acquire not refused), so
    /// they are not made again for the same bytes (strings equal as `String`s may differ in length).
    private func refusal(of request: LockRequest, lock: LockState?) -> ReplyError? {
        if lock?.path.utf8.count != request.path.utf8.count, let refusal = refusal(ofPath: request.path) { return refusal }
        if request.owner.utf8.count > LockRequest.ownerBytesMax {
            return ReplyError(.invalidArgument, "an owner token is at most \(LockRequest.ownerBytesMax) bytes")
        }
        if request.lockDelayMilliseconds > configuration.lockDelayMillisecondsMax {
            return ReplyError(.invalidArgument, "a lock-delay is at most \(configuration.lockDelayMillisecondsMax) ms")
        }
        if request.kind == .semaphore && request.permits == 0 {
            return ReplyError(.invalidArgument, "a semaphore needs at least one permit")
        }
        if let lock, lock.members.count >= configuration.waitersPerLockMax {
            return ReplyError(.tooManyWaiters, request.path)
        }
        return nil
    }

    private func refusal(ofPath path: String) -> ReplyError? {
        guard LockPath.isValid(path) else { return ReplyError(.invalidPath, path) }
        if path.utf8.count > configuration.lockPathBytesMax {
            return ReplyError(.pathTooLong, "a lock path is at most \(configuration.lockPathBytesMax) bytes: the waiter node's name must fit")
        }
        // A lock under a waiter-named node would put its lock node (a container) in another lock's queue.
        if WaiterName.passesThroughReserved(path: path) {
            return ReplyError(.lockNodeReserved, "\(path) passes through a waiter node's name")
        }
        return nil
    }

    /// Reentrancy (PROTOCOL.md §12.9), judged from the session's own waiters on the lock. With an owner
    /// token: the owner's hold is counted again (same node, same token). Without one: a second acquire
    /// where either is exclusive would queue behind the session's own node, so it is refused at once.
    /// True if the acquire was answered here. `mine`: the session's waiters (it reads no table of sessions:
    /// called while `startAcquire` has the session's entry open).
    private func reentered(_ request: LockRequest, ticket: Ticket, session: UInt64, mine: WaiterIDs, lock: LockState) -> Bool {
        // The smaller of the two sets: a session's waiters, or the lock's (one of them is usually tiny).
        for other in mine.count <= lock.members.count ? mine.compactMap({ waiters[$0] }) : lock.members {
            guard other.session == session, other.lock === lock, !other.isAbandoned else { continue }
            if !request.owner.isEmpty {
                guard other.owner == request.owner else { continue }
                let permits = request.kind == .semaphore ? request.permits : 1
                guard other.kind == request.kind && other.permits == permits else {
                    emit(.failed(ticket: ticket, error: ReplyError(
                        .lockKindMismatch, "owner \(request.owner) holds \(request.path) as \(other.kind); a reentrant acquire must ask the same")))
                    return true
                }
                guard var hold = other.hold else {
                    emit(.failed(ticket: ticket, error: ReplyError(
                        .lockHeldBySession, "an acquire of \(request.path) by owner \(request.owner) is still waiting")))
                    return true
                }
                guard hold.count < UInt32.max else {
                    emit(.failed(ticket: ticket, error: ReplyError(.invalidArgument, "hold count at its maximum")))
                    return true
                }
                hold.count += 1
                other.hold = hold
                emit(.reentered(ticket: ticket, node: other.nodePath!, token: other.token, holdCount: hold.count))
                return true
            }
            if other.owner.isEmpty && request.kind != .semaphore && other.kind != .semaphore
                && (request.kind == .exclusive || other.kind == .exclusive) {
                let state = other.phase == .holding ? "holds" : "awaits"
                emit(.failed(ticket: ticket, error: ReplyError(
                    .lockHeldBySession, "this session \(state) \(request.path) (\(other.kind)); without an owner token a second acquire would wait for itself")))
                return true
            }
        }
        return false
    }

    /// The holder's session died holding: nobody is granted its lock until the delay ends.
    private func startLockDelay(_ holder: Waiter) {
        if lockDelays.count >= 1_024 { lockDelays = lockDelays.filter { $0.value > nowMilliseconds } }
        let until = nowMilliseconds + UInt64(holder.lockDelayMilliseconds)
        lockDelays[holder.lockPath] = max(lockDelays[holder.lockPath] ?? 0, until)
    }

    /// When the lock's lock-delay ends, if it is in one now.
    func lockDelayEnd(_ path: String) -> UInt64? {
        guard !lockDelays.isEmpty, let until = lockDelays[path] else { return nil } // asked on every grant
        if until > nowMilliseconds { return until }
        lockDelays[path] = nil
        return nil
    }

    /// The lock at `path` if it has local waiters (an idle one is not active).
    func activeLock(_ path: String) -> LockState? {
        guard let lock = lockState(at: path), !lock.members.isEmpty else { return nil }
        return lock
    }

    /// The lock at `path` in `locks` (active or idle): the recent one if its path is this, else looked up.
    func lockState(at path: String) -> LockState? {
        if let recent = recentLock, recent.path == path { return recent }
        guard let lock = locks[path] else { return nil }
        recentLock = lock
        return lock
    }

    /// Whether `lock` is the active lock at its path: what an answer, watch or retry for it checks
    /// (a lock's state is made again after it was dropped).
    func isActive(_ lock: LockState) -> Bool {
        !lock.members.isEmpty && lockState(at: lock.path) === lock
    }

    /// The state for an acquire of the lock at `path`, `existing` as `locks` has it: active, idle
    /// (revived in place: no hash), or new.
    func activateLock(_ existing: LockState?, _ path: String) -> LockState {
        if let existing {
            if existing.members.isEmpty { idleLockTotal -= 1 }
            return existing
        }
        let lock = LockState(path: path)
        locks[path] = lock
        recentLock = lock
        return lock
    }

    /// Enters a pending acquire's ticket (over a stale entry of it, if any).
    func enterTicket(_ ticket: Ticket, _ id: WaiterID) {
        tickets[ticket] = id
        pendingTicketCount += 1
        purgeTicketsIfStale()
    }

    /// Drops the stale entries of `tickets` once they outnumber the pending ones (amortized: the
    /// table holds at most twice the pending acquires and a few more).
    func purgeTicketsIfStale() {
        guard tickets.count >= 2 * pendingTicketCount + 32 else { return }
        // Into a table with room for as many more again (a filtered copy was sized to the pending
        // ones and grew, rehashing everything, twice before the next purge).
        var kept = [Ticket: WaiterID](minimumCapacity: 2 * tickets.count)
        for (ticket, id) in tickets where waiters[id].map({ !$0.acquireAnswered }) ?? false { kept[ticket] = id }
        tickets = kept
    }

    /// An entered acquire was answered or forgotten: its entry is stale (all go with the last pending one).
    func ticketAnswered() {
        pendingTicketCount -= 1
        precondition(pendingTicketCount >= 0)
        if pendingTicketCount == 0 { tickets.removeAll(keepingCapacity: true) }
    }

    /// Keeps `ticket` in a slot (`ticketSlots`) and gives its index.
    func holdTicket(_ ticket: Ticket) -> Int {
        guard let slot = freeTicketSlots.popLast() else {
            ticketSlots.append(ticket)
            return ticketSlots.count - 1
        }
        ticketSlots[slot] = ticket
        return slot
    }

    /// The ticket in `slot` (nil for none, -1), freeing the slot.
    func takeTicket(_ slot: inout Int) -> Ticket? {
        guard slot >= 0 else { return nil }
        let ticket = ticketSlots[slot]
        ticketSlots[slot] = nil
        freeTicketSlots.append(slot)
        slot = -1
        return ticket
    }

    /// The release removing `waiter` (one per waiter: a second finds it removing and is refused).
    func holdReleaseTicket(_ ticket: Ticket, _ waiter: Waiter) {
        _ = takeTicket(&waiter.releaseTicketSlot)
        waiter.releaseTicketSlot = holdTicket(ticket)
    }

    /// Enters `sessionDeferred` in `sessions`: called before the table is read.
    func enterDeferredSession() {
        guard let waiter = sessionDeferred else { return }
        sessionDeferred = nil
        sessions[waiter.session].insert(waiter.id)
    }

    func schedule(_ action: DeadlineAction, at milliseconds: UInt64) {
        nextDeadlineOrder += 1
        deadlines.insert(Deadline(atMilliseconds: milliseconds, order: nextDeadlineOrder, action: action))
    }
}


/// How the namespace's callbacks reach the manager, while it lives. Not a weak reference: the first
/// one would give the manager a side table for good, and every retain and release of it (several per
/// request, in the engine) would then take the runtime's slow path. Unowned (counted in the object
/// itself) and cleared by the manager's deinit, so a callback that comes later finds none and is dropped.
final class ManagerLink<Ticket: Hashable> {
    unowned var manager: LockManager<Ticket>?

    /// A namespace answer or watch event, for the manager if it still lives (`LockManager.arrived`).
    func arrived(_ answer: consuming NamespaceAnswer) {
        manager?.arrived(answer)
    }
}
