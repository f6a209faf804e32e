import BatonProtocol

/// The recipe's steps. Each namespace call's answer comes back as an input (`NamespaceAnswer`,
/// dispatched by `complete`) and re-finds its waiter (by id, or carried: the create, grant check and
/// delete), checking that the waiter is still known and in the state that asked (later answers for
/// waiters that moved on are dropped).
extension LockManager {
    func complete(_ answer: consuming NamespaceAnswer) {
        // Consumed: the payload moves into the step (no copy of the answer's strings and results).
        switch consume answer {
        case .created(let waiter, let result): createCompleted(waiter, result)
        case .ensured(let id, let path, let result): ensureCompleted(id, path, result)
        case .recoveryListed(let id, let result): recoveryListed(id, result)
        case .recoveryChecked(let id, let path, let result): recoveryChecked(id, path, result)
        case .listed(let lock, let serial, let watchGeneration, let judging, let everyone, let result):
            listingCompleted(lock, serial, watchGeneration, judging, everyone, result)
        case .childrenChanged(let lock, let generation): childrenWatchFired(lock, generation)
        case .permitsRead(let id, let result): permitDataArrived(id, result)
        case .watchSet(let path, let generation, let grant, let result):
            nodeWatchSet(path, generation, result)
            if let grant, let waiter = waiters[grant] { grantChecked(waiter, result) }
        case .watchFired(let path, let generation, let type): nodeWatchFired(path, generation, type)
        case .ownNodeDeleted(let path, let lock, let name, let interested): ownNodeDeleted(path, lock, name, interested)
        case .grantChecked(let waiter, let result): grantChecked(waiter, result)
        case .deleted(let waiter, let result): deleteCompleted(waiter, result)
        }
    }

    // MARK: Creating the waiter node

    func startCreate(_ waiter: Waiter, _ lock: LockState) {
        guard lock.creatingSessions.insert(waiter.session) else {
            waiter.state = .queuedForCreate
            lock.createBacklog.append(waiter.id)
            return
        }
        createNode(waiter, lock)
    }

    /// Called as the waiter leaves its create (adopted or given up): the session's next create on the lock may go.
    func releaseCreateSlot(_ waiter: Waiter, _ lock: LockState) {
        guard waiter.isCreatingNode else { return }
        lock.creatingSessions.remove(waiter.session)
        guard let index = lock.createBacklog.firstIndex(where: { waiters[$0]?.session == waiter.session }) else { return }
        let nextID = lock.createBacklog.remove(at: index)
        guard let next = waiters[nextID] else { return }
        lock.creatingSessions.insert(next.session)
        createNode(next, lock)
    }

    func createNode(_ waiter: Waiter, _ lock: LockState) {
        guard waiter.createAttempts < configuration.createAttemptsMax else {
            failWithoutNode(waiter, lock, ReplyError(.storageFailure, "could not create the waiter node"))
            return
        }
        waiter.createAttempts += 1
        waiter.state = .creating(abandoned: waiter.isAbandoned)
        waiter.createIssuedListing = lock.listingsIssued
        let path = lock.createPath(kind: waiter.kind, session: waiter.session)
        let data = waiter.kind == .semaphore ? WaiterName.permitData(waiter.permits) : []
        if let immediate {
            answeredInStep(.created(waiter, immediate.create(path: path, data: data, mode: .ephemeralSequential, owner: waiter.session)))
            return
        }
        namespace.create(path: path, data: data, mode: .ephemeralSequential, owner: waiter.session) { [link = self.link] result in
            link.arrived(.created(waiter, result))
        }
    }

    func createCompleted(_ waiter: Waiter, _ result: Result<LockCreatedNode, ReplyError>) {
        guard !waiter.forgotten, case .creating(let abandoned) = waiter.state else { return }
        let lock = waiter.lock
        switch result {
        case .success(let created):
            adopt(waiter, lock, path: created.path, stat: created.stat, lockIdentity: created.parentCreatedTransaction)
        case .failure(let error) where error.code == .noNode:
            // The lock node is absent (first waiter), or a container sweep took it between creates.
            if abandoned {
                finishWithoutNode(waiter, lock)
            } else {
                ensureNextNode(waiter, ancestors: [lock.path])
            }
        case .failure(let error) where error.code == .storageFailure:
            // The create may have happened: look for our node before creating another (no orphans).
            waiter.state = .recovering(rejected: [], abandoned: abandoned)
            scheduleRetry(waiter)
        case .failure(let error):
            failWithoutNode(waiter, lock, error)
        }
    }

    /// Creates the innermost missing ancestor of `ancestors` (the last) as a container.
    func ensureNextNode(_ waiter: Waiter, ancestors: [String]) {
        guard let path = ancestors.last else { return }
        waiter.state = .ensuringLock(ancestors: ancestors, abandoned: waiter.isAbandoned)
        let id = waiter.id
        namespace.create(path: path, data: [], mode: .container, owner: 0) { [link = self.link] result in
            link.arrived(.ensured(id, path: path, result))
        }
    }

