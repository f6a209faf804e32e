import BatonProtocol

/// The recipe's steps. Each namespace answer comes back through `submit` and re-finds its waiter by id,
/// checking that the waiter is still in the phase that asked (later answers for ended waiters are dropped).
extension LockManager {
    // MARK: Creating the waiter node

    func startCreate(_ waiter: Waiter, _ lock: LockState) {
        if lock.creatingSessions.contains(waiter.session) {
            waiter.phase = .queuedForCreate
            lock.createBacklog.append(waiter.id)
            return
        }
        lock.creatingSessions.insert(waiter.session)
        waiter.holdsCreateSlot = true
        createNode(waiter, lock)
    }

    func releaseCreateSlot(_ waiter: Waiter, _ lock: LockState) {
        guard waiter.holdsCreateSlot else { return }
        waiter.holdsCreateSlot = false
        lock.creatingSessions.remove(waiter.session)
        guard let index = lock.createBacklog.firstIndex(where: { waiters[$0]?.session == waiter.session }) else { return }
        let nextID = lock.createBacklog.remove(at: index)
        guard let next = waiters[nextID] else { return }
        lock.creatingSessions.insert(next.session)
        next.holdsCreateSlot = true
        createNode(next, lock)
    }

    func createNode(_ waiter: Waiter, _ lock: LockState) {
        guard waiter.createAttempts < configuration.createAttemptsMax else {
            failWithoutNode(waiter, lock, ReplyError(.storageFailure, "could not create the waiter node"))
            return
        }
        waiter.createAttempts += 1
        waiter.phase = .creating
        waiter.createIssuedListing = lock.listingsIssued
        let id = waiter.id
        namespace.create(path: lock.path + "/" + WaiterName.prefix(kind: waiter.kind, session: waiter.session),
                         data: waiter.kind == .semaphore ? WaiterName.permitData(waiter.permits) : [],
                         mode: .ephemeralSequential, owner: waiter.session) { [weak self] result in
            self?.submit { self?.createCompleted(id, result) }
        }
    }

    func createCompleted(_ id: WaiterID, _ result: Result<LockCreatedNode, ReplyError>) {
        guard let waiter = waiters[id], waiter.phase == .creating, let lock = locks[waiter.lockPath] else { return }
        switch result {
        case .success(let created):
            adopt(waiter, lock, path: created.path, stat: created.stat, lockIdentity: created.parentCreatedTransaction)
        case .failure(let error) where error.code == .noNode:
            // The lock node is absent (first waiter), or a container sweep took it between creates.
            if waiter.abandoned {
                finishWithoutNode(waiter, lock)
            } else {
                waiter.ensureStack = [lock.path]
                ensureNextNode(waiter)
            }
        case .failure(let error) where error.code == .storageFailure:
            // The create may have happened: look for our node before creating another (no orphans).
            waiter.phase = .recovering
            scheduleRetry(waiter, .recover)
        case .failure(let error):
            failWithoutNode(waiter, lock, error)
        }
    }

    func ensureNextNode(_ waiter: Waiter) {
        guard let path = waiter.ensureStack.last else { return }
        waiter.phase = .ensuringLock
        let id = waiter.id
        namespace.create(path: path, data: [], mode: .container, owner: 0) { [weak self] result in
            self?.submit { self?.ensureCompleted(id, path, result) }
        }
    }

    func ensureCompleted(_ id: WaiterID, _ path: String, _ result: Result<LockCreatedNode, ReplyError>) {
        guard let waiter = waiters[id], waiter.phase == .ensuringLock, let lock = locks[waiter.lockPath] else { return }
        if waiter.abandoned {
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
            waiter.ensureStack.removeLast()
            if waiter.ensureStack.isEmpty { createNode(waiter, lock) } else { ensureNextNode(waiter) }
        case .noNode:
            let parent = NodePath.parent(of: path)
            guard parent != "/", waiter.ensureStack.count < 256 else {
                failWithoutNode(waiter, lock, ReplyError(.noNode, "cannot create \(path)"))
                return
            }
            waiter.ensureStack.append(parent)
            ensureNextNode(waiter)
        case .storageFailure:
            scheduleRetry(waiter, .ensureLock)
        default:
            if case .failure(let error) = result { failWithoutNode(waiter, lock, error) }
        }
    }

