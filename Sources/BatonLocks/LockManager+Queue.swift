import BatonProtocol
import DequeModule

/// The lock's queue as the manager knows it, so that neither an acquire nor a release lists (and sorts)
/// every child of the lock: both cost O(1) in the queue length (amortized; O(log W) to find a waiter).
///
/// Invariant (for a trusted queue): every waiter node under the lock node with a sequence below
/// `sequenceAccounted` that exists is in `queue`; the queue may also hold nodes already gone ("stale":
/// deleted by someone without the manager seeing it). It holds because sequence numbers under one lock
/// node only grow, so no node with a lower sequence can appear after a listing showed the lock:
/// - a listing establishes it: every node it shows, and `sequenceAccounted` past the highest shown;
/// - a create of ours that got exactly `sequenceAccounted` extends it by one (no sequence was handed to
///   anybody in between); any other sequence leaves the new node to a listing;
/// - deletions only shrink the set of nodes: the manager drops what it deletes itself and what its
///   watches report gone; others' deletions leave stale entries, which the walk-back below drops when
///   `exists` says so.
/// So the nodes before a waiter only ever go. When the node a waiter watches goes, it walks back to the
/// nearest earlier entry (a reader: the nearest earlier writer) and checks it with `exists` + watch, as
/// ZooKeeper's recipe would after listing again. Each stale entry costs one `exists` once.
///
/// The queue is void (`queueTrusted` false, judged by listings as before) when: the lock node is
/// another incarnation than the one the queue describes (a recreated node restarts its sequences; a
/// create reports the lock node's creation transaction) or the namespace cannot tell; the lock has
/// semaphore nodes or local semaphore waiters (judged by the lock's children watch); a listing shows
/// two nodes with one sequence. A waiter-named node created without a sequence (by hand, not by any
/// recipe) is only seen by a listing. Checks that would refuse a waiter (queue bound) and try-acquires
/// that find the lock busy are confirmed with a listing, so a stale entry never refuses anyone.
extension LockManager {
    /// Whether waiters of this lock may be judged from its queue.
    func queueUsable(_ lock: LockState) -> Bool {
        lock.queueTrusted && lock.semaphoreMembers == 0
    }