    func ensureCompleted(_ id: WaiterID, _ path: String, _ result: Result<LockCreatedNode, ReplyError>) {
        guard let waiter = waiters[id], case .ensuringLock(var ancestors, let abandoned) = waiter.state else { return }
        let lock = waiter.lock
        if abandoned {
            finishWithoutNode(waiter, lock)
            return
        }
        let code: ErrorCode
        switch result {
        case .success: code = .ok
        case .failure(let error): code = error.code
        }
        switch code {
        case .ok, .nodeExists:
            ancestors.removeLast()
            if ancestors.isEmpty { createNode(waiter, lock) } else { ensureNextNode(waiter, ancestors: ancestors) }
        case .noNode:
            let parent = NodePath.parent(of: path)
            guard parent != "/", ancestors.count < 256 else {
                failWithoutNode(waiter, lock, ReplyError(.noNode, "cannot create \(path)"))
                return
            }
            ensureNextNode(waiter, ancestors: ancestors + [parent])
        case .storageFailure:
            scheduleRetry(waiter)
        default:
            if case .failure(let error) = result { failWithoutNode(waiter, lock, error) }
        }
    }

    /// After a create whose reply was lost: find the untracked node named with our session and kind,
    /// and adopt it only if the namespace says our session owns it.
    func recover(_ waiter: Waiter, _ lock: LockState) {
        let id = waiter.id
        namespace.children(path: lock.path, watch: nil) { [link = self.link] result in
            link.arrived(.recoveryListed(id, result))
        }
    }

    func recoveryListed(_ id: WaiterID, _ result: Result<[String], ReplyError>) {
        guard let waiter = waiters[id], case .recovering(let rejected, let abandoned) = waiter.state else { return }
        let lock = waiter.lock
        switch result {
        case .failure(let error) where error.code == .storageFailure:
            scheduleRetry(waiter)
        case .failure(let error) where error.code != .noNode:
            failWithoutNode(waiter, lock, error)
        case .failure, .success:
            let names = (try? result.get()) ?? []
            let candidate = names.compactMap(WaiterName.init(parsing:)).filter { name in
                name.session == waiter.session && name.kind == waiter.kind
                    && localWaiter(lock, name) == nil && !rejected.contains(name.name)
            }.max { $0.sequence < $1.sequence }
            guard let candidate else {
                if abandoned { finishWithoutNode(waiter, lock) } else { createNode(waiter, lock) }
                return
            }
            let path = lock.path + "/" + candidate.name
            namespace.exists(path: path, watch: nil) { [link = self.link] result in
                link.arrived(.recoveryChecked(id, path: path, result))
            }
        }
    }

    func recoveryChecked(_ id: WaiterID, _ path: String, _ result: Result<Stat?, ReplyError>) {
        guard let waiter = waiters[id], case .recovering(let rejected, let abandoned) = waiter.state else { return }
        let lock = waiter.lock
        switch result {
        case .success(let stat?) where stat.ephemeralOwner == waiter.session:
            adopt(waiter, lock, path: path, stat: stat, lockIdentity: nil)
        case .success:
            // Gone, or another's namesake (a local session id of another sidecar, or of an earlier
            // ZooKeeper session): not ours, but ours may still be among the others. List again
            // without it until none is left; giving up here would orphan ours.
            waiter.state = .recovering(rejected: rejected.union([NodePath.name(of: path)]), abandoned: abandoned)
            recover(waiter, lock)
        case .failure(let error) where error.code == .storageFailure:
            scheduleRetry(waiter)
        case .failure(let error):
            failWithoutNode(waiter, lock, error)
        }
    }

    func adopt(_ waiter: Waiter, _ lock: LockState, path: String, stat: Stat, lockIdentity: UInt64?) {
        guard let name = WaiterName(lastComponentOf: path) else {
            // The namespace named the node in a way the recipe cannot order: remove it and refuse.
            namespace.delete(path: path, expectedVersion: anyVersion) { _ in }
            failWithoutNode(waiter, lock, ReplyError(.internalError, "unexpected waiter node name \(path)"))
            return
        }
        let abandoned = waiter.isAbandoned
        releaseCreateSlot(waiter, lock)
        waiter.adoptNode(name, path: path)
        waiter.token = stat.createdTransaction
        // A lone member's entry waits for a second member (`LockState.enter`): nobody is told apart
        // from it until then (`localWaiter`), so an uncontended pair hashes no sequence.
        if lock.members.count == 1 {
            assert(lock.members[0] === waiter)
            waiter.bySequenceDeferred = true
        } else {
            lock.bySequence[name.sequence] = waiter
        }
        localOrderInsert(lock, waiter)
        let queued = queueAppend(waiter, lock, name, lockIdentity: lockIdentity)
        if abandoned {
            waiter.state = .removing(releaseAnswered: false)
            issueDelete(waiter)
            return
        }
        waiter.state = .waiting(Waiting())
        if queued {
            queueJudgeLast(waiter, lock)
        } else {
            requestListing(lock, judging: waiter)
        }
    }

    /// The acquire ends and no node of it exists.
    func failWithoutNode(_ waiter: Waiter, _ lock: LockState, _ error: ReplyError) {
        answer(waiter, error)
        finishWithoutNode(waiter, lock)
    }

