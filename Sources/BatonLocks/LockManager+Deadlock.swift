import BatonProtocol

/// Who waits in the wait-for graph: a session, or one owner token inside it (PROTOCOL.md §12.9).
struct WaitOwner: Hashable {
    var session: UInt64
    var owner: String
}

/// Deadlock detection (PROTOCOL.md §12.10), from the manager's own waiters alone, so it works the same
/// over any `LockNamespace`: nodes of other sidecars' sessions are not in the graph.
///
/// Graph: owner A → owner B when a waiting acquire of A is blocked by a node of B ahead of it on the
/// same lock (exclusive waiter: every node ahead; shared waiter: every exclusive node ahead), holding
/// or waiting. Semaphores are left out: a semaphore waiter needs any one of several holders to go, so
/// a cycle through one does not prove a deadlock.
///
/// If the graph has no cycle, a cycle can only appear when a waiter enters it, and then runs through
/// that waiter's edges. So each non-semaphore waiter is checked once, when it is first judged to
/// wait (`deadlockChecked`), and refused if its owner can already be reached backwards from the
/// nodes that block it. The search goes backwards from the new waiter's owner (who waits for it,
/// transitively), visiting each lock's local order at most once per mode, so one check costs
/// O(local waiters involved), and the common case (a new waiter last in its queue, an owner with
/// no other nodes) costs O(1).
extension LockManager {
    func waitOwner(_ waiter: Waiter) -> WaitOwner { WaitOwner(session: waiter.session, owner: waiter.owner) }

    /// Whether `node` blocks `waiter` in the graph's sense (both on one lock, `node` ahead).
    func blocks(_ node: Waiter, _ waiter: Waiter) -> Bool {
        guard node !== waiter, node.lock === waiter.lock,
              node.kind != .semaphore, waiter.kind != .semaphore,
              let ahead = node.name, let behind = waiter.name, ahead.sequence < behind.sequence else { return false }
        switch node.phase {
        case .waiting, .granting, .holding: break
        default: return false
        }
        return waiter.kind == .exclusive || node.kind == .exclusive
    }

    /// The owner's nodes that can block others: named, not being removed, not semaphores.
    func graphNodes(of owner: WaitOwner) -> [Waiter] {
        enterDeferredSession()
        return (sessions[owner.session].map(Array.init) ?? []).compactMap { id in
            guard let waiter = waiters[id], waiter.owner == owner.owner, waiter.kind != .semaphore,
                  waiter.name != nil else { return nil }
            switch waiter.phase {
            case .waiting, .granting, .holding: return waiter
            default: return nil
            }
        }
    }

    /// Called when `waiter` (not a try, not a semaphore) is about to wait. False if that would close a
    /// cycle: the acquire is then refused with `deadlock` naming the cycle (its node is deleted).
    func mayWait(_ waiter: Waiter) -> Bool {
        guard waiter.kind != .semaphore, var waiting = waiter.waiting, !waiting.deadlockChecked else { return true }
        if let cycle = waitCycle(waiter) {
            abandon(waiter, ReplyError(.deadlock, cycle))
            return false
        }
        waiting.deadlockChecked = true
        waiter.waiting = waiting
        return true
    }

    /// The cycle `waiter` would close, described for people, or nil.
    func waitCycle(_ waiter: Waiter) -> String? {
        enterDeferredSession()
        // The common case, answered without the search's tables: the session's only node is this
        // waiter's, last in its lock's local order, so nobody waits for its owner (the search below
        // would find no node behind it and stop).
        if sessions[waiter.session]?.count == 1, waiter.lock.localOrder.last === waiter {
            return nil
        }
        let start = waitOwner(waiter)
        // Owners that wait (transitively) for `start`, each with the owner it waits for and the lock.
        var reaches: [WaitOwner: (next: WaitOwner, lock: String)?] = [start: nil]
        var frontier = [start]
        // Per lock, the lowest sequence behind which the local order was already scanned, per mode
        // (an exclusive node blocks every waiter behind it, a shared one only exclusive waiters).
        var scannedExclusive: [String: UInt64] = [:]
        var scannedShared: [String: UInt64] = [:]
        while let owner = frontier.popLast() {
            for node in graphNodes(of: owner) {
                // The new waiter's own edges decide: is one of the nodes blocking it `owner`'s?
                if blocks(node, waiter) { return describe(start: start, through: owner, lock: waiter.lockPath, reaches) }
                guard let sequence = node.name?.sequence else { continue }
                let lock = node.lock
                let exclusiveNode = node.kind == .exclusive
                let floor = exclusiveNode ? scannedExclusive[lock.path] : min(scannedExclusive[lock.path] ?? .max, scannedShared[lock.path] ?? .max)
                if let floor, floor <= sequence { continue }
                let upper = floor ?? .max
                if exclusiveNode { scannedExclusive[lock.path] = sequence } else { scannedShared[lock.path] = min(scannedShared[lock.path] ?? .max, sequence) }
                var index = localOrderLowerBound(lock, sequence + 1)
                while index < lock.localOrder.count {
                    defer { index += 1 }
                    let behind = lock.localOrder[index]
                    guard let behindName = behind.name else { continue }
                    if behindName.sequence >= upper { break }
                    guard behind.waiting?.deadlockChecked == true, blocks(node, behind) else { continue }
                    let next = waitOwner(behind)
                    guard reaches[next] == nil else { continue }
                    reaches[next] = (owner, lock.path)
                    frontier.append(next)
                }
            }
        }
        return nil
    }

    private func describe(start: WaitOwner, through last: WaitOwner, lock: String,
                          _ reaches: [WaitOwner: (next: WaitOwner, lock: String)?]) -> String {
        func name(_ owner: WaitOwner) -> String {
            "session 0x\(String(owner.session, radix: 16))" + (owner.owner.isEmpty ? "" : " owner \(owner.owner)")
        }
        var text = "\(name(start)) would wait for \(lock) held or awaited by \(name(last))"
        var owner = last
        while owner != start, let step = reaches[owner] ?? nil {
            text += ", which waits for \(step.lock) held or awaited by \(name(step.next))"
            owner = step.next
        }
        return text
    }

    /// Position in `localOrder` of the first waiter whose sequence is not below `sequence`.
    func localOrderLowerBound(_ lock: LockState, _ sequence: UInt64) -> Int {
        var low = 0
        var high = lock.localOrder.count
        while low < high {
            let middle = (low + high) / 2
            if (lock.localOrder[middle].name?.sequence ?? 0) < sequence { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// A local waiter got its node: keep `localOrder` sorted by sequence (creates complete in order,
    /// so this is almost always an append).
    func localOrderInsert(_ lock: LockState, _ waiter: Waiter) {
        guard let sequence = waiter.name?.sequence else { return }
        if let lastSequence = lock.localOrder.last?.name?.sequence, lastSequence > sequence {
            lock.localOrder.insert(waiter, at: localOrderLowerBound(lock, sequence))
        } else {
            lock.localOrder.append(waiter)
        }
    }

    func localOrderRemove(_ lock: LockState, _ waiter: Waiter) {
        if lock.localOrder.first === waiter {
            lock.localOrder.removeFirst()
        } else if let sequence = waiter.name?.sequence {
            let index = localOrderLowerBound(lock, sequence)
            if index < lock.localOrder.count && lock.localOrder[index] === waiter { lock.localOrder.remove(at: index) }
            else if let index = lock.localOrder.firstIndex(where: { $0 === waiter }) { lock.localOrder.remove(at: index) }
        }
    }
}
