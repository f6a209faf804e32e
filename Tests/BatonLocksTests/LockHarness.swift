import BatonLocks
import BatonProtocol
import XCTest

/// Sessions known to be alive, shared by the harness and the manager's liveness question.
final class SessionTable {
    var alive: Set<UInt64> = []
}

/// A lock manager over a `MemoryLockNamespace` with a fake clock. Tickets are plain integers.
final class LockHarness {
    let namespace: MemoryLockNamespace
    let sessions = SessionTable()
    let manager: LockManager<Int>
    private(set) var nowMilliseconds: UInt64 = 1_000
    private var collected: [LockEffect<Int>] = []

    init(_ delivery: MemoryLockNamespace.Delivery, configuration: LockManagerConfiguration = LockManagerConfiguration(),
         reportsDeletions: Bool = false) {
        namespace = MemoryLockNamespace(delivery: delivery)
        namespace.reportsDeletions = reportsDeletions
        let sessions = self.sessions
        manager = LockManager(namespace: namespace, configuration: configuration, now: Time(milliseconds: 1_000),
                              sessionIsAlive: { sessions.alive.contains($0) })
    }

    var now: Time { Time(milliseconds: nowMilliseconds) }

    /// Delivers every queued namespace answer and collects the manager's effects.
    func settle() {
        namespace.deliverAll()
        collected += manager.takeEffects()
    }

    /// Applies an input; its effects join the collected ones.
    func apply(_ input: LockInput<Int>) {
        collected += manager.apply(input, now: now)
    }

    /// Cancels the acquire `ticket`; false if it was not waiting (not answered `lockCancelled`).
    func cancel(_ ticket: Int) -> Bool {
        let effects = manager.apply(.cancel(ticket: ticket), now: now)
        collected += effects
        return effects.failure(ticket)?.code == .lockCancelled
    }

    /// Effects since the last call.
    func takeEffects() -> [LockEffect<Int>] {
        settle()
        defer { collected = [] }
        return collected
    }

    func acquire(_ ticket: Int, session: UInt64, path: String = "/locks/a", kind: LockKind = .exclusive, permits: UInt32 = 1,
                 waitMilliseconds: UInt32 = LockRequest.waitForever, leaseMilliseconds: UInt32 = 0, owner: String = "",
                 revocable: Bool = false, lockDelayMilliseconds: UInt32 = 0, settle: Bool = true) {
        sessions.alive.insert(session)
        apply(.acquire(LockRequest(path: path, kind: kind, permits: permits, waitMilliseconds: waitMilliseconds,
                                   leaseMilliseconds: leaseMilliseconds, owner: owner, revocable: revocable,
                                   lockDelayMilliseconds: lockDelayMilliseconds),
                       ticket: ticket, session: session, clientName: "client-\(session)"))
        if settle { self.settle() }
    }

    /// Releases `node`; without a token, with the one the manager lists for the node (holder or waiter).
    func release(_ node: String, session: UInt64, ticket: Int, token: UInt64? = nil) {
        let listed = manager.inspect(path: namespace.parent(of: node), now: now).first { $0.node == node }?.token
        apply(.release(node: node, token: token ?? listed ?? 0, session: session, ticket: ticket))
        settle()
    }

    func advance(_ milliseconds: UInt64) {
        nowMilliseconds += milliseconds
        apply(.tick)
        settle()
    }

    /// The session's process died: its ephemerals go and the manager is told.
    func endSession(_ session: UInt64) {
        sessions.alive.remove(session)
        namespace.endSession(session)
        namespace.deliverAll()
        apply(.sessionEnded(session))
        settle()
    }

    /// The session ends as the engine reports it: the manager is told first, then its ephemerals go.
    func sessionDies(_ session: UInt64) {
        sessions.alive.remove(session)
        apply(.sessionEnded(session))
        namespace.endSession(session)
        settle()
    }

    /// Waiter nodes of a lock in queue order.
    func waiterNodes(_ path: String = "/locks/a") -> [String] {
        namespace.childNames(path).filter { WaiterName(parsing: $0) != nil }
            .sorted { WaiterName(parsing: $0)!.sequence < WaiterName(parsing: $1)!.sequence }
    }
}

extension Array where Element == LockEffect<Int> {
    var grants: [(ticket: Int, node: String, token: UInt64)] {
        compactMap { if case .granted(let ticket, let node, let token, _) = $0 { (ticket, node, token) } else { nil } }
    }
    var grantedTickets: [Int] { grants.map(\.ticket) }
    var failures: [Int: ErrorCode] {
        var result: [Int: ErrorCode] = [:]
        for case .failed(let ticket, let error) in self { result[ticket] = error.code }
        return result
    }
    var losses: [(node: String, reason: LockLostReason)] {
        compactMap { if case .lost(_, let node, _, let reason) = $0 { (node, reason) } else { nil } }
    }
    var reentries: [(ticket: Int, node: String, token: UInt64, holdCount: UInt32)] {
        compactMap { if case .reentered(let ticket, let node, let token, let count) = $0 { (ticket, node, token, count) } else { nil } }
    }
    func failure(_ ticket: Int) -> ReplyError? {
        for case .failed(let failed, let error) in self where failed == ticket { return error }
        return nil
    }
    var releasedTickets: [Int] {
        compactMap { if case .released(let ticket) = $0 { ticket } else { nil } }
    }
}

/// Runs a test body with answers delivered at once and with answers deferred.
func forEachDelivery(_ body: (MemoryLockNamespace.Delivery) throws -> Void) rethrows {
    try body(.immediate)
    try body(.deferred)
}