    func finishWithoutNode(_ waiter: Waiter, _ lock: LockState) {
        releaseCreateSlot(waiter, lock)
        forget(waiter)
    }

    // MARK: Listing the lock

    /// The local waiter whose node has this name, if any.
    func localWaiter(_ lock: LockState, _ name: WaiterName) -> Waiter? {
        if let only = lock.members.first, only.bySequenceDeferred {
            // The lock's only member (see `adopt`): what its entry would say.
            return !only.forgotten && only.name == name ? only : nil
        }
        guard let waiter = lock.bySequence[name.sequence], !waiter.forgotten, waiter.name == name else { return nil }
        return waiter
    }

    /// Asks for a listing that judges `waiter` (nil: every local waiter of the lock).
    func requestListing(_ lock: LockState, judging waiter: Waiter?) {
        if let waiter { lock.toJudge.insert(waiter.id) } else { lock.judgeEveryone = true }
        if lock.listingInFlight {
            lock.listingWanted = true
            return
        }
        issueListing(lock)
    }

    func issueListing(_ lock: LockState) {
        lock.listingInFlight = true
        lock.listingWanted = false
        lock.listingsIssued += 1
        let serial = lock.listingsIssued
        let judging = lock.toJudge
        let everyone = lock.judgeEveryone
        lock.toJudge = []
        lock.judgeEveryone = false
        var watch: LockWatch?
        var watchGeneration: UInt64?
        if !lock.childrenWatchArmed && needsChildrenWatch(lock) {
            nextWatchGeneration += 1
            let generation = nextWatchGeneration
            lock.childrenWatchArmed = true
            lock.childrenWatchGeneration = generation
            watchGeneration = generation
            watch = { [link = self.link, lock] _ in link.arrived(.childrenChanged(lock, generation: generation)) }
        }
        namespace.children(path: lock.path, watch: watch) { [link = self.link, lock, watchGeneration] result in
            link.arrived(.listed(lock, serial: serial, watchGeneration: watchGeneration, judging: judging,
                                  everyone: everyone, result))
        }
    }

    func needsChildrenWatch(_ lock: LockState) -> Bool {
        lock.semaphoreMembers > 0 && lock.members.contains { waiter in
            waiter.kind == .semaphore && (waiter.phase == .waiting || waiter.phase == .granting || waiter.phase == .holding)
        }
    }

    func childrenWatchFired(_ lock: LockState, _ generation: UInt64) {
        guard isActive(lock), lock.childrenWatchGeneration == generation else { return }
        lock.childrenWatchArmed = false
        if needsChildrenWatch(lock) { requestListing(lock, judging: nil) }
    }

    func listingCompleted(_ lock: LockState, _ serial: UInt64, _ watchGeneration: UInt64?,
                          _ judging: Set<WaiterID>, _ everyone: Bool, _ result: Result<[String], ReplyError>) {
        guard isActive(lock) else { return }
        lock.listingInFlight = false
        let failedWatch = { if let watchGeneration, lock.childrenWatchGeneration == watchGeneration { lock.childrenWatchArmed = false } }
        switch result {
        case .success(let names):
            judgeListing(lock, serial, names, judging: judging, everyone: everyone)
        case .failure(let error) where error.code == .noNode:
            // The lock node is gone, so every node under it is gone.
            failedWatch()
            judgeListing(lock, serial, [], judging: judging, everyone: true)
        case .failure:
            failedWatch()
            lock.toJudge.formUnion(judging)
            lock.judgeEveryone = lock.judgeEveryone || everyone
            scheduleListingRetry(lock)
        }
        guard isActive(lock), !lock.listingInFlight else { return }
        if lock.listingWanted { issueListing(lock) }
    }

    func scheduleListingRetry(_ lock: LockState) {
        guard !lock.listingRetryScheduled else { return }
        lock.listingRetryScheduled = true
        schedule(.listing(lock.path), at: nowMilliseconds + configuration.retryMillisecondsMin)
    }

    /// A listing arrived: judges the local waiters that asked for it (or all of them), in queue order,
    /// and ends those whose nodes it should show but does not. Waiters not asked for are watching a
    /// node that has not gone: nothing changed for them.
    @_specialize(where Ticket == LockTicket)
    func judgeListing(_ lock: LockState, _ serial: UInt64, _ names: [String], judging: Set<WaiterID>, everyone: Bool) {
        var entries = names.compactMap(WaiterName.init(parsing:))
        let sorted = lock.semaphoreMembers == 0 || everyone || judging.count > 4
        if sorted { entries.sort() }
        if lock.semaphoreMembers == 0 {
            queueRebuild(lock, sorted: entries)
        } else {
            // Semaphore locks are judged by listings only (see LockManager+Queue).
            lock.queueTrusted = false
            lock.queue = []
        }
        // Who is judged, with what the listing shows before each. The common case (a new waiter, or
        // the one woken by its watch) scans the listing once per judged waiter, without sorting it.
        // When a judged reader or semaphore waiter is entitled, every earlier local waiter may be too
        // and must be granted first: then everyone is judged, in queue order.
        var judged = everyone ? [] : standings(lock, entries, of: judging)
        if everyone || judged.count > 4 || judged.contains(where: { entry in entry.standing.map { sharesEntitlement(entry.waiter, $0) } ?? false }) {
            if !sorted { entries.sort() }
            judged = standingsOfEveryone(lock, entries)
        }
        for (waiter, standing) in judged where waiters[waiter.id] === waiter {
            guard let standing else {
                // Not in a listing issued after its create: the node is gone.
                guard waiter.createIssuedListing < serial else { continue }
                switch waiter.phase {
                case .waiting: nodeVanished(waiter)
                case .holding: holderLost(waiter)
                default: break
                }
                continue
            }
            if watchesOwnNodes && waiter.phase == .holding && waiter.kind != .semaphore && waiter.watchedPath == nil,
               let path = waiter.nodePath {
                watchNode(path, waiter) // its watch could not be set earlier
            }
            guard waiter.phase == .waiting else { continue }
            judge(waiter, lock, standing, fromQueue: false)
        }
        if isActive(lock), !lock.childrenWatchArmed, needsChildrenWatch(lock) {
            lock.listingWanted = true
        }
    }