    /// After a create whose reply was lost: find the untracked node named with our session and kind,
    /// and adopt it only if the namespace says our session owns it.
    func recover(_ waiter: Waiter, _ lock: LockState) {
        waiter.phase = .recovering
        let id = waiter.id
        namespace.children(path: lock.path, watch: nil) { [weak self] result in
            self?.submit { self?.recoveryListed(id, result) }
        }
    }

    func recoveryListed(_ id: WaiterID, _ result: Result<[String], ReplyError>) {
        guard let waiter = waiters[id], waiter.phase == .recovering, let lock = locks[waiter.lockPath] else { return }
        switch result {
        case .failure(let error) where error.code == .storageFailure:
            scheduleRetry(waiter, .recover)
        case .failure(let error) where error.code != .noNode:
            failWithoutNode(waiter, lock, error)
        case .failure, .success:
            let names = (try? result.get()) ?? []
            let candidate = names.compactMap(WaiterName.init(parsing:)).filter { name in
                name.session == waiter.session && name.kind == waiter.kind
                    && localWaiter(lock, name) == nil && !waiter.rejectedNodes.contains(name.name)
            }.max { $0.sequence < $1.sequence }
            guard let candidate else {
                if waiter.abandoned { finishWithoutNode(waiter, lock) } else { createNode(waiter, lock) }
                return
            }
            let path = lock.path + "/" + candidate.name
            namespace.exists(path: path, watch: nil) { [weak self] result in
                self?.submit { self?.recoveryChecked(id, path, result) }
            }
        }
    }

    func recoveryChecked(_ id: WaiterID, _ path: String, _ result: Result<Stat?, ReplyError>) {
        guard let waiter = waiters[id], waiter.phase == .recovering, let lock = locks[waiter.lockPath] else { return }
        switch result {
        case .success(let stat?) where stat.ephemeralOwner == waiter.session:
            adopt(waiter, lock, path: path, stat: stat, lockIdentity: nil)
        case .success:
            // Gone, or another's namesake (a local session id of another sidecar, or of an earlier
            // ZooKeeper session): not ours, but ours may still be among the others. List again
            // without it until none is left; giving up here would orphan ours.
            waiter.rejectedNodes.insert(NodePath.name(of: path))
            recover(waiter, lock)
        case .failure(let error) where error.code == .storageFailure:
            scheduleRetry(waiter, .recover)
        case .failure(let error):
            failWithoutNode(waiter, lock, error)
        }
    }

