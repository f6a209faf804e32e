import BatonProtocol

/// What a waiter node has before it in its lock's queue: everything the entitlement rule looks at.
/// Built by folding in the earlier nodes in any order (`count`), from a listing or from the
/// manager's queue (LockManager+Queue).
struct Standing {
    /// Nodes before this one.
    var position = 0
    /// The nearest earlier node, the nearest earlier exclusive one, the nearest earlier semaphore one.
    var previous: WaiterName?
    var nearestExclusive: WaiterName?
    var nearestSemaphore: WaiterName?
    var exclusiveOrSharedBefore = false

    /// Folds in one node that is before this one.
    mutating func count(_ earlier: WaiterName) {
        position += 1
        if previous.map({ $0 < earlier }) ?? true { previous = earlier }
        switch earlier.kind {
        case .exclusive:
            exclusiveOrSharedBefore = true
            if nearestExclusive.map({ $0 < earlier }) ?? true { nearestExclusive = earlier }
        case .shared:
            exclusiveOrSharedBefore = true
        case .semaphore:
            if nearestSemaphore.map({ $0 < earlier }) ?? true { nearestSemaphore = earlier }
        }
    }

    /// The entitlement rule of the recipe (PROTOCOL.md §12.2), from the waiter names alone: an
    /// exclusive node holds when it is first, a shared node when no exclusive node is before it, a
    /// semaphore node when it is among the first `permits`. A node of the other family than the ones
    /// before it (a semaphore behind an exclusive node, say) is never entitled: the recipe refuses it.
    /// Entitled nodes always form a prefix of the queue.
    func verdict(kind: LockKind, permits: UInt32) -> Verdict {
        switch kind {
        case .exclusive:
            if nearestSemaphore != nil { return .kindMismatch }
            return position == 0 ? .entitled : .waits(behind: previous)
        case .shared:
            if nearestSemaphore != nil { return .kindMismatch }
            return nearestExclusive.map { .waits(behind: $0) } ?? .entitled
        case .semaphore:
            if exclusiveOrSharedBefore { return .kindMismatch }
            // Which of the N holders goes first is unknown: a semaphore waiter watches the lock's children.
            return position < Int(permits) ? .entitled : .waits(behind: nil)
        }
    }

    enum Verdict: Equatable {
        case entitled
        /// Not entitled; the one node whose deletion may change that (nil: any, for a semaphore).
        case waits(behind: WaiterName?)
        /// The node's kind does not match the lock's.
        case kindMismatch
    }
}

/// The entitlement rule over a whole queue, for readers of a lock that have no waiter of their own
/// on it (`LockQueueRead`: `checkToken` and `inspect` over the ZooKeeper store).
public enum LockEntitlement {
    /// Which entries of `sorted` (queue order) are entitled. `permits` is the semaphore's (the first
    /// semaphore node's data); nil when the queue has no semaphore node. (A semaphore node asking for
    /// other permits than the first is refused by the recipe but may read as entitled until it goes.)
    public static func entitled(_ sorted: [WaiterName], permits: UInt32?) -> [Bool] {
        var standing = Standing()
        return sorted.map { entry in
            defer { standing.count(entry) }
            return standing.verdict(kind: entry.kind, permits: permits ?? 0) == .entitled
        }
    }
}