    /// Each of these waiters with its standing in `entries` (any order), nil if its node is not there; in queue order.
    private func standings(_ lock: LockState, _ entries: [WaiterName], of ids: Set<WaiterID>) -> [(waiter: Waiter, standing: Standing?)] {
        let judged = ids.compactMap { waiters[$0] }.filter { $0.lock === lock && $0.name != nil }.sorted { $0.name! < $1.name! }
        return judged.map { waiter in
            let own = waiter.name!
            var standing = Standing()
            var present = false
            for entry in entries {
                if entry == own { present = true } else if entry < own { standing.count(entry) }
            }
            return (waiter, present ? standing : nil)
        }
    }

    /// Every local waiter with a node: those in `entries` (sorted) in queue order with their standing,
    /// then those missing, with none.
    private func standingsOfEveryone(_ lock: LockState, _ entries: [WaiterName]) -> [(waiter: Waiter, standing: Standing?)] {
        var result: [(waiter: Waiter, standing: Standing?)] = []
        var seen = Set<WaiterID>()
        var standing = Standing()
        for entry in entries {
            if let waiter = localWaiter(lock, entry) {
                seen.insert(waiter.id)
                result.append((waiter, standing))
            }
            standing.count(entry)
        }
        for waiter in lock.members.sorted(by: { $0.id < $1.id }) where !seen.contains(waiter.id) && waiter.name != nil {
            result.append((waiter, nil))
        }
        return result
    }

    /// A waiting reader or semaphore waiter that is entitled: earlier local waiters may be entitled with it.
    func sharesEntitlement(_ waiter: Waiter, _ standing: Standing) -> Bool {
        waiter.phase == .waiting && waiter.kind != .exclusive
            && standing.verdict(kind: waiter.kind, permits: waiter.permits) == .entitled
    }

    // MARK: Judging entitlement

    /// The one place that decides what a waiting waiter does, from what is before its node: refused
    /// (queue bound, kind), granted, busy (a try), refused as a deadlock, or waiting behind one node.
    /// `fromQueue`: the standing comes from the manager's queue, which may hold nodes already gone,
    /// so a refusal it would cause is confirmed by a listing first.
    func judge(_ waiter: Waiter, _ lock: LockState, _ standing: Standing, fromQueue: Bool) {
        guard var waiting = waiter.waiting else { return }
        let verdict = standing.verdict(kind: waiter.kind, permits: waiter.permits)
        if !waiting.kindChecked {
            if standing.position >= configuration.waitersPerLockMax {
                if fromQueue { requestListing(lock, judging: waiter) } else { abandon(waiter, ReplyError(.tooManyWaiters, lock.path)) }
                return
            }
            if verdict == .kindMismatch {
                let family = waiter.kind == .semaphore ? "an exclusive or shared lock" : "a semaphore"
                abandon(waiter, ReplyError(.lockKindMismatch, "\(lock.path) is \(family)"))
                return
            }
            if waiter.kind == .semaphore, let other = standing.nearestSemaphore {
                guard let otherWaiter = localWaiter(lock, other) else {
                    checkForeignPermits(waiter, lock, path: lock.path + "/" + other.name)
                    return
                }
                if otherWaiter.permits != waiter.permits {
                    abandon(waiter, ReplyError(.lockKindMismatch, "\(lock.path) is a semaphore of \(otherWaiter.permits) permits"))
                    return
                }
            }
            waiting.kindChecked = true
            waiter.waiting = waiting
        }
        switch verdict {
        case .entitled:
            beginGrant(waiter, lock)
        case .waits where waiter.isTry:
            if fromQueue {
                requestListing(lock, judging: waiter) // busy, unless the entry is stale: the listing says
            } else {
                abandon(waiter, ReplyError(.lockBusy, lock.path))
            }
        case .waits(let behind):
            guard mayWait(waiter) else { return }
            // A waiting semaphore waiter (behind nil) relies on the lock's children watch.
            guard let behind else { return }
            // A local waiter's node over a namespace that reports deletions: waited behind on the
            // waiter itself (its path is its own, not built again).
            let predecessor = watchesOwnNodes ? nil : localWaiter(lock, behind)
            let path = predecessor?.nodePath ?? lock.path + "/" + behind.name
            if waiter.watchedPath != path {
                unwatch(waiter)
                if let predecessor { waitBehind(predecessor, path, waiter) } else { watchNode(path, waiter) }
            }
            watchOwnNode(waiter)
        case .kindMismatch:
            break // refused above when first judged; the nodes before it only go since
        }
    }