    func adopt(_ waiter: Waiter, _ lock: LockState, path: String, stat: Stat, lockIdentity: UInt64?) {
        releaseCreateSlot(waiter, lock)
        guard let name = WaiterName(parsing: NodePath.name(of: path)) else {
            // The namespace named the node in a way the recipe cannot order: remove it and refuse.
            namespace.delete(path: path, expectedVersion: anyVersion) { _ in }
            failWithoutNode(waiter, lock, ReplyError(.internalError, "unexpected waiter node name \(path)"))
            return
        }
        waiter.name = name
        waiter.token = stat.createdTransaction
        lock.bySequence[name.sequence] = waiter.id
        localOrderInsert(lock, waiter)
        let queued = queueAppend(waiter, lock, name, lockIdentity: lockIdentity)
        if waiter.abandoned {
            waiter.phase = .removing
            issueDelete(waiter)
            return
        }
        waiter.phase = .waiting
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

    // MARK: Judging entitlement

    /// Asks for a listing that judges `waiter` (nil: every local waiter of the lock).
    /// The local waiter whose node has this name, if any.
    func localWaiter(_ lock: LockState, _ name: WaiterName) -> Waiter? {
        guard let id = lock.bySequence[name.sequence], let waiter = waiters[id], waiter.name == name else { return nil }
        return waiter
    }

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
            watch = { [weak self, lock] _ in
                self?.submit { self?.childrenWatchFired(lock, generation) }
            }
        }
        namespace.children(path: lock.path, watch: watch) { [weak self, lock] result in
            self?.submit { self?.listingCompleted(lock, serial, watchGeneration, judging, everyone, result) }
        }
    }

    func needsChildrenWatch(_ lock: LockState) -> Bool {
        lock.semaphoreMembers > 0 && lock.members.contains { id in
            guard let waiter = waiters[id], waiter.kind == .semaphore else { return false }
            return waiter.phase == .waiting || waiter.phase == .granting || waiter.phase == .holding
        }
    }

    func childrenWatchFired(_ lock: LockState, _ generation: UInt64) {
        guard locks[lock.path] === lock, lock.childrenWatchGeneration == generation else { return }
        lock.childrenWatchArmed = false
        if needsChildrenWatch(lock) { requestListing(lock, judging: nil) }
    }

    func listingCompleted(_ lock: LockState, _ serial: UInt64, _ watchGeneration: UInt64?,
                          _ judging: Set<WaiterID>, _ everyone: Bool, _ result: Result<[String], ReplyError>) {
        guard locks[lock.path] === lock else { return }
        lock.listingInFlight = false
        let failedWatch = { if let watchGeneration, lock.childrenWatchGeneration == watchGeneration { lock.childrenWatchArmed = false } }
        switch result {
        case .success(let names):
            evaluate(lock, serial, names, judging: judging, everyone: everyone)
        case .failure(let error) where error.code == .noNode:
            // The lock node is gone, so every node under it is gone.
            failedWatch()
            evaluate(lock, serial, [], judging: judging, everyone: true)
        case .failure:
            failedWatch()
            lock.toJudge.formUnion(judging)
            lock.judgeEveryone = lock.judgeEveryone || everyone
            scheduleListingRetry(lock)
        }
        guard locks[lock.path] === lock, !lock.listingInFlight else { return }
        if lock.listingWanted { issueListing(lock) }
    }

    func scheduleListingRetry(_ lock: LockState) {
        guard !lock.listingRetryScheduled else { return }
        lock.listingRetryScheduled = true
        schedule(.listing(lock.path), at: nowMilliseconds + configuration.retryMillisecondsMin)
    }

    /// Judges the local waiters that asked for this listing (or all), in queue order.
    /// Waiters not asked for are watching a node that has not gone: nothing changed for them.
    func evaluate(_ lock: LockState, _ serial: UInt64, _ names: [String], judging: Set<WaiterID>, everyone: Bool) {
        let unsorted = names.compactMap(WaiterName.init(parsing:))
        var sorted: [WaiterName]?
        if lock.semaphoreMembers == 0 {
            sorted = unsorted.sorted()
            queueRebuild(lock, sorted: sorted!)
        } else {
            // Semaphore locks are judged by listings only (see LockManager+Queue).
            lock.queueTrusted = false
            lock.queue = []
        }
        if !everyone && judging.count <= 4 && evaluateFew(lock, serial, unsorted, judging: judging) {
            return
        }
        // The full pass judges every local waiter in queue order, so that waiters entitled together
        // (a run of readers, semaphore permits) are granted in queue order.
        let entries = sorted ?? unsorted.sorted()
        var seen = Set<WaiterID>()
        var previous: WaiterName?
        var nearestExclusive: WaiterName?
        var nearestSemaphore: WaiterName?
        var exclusiveOrSharedBefore = false
        for (position, entry) in entries.enumerated() {
            defer {
                previous = entry
                switch entry.kind {
                case .exclusive:
                    nearestExclusive = entry
                    exclusiveOrSharedBefore = true
                case .shared:
                    exclusiveOrSharedBefore = true
                case .semaphore:
                    nearestSemaphore = entry
                }
            }
            guard let waiter = localWaiter(lock, entry) else { continue }
            let id = waiter.id
            seen.insert(id)
            if waiter.phase == .holding && waiter.kind != .semaphore && waiter.watchedPath == nil, let path = waiter.nodePath {
                watchNode(path, waiter) // its watch could not be set earlier
            }
            guard waiter.phase == .waiting else { continue }
            judge(waiter, lock, position: position, previous: previous, nearestExclusive: nearestExclusive,
                  nearestSemaphore: nearestSemaphore, exclusiveOrSharedBefore: exclusiveOrSharedBefore)
        }
        // Nodes this listing must show but does not are gone.
        let missing = lock.members.filter { id in
            guard !seen.contains(id), let waiter = waiters[id], waiter.lockPath == lock.path else { return false }
            return waiter.name != nil && waiter.createIssuedListing < serial
        }
        for id in missing.sorted() {
            guard let waiter = waiters[id] else { continue }
            switch waiter.phase {
            case .waiting: nodeVanished(waiter)
            case .holding: holderLost(waiter)
            default: break
            }
        }
        if locks[lock.path] === lock, !lock.childrenWatchArmed, needsChildrenWatch(lock) {
            lock.listingWanted = true
        }
    }

    /// The common case (a new waiter, or the one woken by its watch): one scan per judged waiter,
    /// without sorting the listing or looking up every child.
    /// False (having done nothing) when a judged reader or semaphore waiter is entitled: then every
    /// earlier local waiter is entitled too and must be granted first, which takes the full pass.
    private func evaluateFew(_ lock: LockState, _ serial: UInt64, _ entries: [WaiterName], judging: Set<WaiterID>) -> Bool {
        let judged = judging.compactMap { waiters[$0] }.filter { $0.lockPath == lock.path && $0.name != nil }
            .sorted { $0.name! < $1.name! }
        var standings: [WaiterStanding] = []
        for waiter in judged {
            let own = waiter.name!
            var standing = WaiterStanding()
            for entry in entries {
                if entry == own {
                    standing.present = true
                    continue
                }
                guard entry < own else { continue }
                standing.position += 1
                if standing.previous.map({ $0 < entry }) ?? true { standing.previous = entry }
                switch entry.kind {
                case .exclusive:
                    standing.exclusiveOrSharedBefore = true
                    if standing.nearestExclusive.map({ $0 < entry }) ?? true { standing.nearestExclusive = entry }
                case .shared:
                    standing.exclusiveOrSharedBefore = true
                case .semaphore:
                    if standing.nearestSemaphore.map({ $0 < entry }) ?? true { standing.nearestSemaphore = entry }
                }
            }
            if standing.present && waiter.phase == .waiting {
                let sharesEntitlement = (waiter.kind == .shared && standing.nearestExclusive == nil)
                    || (waiter.kind == .semaphore && standing.position < Int(waiter.permits))
                if sharesEntitlement { return false }
            }
            standings.append(standing)
        }
        for (waiter, standing) in zip(judged, standings) {
            guard waiters[waiter.id] === waiter else { continue }
            let present = standing.present
            let position = standing.position
            let previous = standing.previous
            let nearestExclusive = standing.nearestExclusive
            let nearestSemaphore = standing.nearestSemaphore
            let exclusiveOrSharedBefore = standing.exclusiveOrSharedBefore
            guard present else {
                guard waiter.createIssuedListing < serial else { continue }
                switch waiter.phase {
                case .waiting: nodeVanished(waiter)
                case .holding: holderLost(waiter)
                default: break
                }
                continue
            }
            if waiter.phase == .holding && waiter.kind != .semaphore && waiter.watchedPath == nil, let path = waiter.nodePath {
                watchNode(path, waiter)
            }
            guard waiter.phase == .waiting else { continue }
            judge(waiter, lock, position: position, previous: previous, nearestExclusive: nearestExclusive,
                  nearestSemaphore: nearestSemaphore, exclusiveOrSharedBefore: exclusiveOrSharedBefore)
        }
        if locks[lock.path] === lock, !lock.childrenWatchArmed, needsChildrenWatch(lock) {
            lock.listingWanted = true
        }
        return true
    }

    private func judge(_ waiter: Waiter, _ lock: LockState, position: Int, previous: WaiterName?,
                       nearestExclusive: WaiterName?, nearestSemaphore: WaiterName?, exclusiveOrSharedBefore: Bool) {
        if !waiter.kindChecked {
            if position >= configuration.waitersPerLockMax {
                abandon(waiter, ReplyError(.tooManyWaiters, lock.path))
                return
            }
            switch waiter.kind {
            case .semaphore:
                if exclusiveOrSharedBefore {
                    abandon(waiter, ReplyError(.lockKindMismatch, "\(lock.path) is an exclusive or shared lock"))
                    return
                }
                if let other = nearestSemaphore {
                    if let otherWaiter = localWaiter(lock, other) {
                        if otherWaiter.permits != waiter.permits {
                            abandon(waiter, ReplyError(.lockKindMismatch, "\(lock.path) is a semaphore of \(otherWaiter.permits) permits"))
                            return
                        }
                    } else {
                        checkForeignPermits(waiter, lock, path: lock.path + "/" + other.name)
                        return
                    }
                }
            case .exclusive, .shared:
                if nearestSemaphore != nil {
                    abandon(waiter, ReplyError(.lockKindMismatch, "\(lock.path) is a semaphore"))
                    return
                }
            }
            waiter.kindChecked = true
        }
        let entitled: Bool
        let target: WaiterName?
        switch waiter.kind {
        case .exclusive:
            entitled = position == 0
            target = previous
        case .shared:
            entitled = nearestExclusive == nil
            target = nearestExclusive
        case .semaphore:
            entitled = position < Int(waiter.permits)
            target = nil
        }
        if entitled {
            beginGrant(waiter, lock)
        } else if waiter.isTry {
            abandon(waiter, ReplyError(.lockBusy, lock.path))
        } else if !mayWait(waiter) {
            return
        } else if let target {
            let path = lock.path + "/" + target.name
            if waiter.watchedPath != path {
                unwatch(waiter)
                watchNode(path, waiter)
            }
            watchOwnNode(waiter)
        }
        // A waiting semaphore waiter relies on the lock's children watch (re-armed by `evaluate`).
    }

    private func checkForeignPermits(_ waiter: Waiter, _ lock: LockState, path: String) {
        guard !waiter.permitCheckInFlight else { return }
        waiter.permitCheckInFlight = true
        let id = waiter.id
        namespace.getData(path: path) { [weak self] result in
            self?.submit { self?.permitDataArrived(id, result) }
        }
    }

    private func permitDataArrived(_ id: WaiterID, _ result: Result<[UInt8], ReplyError>) {
        guard let waiter = waiters[id], waiter.phase == .waiting, let lock = locks[waiter.lockPath] else { return }
        waiter.permitCheckInFlight = false
        switch result {
        case .success(let data):
            let permits = WaiterName.permits(fromData: data)
            guard permits == waiter.permits else {
                abandon(waiter, ReplyError(.lockKindMismatch, "\(lock.path) is a semaphore of \(permits.map(String.init) ?? "unknown") permits"))
                return
            }
            waiter.kindChecked = true
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
        waiter.phase = .granting
        if waiter.kind != .semaphore, let path = waiter.nodePath {
            watchNode(path, waiter) // the holder's own node: tells it when someone else deletes it
        }
        issueGrantCheck(waiter)
    }

    func issueGrantCheck(_ waiter: Waiter) {
        guard let path = waiter.nodePath else { return }
        let id = waiter.id
        namespace.exists(path: path, watch: nil) { [weak self] result in
            self?.submit { self?.grantChecked(id, result) }
        }
    }

    /// The re-check at the moment of the grant: the node still exists and the session still lives.
    func grantChecked(_ id: WaiterID, _ result: Result<Stat?, ReplyError>) {
        guard let waiter = waiters[id], waiter.phase == .granting else { return }
        switch result {
        case .success(nil):
            nodeVanished(waiter)
        case .success:
            guard sessionIsAlive(waiter.session) else {
                abandon(waiter, ReplyError(.sessionExpired))
                return
            }
            waiter.phase = .holding
            waiter.grantedMilliseconds = nowMilliseconds
            waiter.answered = true
            let ticket = ticketOf[waiter.id]!
            tickets[ticket] = nil
            emit(.granted(ticket: ticket, node: waiter.nodePath!, token: waiter.token))
            if waiter.leaseMilliseconds > 0 {
                waiter.leaseDeadlineMilliseconds = nowMilliseconds + UInt64(waiter.leaseMilliseconds)
                schedule(.lease(waiter.id), at: waiter.leaseDeadlineMilliseconds)
            }
        case .failure(let error) where error.code == .storageFailure:
            scheduleRetry(waiter, .grantCheck)
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
        addInterest(path, waiter)
    }

    /// A waiting waiter watches its own node too: if someone else deletes it, the acquire is answered
    /// at once (`lockLost`, PROTOCOL.md §12.3), even when no waiter behind it would notice. It shares
    /// the one namespace watch with its successor and, once granted, with its own holder watch.
    func watchOwnNode(_ waiter: Waiter) {
        guard !waiter.watchesOwnNode, let path = waiter.nodePath else { return }
        waiter.watchesOwnNode = true
        addInterest(path, waiter)
    }

    private func addInterest(_ path: String, _ waiter: Waiter) {
        if nodeWatches[path] != nil {
            nodeWatches[path]!.interested.insert(waiter.id)
            return
        }
        nextWatchGeneration += 1
        let generation = nextWatchGeneration
        nodeWatches[path] = NodeWatch(interested: [waiter.id], generation: generation)
        namespace.exists(path: path, watch: { [weak self] type in
            self?.submit { self?.nodeWatchFired(path, generation, type) }
        }) { [weak self] result in
            self?.submit { self?.nodeWatchSet(path, generation, result) }
        }
    }

    func unwatch(_ waiter: Waiter) {
        if waiter.watchesOwnNode, let own = waiter.nodePath {
            waiter.watchesOwnNode = false
            nodeWatches[own]?.interested.remove(waiter.id)
        }
        guard let path = waiter.watchedPath else { return }
        waiter.watchedPath = nil
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
            for id in entry.interested.sorted() {
                guard let waiter = waiters[id], let lock = locks[waiter.lockPath] else { continue }
                if waiter.watchesOwnNode && waiter.nodePath == path { waiter.watchesOwnNode = false }
                guard waiter.watchedPath == path else { continue }
                waiter.watchedPath = nil
                scheduleListingRetry(lock)
            }
        }
    }

    func nodeWatchFired(_ path: String, _ generation: UInt64, _ type: WatchEventType) {
        guard let entry = nodeWatches[path], entry.generation == generation else { return }
        nodeWatches[path] = nil
        if type == .deleted {
            // Nobody is interested any more (a holder's own node after its release): nothing to learn.
            // A stale queue entry it might leave is dropped by the next walk-back that meets it.
            guard !entry.interested.isEmpty else { return }
            nodeGone(path, entry.interested)
            return
        }
        // Any other change (data set by someone): the node is still there; watch it again.
        for id in entry.interested.sorted() {
            guard let waiter = waiters[id] else { continue }
            if waiter.watchesOwnNode && waiter.nodePath == path {
                waiter.watchesOwnNode = false
                watchOwnNode(waiter)
            }
            if waiter.watchedPath == path { watchNode(path, waiter) }
        }
    }

    private func nodeGone(_ path: String, _ interested: Set<WaiterID>) {
        // The node leaves its lock's queue; a waiting local waiter whose own node it was learns it now
        // (through its own watch or its successor's) and is answered.
        if let lock = locks[NodePath.parent(of: path)], let name = WaiterName(parsing: NodePath.name(of: path)) {
            queueRemove(lock, name)
            if let owner = localWaiter(lock, name), owner.phase == .waiting { nodeVanished(owner) }
        }
        // In queue order: readers behind one writer are granted in order.
        let ordered = interested.compactMap { waiters[$0] }.sorted { left, right in
            (left.name?.sequence ?? 0, left.id) < (right.name?.sequence ?? 0, right.id)
        }
        for waiter in ordered {
            guard waiters[waiter.id] === waiter, waiter.watchedPath == path, let lock = locks[waiter.lockPath] else { continue }
            waiter.watchedPath = nil
            switch waiter.phase {
            case .waiting:
                if !queueRejudge(waiter, lock) { requestListing(lock, judging: waiter) }
            case .granting: nodeVanished(waiter)
            case .holding: holderLost(waiter)
            default: break
            }
        }
    }

    // MARK: Ending acquires and holds

    /// The acquire's reply, if it has none yet.
    func answer(_ waiter: Waiter, _ error: ReplyError) {
        guard !waiter.answered else { return }
        waiter.answered = true
        let ticket = ticketOf[waiter.id]!
        tickets[ticket] = nil
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
        waiter.abandoned = true
        unwatch(waiter)
        switch waiter.phase {
        case .queuedForCreate:
            if let lock = locks[waiter.lockPath], let index = lock.createBacklog.firstIndex(of: waiter.id) {
                lock.createBacklog.remove(at: index)
            }
            forget(waiter)
        case .ensuringLock, .creating, .recovering:
            break // the answer in flight sees `abandoned` and deletes whatever was created
        case .waiting, .granting, .holding:
            if nodeKnownGone {
                finishRemoval(waiter)
            } else {
                waiter.phase = .removing
                issueDelete(waiter)
            }
        case .removing:
            if nodeKnownGone { finishRemoval(waiter) }
        }
    }

    func issueDelete(_ waiter: Waiter) {
        guard let path = waiter.nodePath else { return }
        let id = waiter.id
        namespace.delete(path: path, expectedVersion: anyVersion) { [weak self] result in
            self?.submit { self?.deleteCompleted(id, result) }
        }
    }

    func deleteCompleted(_ id: WaiterID, _ result: Result<Void, ReplyError>) {
        guard let waiter = waiters[id], waiter.phase == .removing else { return }
        switch result {
        case .success:
            finishRemoval(waiter)
        case .failure(let error) where error.code == .noNode:
            finishRemoval(waiter)
        case .failure(let error):
            // Release and local state must not diverge: tell the releasing client, keep retrying.
            if !waiter.releaseAnswered, let ticket = releaseTicketOf[waiter.id] {
                waiter.releaseAnswered = true
                emit(.failed(ticket: ticket, error: ReplyError(error.code, "the release did not reach the store; the sidecar keeps retrying")))
            }
            scheduleRetry(waiter, .delete)
        }
    }

    func finishRemoval(_ waiter: Waiter) {
        if !waiter.releaseAnswered, let ticket = releaseTicketOf[waiter.id] {
            waiter.releaseAnswered = true
            emit(.released(ticket: ticket))
        }
        forget(waiter)
    }

    func forget(_ waiter: Waiter) {
        unwatch(waiter)
        waiters[waiter.id] = nil
        if let ticket = ticketOf.removeValue(forKey: waiter.id), tickets[ticket] == waiter.id { tickets[ticket] = nil }
        releaseTicketOf[waiter.id] = nil
        if var ids = sessions[waiter.session] {
            ids.remove(waiter.id)
            sessions[waiter.session] = ids.isEmpty ? nil : ids
        }
        guard let lock = locks[waiter.lockPath] else { return }
        if lock.members.remove(waiter.id) != nil && waiter.kind == .semaphore { lock.semaphoreMembers -= 1 }
        if waiter.name != nil { localOrderRemove(lock, waiter) }
        if let name = waiter.name, lock.bySequence[name.sequence] == waiter.id {
            lock.bySequence[name.sequence] = nil
            queueRemove(lock, name)
        }
        if lock.members.isEmpty {
            locks[lock.path] = nil
            queueRetire(lock)
        }
    }

    // MARK: Deadlines and retries

    func scheduleRetry(_ waiter: Waiter, _ action: RetryAction) {
        waiter.retryDelayMilliseconds = waiter.retryDelayMilliseconds == 0
            ? configuration.retryMillisecondsMin
            : min(configuration.retryMillisecondsMax, waiter.retryDelayMilliseconds * 2)
        waiter.retryAction = action
        waiter.retryGeneration += 1
        schedule(.retry(waiter.id, generation: waiter.retryGeneration), at: nowMilliseconds + waiter.retryDelayMilliseconds)
    }

    func run(_ action: DeadlineAction) {
        switch action {
        case .waitTimeout(let id):
            guard let waiter = waiters[id], !waiter.answered else { return }
            abandon(waiter, ReplyError(.lockTimeout, waiter.lockPath))
        case .lease(let id):
            // A renewal moved the deadline: this one is stale (the renewal scheduled its own).
            guard let waiter = waiters[id], waiter.phase == .holding,
                  waiter.leaseDeadlineMilliseconds <= nowMilliseconds else { return }
            emitLost(waiter, .leaseExpired)
            remove(waiter)
        case .retry(let id, let generation):
            guard let waiter = waiters[id], waiter.retryGeneration == generation, let action = waiter.retryAction,
                  let lock = locks[waiter.lockPath] else { return }
            waiter.retryAction = nil
            switch action {
            case .ensureLock:
                if waiter.abandoned { finishWithoutNode(waiter, lock) } else { ensureNextNode(waiter) }
            case .recover:
                recover(waiter, lock)
            case .grantCheck:
                if waiter.phase == .granting { issueGrantCheck(waiter) }
            case .delete:
                if waiter.phase == .removing { issueDelete(waiter) }
            }
        case .listing(let path):
            guard let lock = locks[path] else { return }
            lock.listingRetryScheduled = false
            requestListing(lock, judging: nil)
        case .lockDelayEnded(let path):
            guard let lock = locks[path] else { return }
            lock.delayRecheckAt = nil
            requestListing(lock, judging: nil)
        }
    }
}