    /// Position of the first entry with a sequence not below `sequence` (binary search).
    func queueLowerBound(_ lock: LockState, _ sequence: UInt64) -> Int {
        var low = 0
        var high = lock.queue.count
        while low < high {
            let middle = (low + high) / 2
            if lock.queue[middle].sequence < sequence { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// Drops a node that is gone (idempotent).
    func queueRemove(_ lock: LockState, _ name: WaiterName) {
        guard let first = lock.queue.first else { return }
        if first == name {
            lock.queue.removeFirst()
            return
        }
        let index = queueLowerBound(lock, name.sequence)
        if index < lock.queue.count && lock.queue[index] == name { lock.queue.remove(at: index) }
    }

    /// A listing arrived: it shows the lock at the moment it was served, and every answer and event
    /// since then comes after it (the namespace's ordering guarantee).
    func queueRebuild(_ lock: LockState, sorted entries: [WaiterName]) {
        var previous: UInt64?
        for entry in entries {
            if entry.kind == .semaphore || previous == entry.sequence {
                lock.queueTrusted = false
                lock.queue = []
                return
            }
            previous = entry.sequence
        }
        lock.queue = Deque(entries)
        if let highest = entries.last?.sequence { lock.sequenceAccounted = max(lock.sequenceAccounted, highest + 1) }
        lock.queueTrusted = true
    }

    /// A create of ours arrived: append its node if the queue accounts for every earlier sequence.
    /// True if appended (the waiter is then judged with `queueJudgeLast`).
    func queueAppend(_ waiter: Waiter, _ lock: LockState, _ name: WaiterName, lockIdentity: UInt64?) -> Bool {
        if lockIdentity == nil || lockIdentity != lock.queueLockIdentity {
            // Another lock node (or one the namespace cannot name): what the queue says is void.
            lock.queueTrusted = false
            lock.queue = []
            lock.sequenceAccounted = 0
            lock.queueLockIdentity = lockIdentity
            return false
        }
        // With a listing in flight the node may be missing from it: leave it to a listing.
        guard queueUsable(lock), !lock.listingInFlight, waiter.kind != .semaphore,
              name.sequence == lock.sequenceAccounted else { return false }
        lock.queue.append(name)
        lock.sequenceAccounted = name.sequence + 1
        return true
    }

    /// Judges a waiter just appended by `queueAppend`.
    func queueJudgeLast(_ waiter: Waiter, _ lock: LockState) {
        judgeFromQueue(waiter, lock, index: lock.queue.count - 1)
    }

    /// The node a waiting waiter watched is gone: judge it again from the queue. False if it cannot be.
    func queueRejudge(_ waiter: Waiter, _ lock: LockState) -> Bool {
        guard queueUsable(lock), let name = waiter.name, name.sequence < lock.sequenceAccounted else { return false }
        let index = queueLowerBound(lock, name.sequence)
        guard index < lock.queue.count, lock.queue[index] == name else { return false }
        judgeFromQueue(waiter, lock, index: index)
        return true
    }

    /// Judges a waiting waiter at `index` of the queue from the entries before it (no semaphore
    /// nodes: see `queueRebuild`). O(1) for an exclusive waiter; a reader walks back to the nearest
    /// exclusive node.
    func judgeFromQueue(_ waiter: Waiter, _ lock: LockState, index: Int) {
        guard waiter.kind != .semaphore else {
            requestListing(lock, judging: waiter)
            return
        }
        var standing = Standing()
        standing.position = index
        standing.exclusiveOrSharedBefore = index > 0
        if index > 0 { standing.previous = lock.queue[index - 1] }
        // nearestExclusive is left unset for an exclusive waiter: its rule looks only at the position.
        if waiter.kind == .shared {
            var localReaderWaiting = false
            var earlier = index - 1
            while earlier >= 0 {
                let entry = lock.queue[earlier]
                if entry.kind == .exclusive {
                    standing.nearestExclusive = entry
                    break
                }
                if !localReaderWaiting, let other = localWaiter(lock, entry), other.phase == .waiting { localReaderWaiting = true }
                earlier -= 1
            }
            if standing.nearestExclusive == nil && localReaderWaiting {
                // An earlier local reader is entitled too and is granted first: the full pass does that in order.
                requestListing(lock, judging: nil)
                return
            }
        }
        judge(waiter, lock, standing, fromQueue: true)
    }

    /// Idle locks kept in `locks` at most (then forgotten all at once: they only save listings
    /// and the lock's state being made again).
    static var idleLocksMax: Int { 4_096 }

    /// The last local waiter of a lock went. If its queue was trusted and empty, that stays true while
    /// nobody watches (no node with a lower sequence can appear; the next create checks the lock
    /// node's identity), so the next acquire on the lock needs no listing: the lock's state stays in
    /// `locks`, idle (with its tables' storage), for it, unless an answer, watch or retry for it is
    /// still due (those find a lock by identity, `isActive`, and must find none): then it goes.
    func queueRetire(_ lock: LockState) {
        guard lock.queueTrusted, lock.queue.isEmpty, lock.queueLockIdentity != nil,
              !lock.listingInFlight, !lock.listingRetryScheduled, !lock.childrenWatchArmed else {
            locks[lock.path] = nil
            if recentLock === lock { recentLock = nil }
            return
        }
        if idleLockTotal >= Self.idleLocksMax {
            locks = locks.filter { !$0.value.members.isEmpty || $0.value === lock }
            idleLockTotal = 0
            recentLock = nil
        }
        lock.clearForIdle()
        idleLockTotal += 1
    }
}