    private func checkForeignPermits(_ waiter: Waiter, _ lock: LockState, path: String) {
        guard var waiting = waiter.waiting, !waiting.permitCheckInFlight else { return }
        waiting.permitCheckInFlight = true
        waiter.waiting = waiting
        let id = waiter.id
        namespace.getData(path: path) { [link = self.link] result in
            link.arrived(.permitsRead(id, result))
        }
    }

    private func permitDataArrived(_ id: WaiterID, _ result: Result<[UInt8], ReplyError>) {
        guard let waiter = waiters[id], var waiting = waiter.waiting else { return }
        let lock = waiter.lock
        waiting.permitCheckInFlight = false
        waiter.waiting = waiting
        switch result {
        case .success(let data):
            let permits = WaiterName.permits(fromData: data)
            guard permits == waiter.permits else {
                abandon(waiter, ReplyError(.lockKindMismatch, "\(lock.path) is a semaphore of \(permits.map(String.init) ?? "unknown") permits"))
                return
            }
            waiting.kindChecked = true
            waiter.waiting = waiting
            requestListing(lock, judging: waiter)
        case .failure(let error) where error.code == .noNode:
            requestListing(lock, judging: waiter) // judged again against whatever is before it now
        case .failure:
            scheduleListingRetry(lock)
        }
    }

    // MARK: Granting

    func beginGrant(_ waiter: Waiter, _ lock: LockState) {
        if let until = lockDelayEnd(lock.path) {
            // Entitled, but the lock is in its lock-delay (§12.12): a try is busy; a wait stays
            // queued, watching its own node, and everyone is judged again when the delay ends.
            if waiter.isTry {
                abandon(waiter, ReplyError(.lockBusy, "\(lock.path) is in its lock-delay"))
                return
            }
            watchOwnNode(waiter)
            if lock.delayRecheckAt != until {
                lock.delayRecheckAt = until
                schedule(.lockDelayEnded(lock.path), at: until)
            }
            return
        }
        unwatch(waiter)
        waiter.state = .granting
        issueGrantRead(waiter)
    }

    /// The re-check at the moment of the grant (the node exists, then the session is asked), one read:
    /// a holder of an exclusive or shared lock watches its own node (it is told `lost(nodeDeleted)`
    /// when someone else deletes it), so the read that sets that watch is the re-check; when the node
    /// is watched already (by the waiter behind it, say), a plain read. Over a namespace that reports
    /// deletions (`watchesOwnNodes` false) no read: the node exists, since the manager would have been
    /// told of its deletion (the waiter would not be granting); the answer still comes after the step.
    func issueGrantRead(_ waiter: Waiter) {
        guard let path = waiter.nodePath else { return }
        if !watchesOwnNodes {
            answeredInStep(.grantChecked(waiter, .success(Stat())))
            return
        }
        if waiter.kind != .semaphore && waiter.watchedPath == nil {
            waiter.watchedPath = path
            if !addInterest(path, waiter, grant: true) { return }
        }
        namespace.exists(path: path, watch: nil) { [link = self.link] result in
            link.arrived(.grantChecked(waiter, result))
        }
    }

    func grantChecked(_ waiter: Waiter, _ result: Result<Stat?, ReplyError>) {
        guard !waiter.forgotten, waiter.phase == .granting else { return }
        switch result {
        case .success(nil):
            nodeVanished(waiter)
        case .success:
            guard sessionIsAlive(waiter.session) else {
                abandon(waiter, ReplyError(.sessionExpired))
                return
            }
            let lease = waiter.leaseMilliseconds > 0 ? nowMilliseconds + UInt64(waiter.leaseMilliseconds) : 0
            waiter.state = .holding(Hold(grantedMilliseconds: nowMilliseconds, leaseDeadlineMilliseconds: lease))
            let ticket = takeTicket(&waiter.ticketSlot)!
            waiter.acquireAnswered = true
            if waiter.ticketEntered { ticketAnswered() } // its entry stale, not removed
            emit(.granted(ticket: ticket, node: waiter.nodePath!, token: waiter.token, hold: LockHold(waiter)))
            if lease > 0 { schedule(.lease(waiter.id), at: lease) }
        case .failure(let error) where error.code == .storageFailure:
            scheduleRetry(waiter)
        case .failure(let error):
            abandon(waiter, error)
        }
    }

    // MARK: Watches on nodes

    /// Registers interest in `path`'s deletion. One namespace watch per node serves every local waiter
    /// interested in it (readers behind one writer; a holder and its successor), so one deletion is
    /// one notification.
    func watchNode(_ path: String, _ waiter: Waiter) {
        waiter.watchedPath = path
        addInterest(path, waiter, grant: false)
    }

    /// `waiter` waits behind `predecessor`'s node (at `path`), a local waiter's over a namespace that
    /// `reportsDeletions`. Its deletion always passes through the manager (its own delete, a session's
    /// end, or `LockInput.nodeDeleted`), which tells those behind it as a watch would (`forget`): no
    /// namespace watch, and no `nodeWatches` entry (the interest is kept on the predecessor).
    func waitBehind(_ predecessor: Waiter, _ path: String, _ waiter: Waiter) {
        precondition(!watchesOwnNodes)
        waiter.watchedPath = path
        waiter.watchedWaiter = predecessor
        predecessor.waitersBehind.insert(waiter.id)
    }

    /// A waiting waiter watches its own node too: if someone else deletes it, the acquire is answered
    /// at once (`lockLost`, PROTOCOL.md §12.3), even when no waiter behind it would notice. It shares
    /// the one namespace watch with its successor and, once granted, with its own holder watch.
    func watchOwnNode(_ waiter: Waiter) {
        guard watchesOwnNodes, !waiter.watchesOwnNode, let path = waiter.nodePath else { return }
        waiter.watchesOwnNode = true
        addInterest(path, waiter, grant: false)
    }

    /// True if the node was watched already (no read issued); else the read that sets the watch is
    /// issued, and with `grant` its answer is also the waiter's grant check.
    @discardableResult
    private func addInterest(_ path: String, _ waiter: Waiter, grant: Bool) -> Bool {
        if let index = nodeWatches.index(forKey: path) {
            nodeWatches.values[index].interested.insert(waiter.id)
            return true
        }
        nextWatchGeneration += 1
        let generation = nextWatchGeneration
        nodeWatches[path] = NodeWatch(interested: .one(waiter.id), generation: generation)
        let granted = grant ? waiter.id : nil
        namespace.exists(path: path, watch: { [link = self.link] type in
            link.arrived(.watchFired(path: path, generation: generation, type))
        }) { [link = self.link] result in
            link.arrived(.watchSet(path: path, generation: generation, grant: granted, result))
        }
        return false
    }

    func unwatch(_ waiter: Waiter) {
        if waiter.watchesOwnNode, let own = waiter.nodePath {
            waiter.watchesOwnNode = false
            nodeWatches[own]?.interested.remove(waiter.id)
        }
        guard let path = waiter.watchedPath else { return }
        waiter.watchedPath = nil
        if let predecessor = waiter.watchedWaiter {
            waiter.watchedWaiter = nil
            predecessor.waitersBehind.remove(waiter.id)
            return
        }
        nodeWatches[path]?.interested.remove(waiter.id)
        // The namespace watch stays armed until the node goes; that one notification is then ignored.
    }

    func nodeWatchSet(_ path: String, _ generation: UInt64, _ result: Result<Stat?, ReplyError>) {
        guard let entry = nodeWatches[path], entry.generation == generation else { return }
        switch result {
        case .success(.some):
            return // armed
        case .success(.none):
            nodeWatches[path] = nil
            nodeGone(path, entry.interested)
        case .failure:
            // No watch was set: judge again later, which sets it again.
            nodeWatches[path] = nil
            for id in entry.interested?.sorted() ?? [] {
                guard let waiter = waiters[id] else { continue }
                let lock = waiter.lock
                if waiter.watchesOwnNode && waiter.nodePath == path { waiter.watchesOwnNode = false }
                guard waiter.watchedPath == path else { continue }
                waiter.watchedPath = nil
                scheduleListingRetry(lock)
            }
        }
    }

    @_specialize(where Ticket == LockTicket)
    func nodeWatchFired(_ path: String, _ generation: UInt64, _ type: WatchEventType) {
        guard let entry = nodeWatches[path], entry.generation == generation else { return }
        nodeWatches[path] = nil
        if type == .deleted {
            // Nobody is interested any more (a holder's own node after its release): nothing to learn.
            // A stale queue entry it might leave is dropped by the next walk-back that meets it.
            guard let interested = entry.interested else { return }
            nodeGone(path, interested)
            return
        }
        // Any other change (data set by someone): the node is still there; watch it again.
        for id in entry.interested?.sorted() ?? [] {
            guard let waiter = waiters[id] else { continue }
            if waiter.watchesOwnNode && waiter.nodePath == path {
                waiter.watchesOwnNode = false
                watchOwnNode(waiter)
            }
            if waiter.watchedPath == path { watchNode(path, waiter) }
        }
    }

    /// The owner deleted `path` itself (`LockInput.nodeDeleted`): what a watch on it would have said,
    /// to the node's own waiter or holder (who need not watch it) and to those waiting behind it.
    func nodeDeleted(_ path: String) {
        guard path != NodePath.root else { return }
        // The namespace watch, if any, stays armed; its notification then finds no entry and is ignored.
        nodeGone(path, nodeWatches.removeValue(forKey: path)?.interested ?? nil)
    }

    private func nodeGone(_ path: String, _ interested: WaiterIDs?) {
        if let lock = activeLock(NodePath.parent(of: path)), let name = WaiterName(lastComponentOf: path) {
            nodeLeft(lock, name)
        }
        if let interested { wakeBehind(path, interested) }
    }

    /// The deletion event `forget` queued for a local waiter's node that others wait behind
    /// (`.ownNodeDeleted`): `nodeWatchFired`'s `.deleted`, with the node's lock and name and those
    /// interested known (no path parsed or looked up). A lock without members is idle (`nodeGone` finds none).
    func ownNodeDeleted(_ path: String, _ lock: LockState, _ name: WaiterName, _ interested: WaiterIDs) {
        if !lock.members.isEmpty { nodeLeft(lock, name) }
        wakeBehind(path, interested)
    }

    /// The node leaves its lock's queue; the local waiter or holder whose own node it was learns it
    /// now (through its own watch, its successor's, or the owner's report), before anyone behind it
    /// is judged again: a holder's loss comes before the next grant.
    private func nodeLeft(_ lock: LockState, _ name: WaiterName) {
        queueRemove(lock, name)
        if let owner = localWaiter(lock, name) {
            switch owner.phase {
            case .waiting, .granting: nodeVanished(owner)
            case .holding: holderLost(owner)
            default: break // creating: not its node yet; removing: its own delete finds the node gone
            }
        }
    }

    /// Those interested in the node at `path` learn it is gone, in queue order: readers behind one
    /// writer are granted in order. One (an exclusive hand-off) needs no ordering.
    @_specialize(where Ticket == LockTicket)
    private func wakeBehind(_ path: String, _ interested: WaiterIDs) {
        guard case .many(let ids) = interested else {
            if case .one(let id) = interested, let waiter = waiters[id] { wake(waiter, behind: path) }
            return
        }
        let ordered = ids.compactMap { waiters[$0] }.sorted { left, right in
            (left.name?.sequence ?? 0, left.id) < (right.name?.sequence ?? 0, right.id)
        }
        for waiter in ordered { wake(waiter, behind: path) }
    }

    private func wake(_ waiter: Waiter, behind path: String) {
        guard !waiter.forgotten, waiter.watchedPath == path else { return }
        let lock = waiter.lock
        waiter.watchedPath = nil
        waiter.watchedWaiter = nil
        switch waiter.phase {
        case .waiting:
            if !queueRejudge(waiter, lock) { requestListing(lock, judging: waiter) }
        case .granting: nodeVanished(waiter)
        case .holding: holderLost(waiter)
        default: break
        }
    }

    // MARK: Ending acquires and holds

    /// Whether the acquire got its reply (granted or failed): its ticket is no longer pending.
    func isAnswered(_ waiter: Waiter) -> Bool { waiter.acquireAnswered }

    /// The acquire's reply, if it has none yet.
    func answer(_ waiter: Waiter, _ error: ReplyError) {
        guard !waiter.acquireAnswered, let ticket = takeTicket(&waiter.ticketSlot) else { return }
        waiter.acquireAnswered = true
        if waiter.ticketEntered { ticketAnswered() } // its entry stale, not removed
        emit(.failed(ticket: ticket, error: error))
    }

    /// The acquire ends without a hold: answer it and remove its node.
    func abandon(_ waiter: Waiter, _ error: ReplyError) {
        answer(waiter, error)
        remove(waiter)
    }

    /// The waiter's node vanished before the grant (deleted by someone, or its session ended).
    func nodeVanished(_ waiter: Waiter) {
        answer(waiter, sessionIsAlive(waiter.session)
            ? ReplyError(.lockLost, "the waiter's node was deleted") : ReplyError(.sessionExpired))
        remove(waiter, nodeKnownGone: true)
    }

    func holderLost(_ waiter: Waiter) {
        emitLost(waiter, sessionIsAlive(waiter.session) ? .nodeDeleted : .sessionExpired)
        remove(waiter, nodeKnownGone: true)
    }

    func emitLost(_ waiter: Waiter, _ reason: LockLostReason) {
        guard let node = waiter.nodePath else { return }
        emit(.lost(session: waiter.session, node: node, token: waiter.token, reason: reason))
    }

    /// Ends the waiter: deletes its node (retrying until the store confirms), then forgets it.
    func remove(_ waiter: Waiter, nodeKnownGone: Bool = false) {
        unwatch(waiter)
        switch waiter.state {
        case .queuedForCreate:
            if let index = waiter.lock.createBacklog.firstIndex(of: waiter.id) {
                waiter.lock.createBacklog.remove(at: index)
            }
            forget(waiter)
        case .ensuringLock, .creating, .recovering:
            waiter.abandonCreate() // the answer in flight deletes whatever was created
        case .waiting, .granting, .holding:
            if nodeKnownGone {
                finishRemoval(waiter)
            } else {
                waiter.state = .removing(releaseAnswered: false)
                issueDelete(waiter)
            }
        case .removing:
            if nodeKnownGone { finishRemoval(waiter) }
        }
    }

    func issueDelete(_ waiter: Waiter) {
        guard let path = waiter.nodePath else { return }
        if let immediate {
            answeredInStep(.deleted(waiter, immediate.delete(path: path, expectedVersion: anyVersion)))
            return
        }
        namespace.delete(path: path, expectedVersion: anyVersion) { [link = self.link] result in
            link.arrived(.deleted(waiter, result))
        }
    }

    func deleteCompleted(_ waiter: Waiter, _ result: Result<Void, ReplyError>) {
        guard !waiter.forgotten, case .removing(let releaseAnswered) = waiter.state else { return }
        switch result {
        case .success:
            finishRemoval(waiter)
        case .failure(let error) where error.code == .noNode:
            finishRemoval(waiter)
        case .failure(let error):
            // Release and local state must not diverge: tell the releasing client, keep retrying.
            if !releaseAnswered, waiter.releaseTicketSlot >= 0, let ticket = ticketSlots[waiter.releaseTicketSlot] {
                waiter.state = .removing(releaseAnswered: true)
                emit(.failed(ticket: ticket, error: ReplyError(error.code, "the release did not reach the store; the sidecar keeps retrying")))
            }
            scheduleRetry(waiter)
        }
    }

    func finishRemoval(_ waiter: Waiter) {
        if case .removing(true) = waiter.state {
            // told already
        } else if let ticket = takeTicket(&waiter.releaseTicketSlot) {
            emit(.released(ticket: ticket))
        }
        forget(waiter)
    }

    func forget(_ waiter: Waiter) {
        unwatch(waiter)
        if !watchesOwnNodes, let path = waiter.nodePath {
            // Its node is gone (a waiter with a node is forgotten only then), and over a namespace
            // that reports deletions nobody else tells those waiting behind it (`waitBehind`, and any
            // who watched it before it was known as ours): its deletion event, applied after this
            // step as a namespace watch's would be (that watch, if any, then finds no entry).
            var interested = waiter.waitersBehind
            waiter.waitersBehind = nil
            if !nodeWatches.isEmpty, let watched = nodeWatches.removeValue(forKey: path)?.interested {
                for id in watched { interested.insert(id) }
            }
            if let interested {
                arrivedDuringStep.append(.ownNodeDeleted(path: path, lock: waiter.lock, name: waiter.name!, interested: interested))
            }
        }
        waiters[waiter.id] = nil
        waiter.forgotten = true
        // An answered acquire's ticket left `tickets` and its slot with its reply: no hash here (every grant's case).
        if !waiter.acquireAnswered, let ticket = takeTicket(&waiter.ticketSlot), waiter.ticketEntered {
            let pending = tickets.removeValue(forKey: ticket)
            precondition(pending == waiter.id, "a pending acquire's ticket names it (refusal rejects duplicates)")
            ticketAnswered()
        }
        _ = takeTicket(&waiter.releaseTicketSlot)
        if sessionDeferred === waiter { sessionDeferred = nil } else { sessions[waiter.session].remove(waiter.id) }
        let lock = waiter.lock
        if lock.leave(waiter) && waiter.kind == .semaphore { lock.semaphoreMembers -= 1 }
        if waiter.name != nil { localOrderRemove(lock, waiter) }
        if let name = waiter.name {
            if waiter.bySequenceDeferred {
                waiter.bySequenceDeferred = false
                queueRemove(lock, name)
            } else if let index = lock.bySequence.index(forKey: name.sequence), lock.bySequence.values[index] === waiter {
                lock.bySequence.remove(at: index)
                queueRemove(lock, name)
            }
        }
        if lock.members.isEmpty { queueRetire(lock) }
    }

    // MARK: Deadlines and retries

    /// Retries what the waiter's state does after a `storageFailure`, with exponential backoff.
    func scheduleRetry(_ waiter: Waiter) {
        waiter.retryDelayMilliseconds = waiter.retryDelayMilliseconds == 0
            ? configuration.retryMillisecondsMin
            : min(configuration.retryMillisecondsMax, waiter.retryDelayMilliseconds * 2)
        waiter.retryGeneration += 1
        schedule(.retry(waiter.id, generation: waiter.retryGeneration), at: nowMilliseconds + waiter.retryDelayMilliseconds)
    }

    func run(_ action: DeadlineAction) {
        switch action {
        case .waitTimeout(let id):
            guard let waiter = waiters[id], !isAnswered(waiter) else { return }
            abandon(waiter, ReplyError(.lockTimeout, waiter.lockPath))
        case .lease(let id):
            // A renewal moved the deadline: this one is stale (the renewal scheduled its own).
            guard let waiter = waiters[id], let hold = waiter.hold, hold.leaseDeadlineMilliseconds <= nowMilliseconds else { return }
            emitLost(waiter, .leaseExpired)
            remove(waiter)
        case .retry(let id, let generation):
            guard let waiter = waiters[id], waiter.retryGeneration == generation else { return }
            let lock = waiter.lock
            switch waiter.state {
            case .ensuringLock(let ancestors, let abandoned):
                if abandoned { finishWithoutNode(waiter, lock) } else { ensureNextNode(waiter, ancestors: ancestors) }
            case .recovering: recover(waiter, lock)
            case .granting: issueGrantRead(waiter)
            case .removing: issueDelete(waiter)
            case .queuedForCreate, .creating, .waiting, .holding: break
            }
        case .listing(let path):
            guard let lock = activeLock(path) else { return }
            lock.listingRetryScheduled = false
            requestListing(lock, judging: nil)
        case .lockDelayEnded(let path):
            guard let lock = activeLock(path) else { return }
            lock.delayRecheckAt = nil
            requestListing(lock, judging: nil)
        }
    }
}
