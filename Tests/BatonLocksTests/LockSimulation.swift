import BatonLocks
import BatonProtocol
import BatonTestSupport

/// Drives a `LockManager` over a `MemoryLockNamespace` with random acquires, releases, timeouts,
/// cancels, session deaths, leases, deletions by others (of holders' and waiters' nodes), replayed
/// releases of ended holds and lost store replies, checking after every step that no two holders
/// conflict, that every grant was the waiter's turn, that tokens increase, that a replayed release
/// never ends a hold, and (whenever no answer is in flight) that `inspect` lists only nodes that
/// exist, so a waiter whose node went was answered; and at the end that every acquire was answered
/// exactly once and no node was left behind.
/// Also: reentrant acquires (sessions of odd id use an owner token) answer the owner's hold with its
/// node, token and a count one higher, and a release keeps the node until the count is zero; renewals
/// move a lease, which never ends before the last deadline set and always ends at it; a `deadlock`
/// answer comes only for an acquire that closes a cycle of the wait-for graph (checked against the
/// queues as `inspect` lists them before the acquire), and with nothing in flight no cycle is left.
/// A failure names the seed: `LockSimulation(seed:delivery:).run()` replays it.
final class LockSimulation {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private struct LockSpecification {
        var path: String
        var kinds: [LockKind]
        var permits: UInt32
    }

    private struct Pending {
        var lock: Int
        var session: UInt64
    }

    private struct Holder {
        var lock: Int
        var session: UInt64
        var kind: LockKind
        var name: WaiterName
        var token: UInt64
        var holdCount: UInt32 = 1
        var revocable = false
        var lockDelay: UInt32 = 0
        /// When the lease ends (0: no lease), as granted or last renewed.
        var leaseDeadline: UInt64 = 0
        /// The grant's handle, given back with half the releases (the others find the node by its path).
        var hold: LockHold?
    }

    let seed: UInt64
    let delivery: MemoryLockNamespace.Delivery
    /// The namespace promises to report every deletion of the manager's nodes (as the embedded one
    /// does): sessions end manager first, and each deletion behind the manager is reported to it.
    let reportsDeletions: Bool
    private var random: SeededGenerator
    private let namespace: MemoryLockNamespace
    private let sessionTable = SessionTable()
    private let manager: LockManager<Int>
    /// Effects of the inputs applied (then of the manager's late answers), not yet looked at.
    private var applied: [LockEffect<Int>] = []
    private func apply(_ input: LockInput<Int>) { applied += manager.apply(input, now: now) }
    private func takeApplied() -> [LockEffect<Int>] {
        defer { applied = [] }
        return applied + manager.takeEffects()
    }
    private var nowMilliseconds: UInt64 = 10_000
    private let locks = [
        LockSpecification(path: "/sim/a", kinds: [.exclusive, .shared, .shared], permits: 1),
        LockSpecification(path: "/sim/b", kinds: [.semaphore], permits: 2),
        LockSpecification(path: "/sim/c/d", kinds: [.exclusive], permits: 1),
    ]
    private var liveSessions: [UInt64] = []
    private var nextSession: UInt64 = 1
    private var nextTicket = 1
    private var pending: [Int: Pending] = [:]
    /// Lease of each pending acquire, to know the holder's deadline at the grant.
    private var pendingLease: [Int: UInt32] = [:]
    private var pendingRevocable: Set<Int> = []
    private var pendingLockDelay: [Int: UInt32] = [:]
    /// Locks in a lock-delay (their holder's session died, the manager told first): no exclusive grant before.
    private var lockDelayUntil: [Int: UInt64] = [:]
    private(set) var delayedDeaths = 0
    /// The acquire (immediate delivery) whose `deadlock` answer is allowed: one that closes a cycle.
    private var acquireClosingCycle: Int?
    private(set) var deadlockCount = 0
    private(set) var reentryCount = 0
    private(set) var renewalCount = 0
    private var releaseTickets: Set<Int> = []
    /// Releases of one count of a reentrant hold, by ticket: the node must stay.
    private var partialReleases: [Int: String] = [:]
    /// Releases of holds that had ended: each must fail.
    private var staleTickets: Set<Int> = []
    private var ended: [(node: String, token: UInt64, session: UInt64, hold: LockHold?)] = []
    private var holders: [String: Holder] = [:]
    private var lastGrantSequence: [Int: UInt64] = [:]
    private var lastGrantToken: [Int: UInt64] = [:]
    /// Creation transaction of each lock node: a container swept and created again restarts its sequence.
    private var lockIncarnation: [Int: UInt64] = [:]
    /// Grants of nodes deleted before the grant reached us (deferred delivery: the grant's re-check
    /// was answered before the deletion): each must be followed by its `lost`.
    private var ghostGrants: Set<String> = []
    /// Lost replies make a waiter come back late: readers and semaphore permits may then be granted
    /// out of queue order (still entitled), so strict order is only checked in runs without faults.
    private let faulty: Bool
    private var faultsActive = false
    private(set) var grantCount = 0
    /// Prints every action and effect (for replaying a failing seed).
    var trace = false
    private var step = 0

    init(seed: UInt64, delivery: MemoryLockNamespace.Delivery, reportsDeletions: Bool = false) {
        self.seed = seed
        self.delivery = delivery
        self.reportsDeletions = reportsDeletions
        random = SeededGenerator(seed: seed)
        namespace = MemoryLockNamespace(delivery: delivery)
        namespace.reportsDeletions = reportsDeletions
        let sessions = sessionTable
        manager = LockManager(namespace: namespace, now: Time(milliseconds: 10_000),
                              sessionIsAlive: { sessions.alive.contains($0) })
        faulty = random.chance(30)
        for _ in 0..<4 { openSession() }
        namespace.faults = { [unowned self] operation, _ in
            guard self.faultsActive else { return nil }
            switch operation {
            case .create: return self.random.chance(20) ? (self.random.chance(50) ? .replyLost : .unreachable) : nil
            case .delete: return self.random.chance(20) ? .unreachable : nil
            default: return nil
            }
        }
    }

    private var now: Time { Time(milliseconds: nowMilliseconds) }

    private func fail(_ message: String) -> Failure {
        Failure(description: "LockSimulation seed \(seed) (\(delivery)\(reportsDeletions ? ", reportsDeletions" : "")) step \(step): \(message)")
    }

    private func openSession() {
        liveSessions.append(nextSession)
        sessionTable.alive.insert(nextSession)
        nextSession += 1
    }

    func run(steps: Int) throws {
        for index in 0..<steps {
            step = index
            try randomStep()
            try absorbEffects()
            try checkInspect()
        }
        try finish()
    }

    private func randomStep() throws {
        let roll = random.below(100)
        switch roll {
        case 0..<30: acquire()
        case 30..<48: releaseSomeHolder()
        case 48..<52: cancelSomePending()
        case 52..<55: killSomeSession()
        case 55..<57: deleteSomeHolderNode()
        case 74..<76: deleteSomeWaiterNode()
        case 76..<78: replayAnEndedRelease()
        case 78..<82: renewSomeHolder()
        case 82..<86: reacquireSomeHold()
        case 57..<72:
            nowMilliseconds += UInt64(1 + random.below(300))
            note("tick \(nowMilliseconds)")
            apply(.tick)
            leaseCheckDue = true
        case 72..<74 where faulty:
            faultsActive.toggle()
        default:
            for _ in 0..<(1 + random.below(6)) { namespace.deliverOne() }
        }
    }

    /// Sessions with an odd id acquire with an owner token (one per session, so an owner of the
    /// wait-for graph is a session); the others without.
    private func owner(_ session: UInt64) -> String { session % 2 == 1 ? "o\(session)" : "" }

    private func acquire() {
        let lockIndex = random.below(locks.count)
        let session = liveSessions[random.below(liveSessions.count)]
        let kind = locks[lockIndex].kinds[random.below(locks[lockIndex].kinds.count)]
        acquire(lockIndex, session: session, kind: kind)
    }

    /// A holder's session acquires the same lock again.
    private func reacquireSomeHold() {
        guard let (_, holder) = someHolder(), liveSessions.contains(holder.session) else { return }
        acquire(holder.lock, session: holder.session, kind: holder.kind)
    }

    private func acquire(_ lockIndex: Int, session: UInt64, kind: LockKind) {
        let specification = locks[lockIndex]
        let waitMilliseconds: UInt32 = random.chance(70) ? LockRequest.waitForever
            : random.chance(50) ? 0 : UInt32(1 + random.below(500))
        let leaseMilliseconds: UInt32 = random.chance(20) ? UInt32(50 + random.below(1_000)) : 0
        let ticket = nextTicket
        nextTicket += 1
        pending[ticket] = Pending(lock: lockIndex, session: session)
        pendingLease[ticket] = leaseMilliseconds
        let revocable = !owner(session).isEmpty && random.chance(50)
        if revocable { pendingRevocable.insert(ticket) }
        let lockDelay: UInt32 = !owner(session).isEmpty && random.chance(30) ? UInt32(1 + random.below(400)) : 0
        if lockDelay > 0 { pendingLockDelay[ticket] = lockDelay }
        note("acquire \(ticket) \(specification.path) \(kind) session \(session) wait \(waitMilliseconds) lease \(leaseMilliseconds)")
        // With immediate delivery the acquire is judged inside this call, against the queues as they
        // are now plus its own node last: a deadlock answer is right only if that closes a cycle.
        if delivery == .immediate && !faulty && waitMilliseconds != 0 && kind != .semaphore
            && closesCycle(session: session, lock: lockIndex, kind: kind) {
            acquireClosingCycle = ticket
        } else {
            acquireClosingCycle = nil
        }
        apply(.acquire(LockRequest(path: specification.path, kind: kind, permits: specification.permits,
                                   waitMilliseconds: waitMilliseconds, leaseMilliseconds: leaseMilliseconds,
                                   owner: owner(session), revocable: revocable, lockDelayMilliseconds: lockDelay),
                       ticket: ticket, session: session, clientName: "s\(session)"))
    }

    private func someHolder() -> (node: String, holder: Holder)? {
        guard !holders.isEmpty else { return nil }
        let nodes = holders.keys.sorted()
        let node = nodes[random.below(nodes.count)]
        return (node, holders[node]!)
    }

    /// The holder's grant handle for a release, or (half the time) none: both ways find the node.
    private func someHold(_ holder: Holder) -> LockHold? { random.chance(50) ? holder.hold : nil }

    private func releaseSomeHolder() {
        guard let (node, holder) = someHolder() else { return }
        if holder.holdCount > 1 {
            // One count of a reentrant hold: the hold stays.
            holders[node]!.holdCount -= 1
            let ticket = nextTicket
            nextTicket += 1
            releaseTickets.insert(ticket)
            partialReleases[ticket] = node
            note("release one count of \(node) ticket \(ticket)")
            apply(.release(node: node, token: holder.token, session: holder.session, ticket: ticket, hold: someHold(holder)))
            return
        }
        holders[node] = nil // the client stops using the lock when it asks to release it
        ended.append((node, holder.token, holder.session, holder.hold))
        let ticket = nextTicket
        nextTicket += 1
        releaseTickets.insert(ticket)
        note("release \(node) ticket \(ticket)")
        apply(.release(node: node, token: holder.token, session: holder.session, ticket: ticket, hold: someHold(holder)))
    }

    private func cancelSomePending() {
        guard !pending.isEmpty else { return }
        let tickets = pending.keys.sorted()
        let ticket = tickets[random.below(tickets.count)]
        note("cancel \(ticket)")
        apply(.cancel(ticket: ticket))
    }

    private func killSomeSession() {
        guard liveSessions.count > 1 else { return }
        let session = liveSessions.remove(at: random.below(liveSessions.count))
        note("session \(session) dies")
        sessionTable.alive.remove(session)
        // The engine tells the manager first (a lock-delay starts there); the other order is what a
        // backend that reports the nodes' deletion first would do: no delay is promised then.
        let managerFirst = random.chance(50) || reportsDeletions
        for (node, holder) in holders where holder.session == session {
            holders[node] = nil
            if managerFirst && holder.lockDelay > 0 && namespace.nodes[node] != nil {
                delayedDeaths += 1
                lockDelayUntil[holder.lock] = max(lockDelayUntil[holder.lock] ?? 0, nowMilliseconds + UInt64(holder.lockDelay))
            }
        }
        if managerFirst {
            apply(.sessionEnded(session))
            namespace.endSession(session)
        } else {
            namespace.endSession(session)
            apply(.sessionEnded(session))
        }
        openSession()
    }

    private func deleteSomeHolderNode() {
        guard let (node, _) = someHolder() else { return }
        holders[node] = nil
        note("someone deletes \(node)")
        namespace.deleteNow(node)
        if reportsDeletions { apply(.nodeDeleted(path: node)) }
    }

    private func deleteSomeWaiterNode() {
        let waiting = locks.flatMap { manager.inspect(path: $0.path, now: now) }.filter { $0.position == .waiter }
        guard !waiting.isEmpty else { return }
        let node = waiting[random.below(waiting.count)].node
        note("someone deletes waiter \(node)")
        namespace.deleteNow(node)
        if reportsDeletions { apply(.nodeDeleted(path: node)) }
    }

    private func renewSomeHolder() {
        guard let (node, holder) = someHolder(), namespace.pendingCount == 0 else { return }
        let lease = UInt32(50 + random.below(600))
        note("renew \(node) lease \(lease)")
        let refusal = manager.renew(node: node, token: holder.token, session: holder.session, leaseMilliseconds: lease, now: now)
        if holder.leaseDeadline == 0 {
            if refusal?.code != .noLease { fail(later: "renewal of \(node) without a lease answered \(String(describing: refusal))") }
            return
        }
        if let refusal { fail(later: "renewal of the current hold \(node) refused: \(refusal)"); return }
        renewalCount += 1
        holders[node]!.leaseDeadline = nowMilliseconds + UInt64(lease)
    }

    /// After a tick: a holder whose lease deadline passed (and whose node exists) must have been told.
    private var leaseCheckDue = false
    private var laterFailure: String?
    private func fail(later message: String) { if laterFailure == nil { laterFailure = message } }

    private func replayAnEndedRelease() {
        guard !ended.isEmpty else { return }
        let old = ended[random.below(ended.count)]
        let ticket = nextTicket
        nextTicket += 1
        releaseTickets.insert(ticket)
        staleTickets.insert(ticket)
        note("replayed release \(old.node) token \(old.token) ticket \(ticket)")
        // Half with the ended hold's handle: a stale handle must not end the node's next hold either.
        apply(.release(node: old.node, token: old.token, session: old.session, ticket: ticket, hold: random.chance(50) ? old.hold : nil))
    }

    /// With no answer or event in flight, the manager knows every deletion: what it lists exists; and
    /// the holds a revocation request would reach are exactly the current revocable ones.
    private func checkInspect() throws {
        guard namespace.pendingCount == 0 else { return }
        if !faulty {
            for (index, specification) in locks.enumerated() {
                let asked = Set(manager.revocableHolds(path: specification.path).map(\.node))
                let expected = Set(holders.filter { $0.value.lock == index && $0.value.revocable }.map(\.key))
                if asked != expected { throw fail("revocation would ask \(asked.sorted()), revocable holds are \(expected.sorted())") }
            }
        }
        for specification in locks {
            for entry in manager.inspect(path: specification.path, now: now) where namespace.nodes[entry.node] == nil {
                throw fail("inspect lists \(entry.node), which does not exist")
            }
        }
    }

    private func note(_ text: @autoclosure () -> String) {
        if trace { print("[\(step)] \(text())") }
    }

    private func absorbEffects() throws {
        if let laterFailure { throw fail(laterFailure) }
        for effect in takeApplied() {
            note("effect \(effect)")
            switch effect {
            case .granted(let ticket, let node, let token, let hold):
                try granted(ticket: ticket, node: node, token: token, hold: hold)
            case .reentered(let ticket, let node, let token, let holdCount):
                guard let request = pending.removeValue(forKey: ticket) else { throw fail("reentry for ticket \(ticket), not pending") }
                if holders[node] == nil && namespace.nodes[node] == nil { continue } // deleted by someone: its lost follows
                guard let holder = holders[node], holder.token == token, holder.session == request.session,
                      holder.lock == request.lock, !owner(request.session).isEmpty else {
                    throw fail("reentry of \(node) token \(token) for ticket \(ticket) is no hold of its owner")
                }
                guard holdCount == holder.holdCount + 1 else {
                    throw fail("reentry of \(node) counts \(holdCount), expected \(holder.holdCount + 1)")
                }
                holders[node]!.holdCount = holdCount
                reentryCount += 1
            case .failed(let ticket, let error):
                if error.code == .deadlock {
                    deadlockCount += 1
                    if delivery == .immediate && !faulty && acquireClosingCycle != ticket {
                        throw fail("deadlock for ticket \(ticket), which closes no cycle: \(error.message)")
                    }
                }
                if error.code == .lockHeldBySession, let request = pending[ticket], !owner(request.session).isEmpty,
                   holders.values.contains(where: { $0.session == request.session && $0.lock == request.lock }) {
                    throw fail("an owner's acquire of a lock it holds was refused: \(error)")
                }
                if pending.removeValue(forKey: ticket) == nil && !releaseTickets.contains(ticket) {
                    throw fail("failure for ticket \(ticket), which is not pending")
                }
            case .released(let ticket):
                guard releaseTickets.contains(ticket) else { throw fail("released an unknown ticket \(ticket)") }
                if staleTickets.contains(ticket) { throw fail("a replayed release (ticket \(ticket)) ended a hold") }
                if let node = partialReleases.removeValue(forKey: ticket), holders[node] != nil, namespace.nodes[node] == nil,
                   !ghostGrants.contains(node), delivery == .immediate, !faulty {
                    throw fail("a release of one count of \(node) deleted the node")
                }
            case .lost(let session, let node, let token, let reason):
                ghostGrants.remove(node)
                if reason == .leaseExpired, let holder = holders[node], holder.token == token, nowMilliseconds < holder.leaseDeadline {
                    throw fail("lease of \(node) ended at \(nowMilliseconds), before its deadline \(holder.leaseDeadline)")
                }
                if let holder = holders[node], holder.token == token {
                    holders[node] = nil
                    ended.append((node, token, session, holder.hold))
                }
            }
        }
        if leaseCheckDue {
            leaseCheckDue = false
            for (node, holder) in holders where holder.leaseDeadline != 0 && holder.leaseDeadline <= nowMilliseconds
                && namespace.nodes[node] != nil {
                throw fail("the lease of \(node) passed its deadline \(holder.leaseDeadline) at \(nowMilliseconds) and it still holds")
            }
        }
        try checkNoCycleLeft()
    }

    // MARK: The wait-for graph, from the queues `inspect` lists

    /// Owner → owners it waits for, over the exclusive/shared locks (owners are sessions here).
    private func waitGraph(adding extra: (session: UInt64, lock: Int, kind: LockKind)? = nil) -> [UInt64: Set<UInt64>] {
        var graph: [UInt64: Set<UInt64>] = [:]
        for (index, specification) in locks.enumerated() where !specification.kinds.contains(.semaphore) {
            var entries = manager.inspect(path: specification.path, now: now)
                .map { (session: $0.sessionID, kind: $0.kind, waiting: $0.position == .waiter,
                        sequence: WaiterName(parsing: String($0.node.split(separator: "/").last!))!.sequence) }
                .sorted { $0.sequence < $1.sequence }
            if let extra, extra.lock == index { entries.append((extra.session, extra.kind, true, .max)) }
            for (position, waiter) in entries.enumerated() where waiter.waiting {
                for ahead in entries[..<position] where waiter.kind == .exclusive || ahead.kind == .exclusive {
                    graph[waiter.session, default: []].insert(ahead.session)
                }
            }
        }
        return graph
    }

    private func hasCycle(_ graph: [UInt64: Set<UInt64>], through start: UInt64? = nil) -> Bool {
        var state: [UInt64: Int] = [:] // 1 on the path, 2 done
        func visit(_ vertex: UInt64) -> Bool {
            state[vertex] = 1
            for next in (graph[vertex] ?? []).sorted() {
                if state[next] == 1 { return true }
                if state[next] == nil && visit(next) { return true }
            }
            state[vertex] = 2
            return false
        }
        if let start { return visit(start) }
        return graph.keys.sorted().contains { state[$0] == nil && visit($0) }
    }

    private func closesCycle(session: UInt64, lock: Int, kind: LockKind) -> Bool {
        guard !hasCycle(waitGraph()) else { return false }
        return hasCycle(waitGraph(adding: (session, lock, kind)), through: session)
    }

    /// Every real cycle is reported: with nothing in flight (every waiter judged) and no faults (no
    /// judgement waiting for a retry), the queues form no cycle.
    private func checkNoCycleLeft() throws {
        guard !faulty, namespace.pendingCount == 0, hasCycle(waitGraph()) else { return }
        throw fail("the wait-for graph has a cycle nobody was told about: \(waitGraph())")
    }

    private func granted(ticket: Int, node: String, token: UInt64, hold: LockHold) throws {
        guard let request = pending.removeValue(forKey: ticket) else {
            throw fail("grant for ticket \(ticket), which is not pending")
        }
        let specification = locks[request.lock]
        guard let name = WaiterName(parsing: String(node.split(separator: "/").last!)),
              node.hasPrefix(specification.path + "/") else {
            throw fail("grant of \(node) for a request on \(specification.path)")
        }
        grantCount += 1
        if namespace.nodes[node] == nil {
            // Judged on the lock as it was, maybe an earlier incarnation: not comparable with the
            // current holders and order. It is no hold: its `lost` is on the way.
            note("grant of \(node), already deleted")
            ghostGrants.insert(node)
            return
        }
        if name.kind == .exclusive, let until = lockDelayUntil[request.lock], nowMilliseconds < until {
            throw fail("exclusive grant \(node) at \(nowMilliseconds), inside the lock-delay until \(until)")
        }
        let others = holders.values.filter { $0.lock == request.lock }
        switch name.kind {
        case .exclusive:
            if !others.isEmpty { throw fail("exclusive grant \(node) while \(others.count) hold \(specification.path)") }
        case .shared:
            if others.contains(where: { $0.kind == .exclusive }) { throw fail("shared grant \(node) while a writer holds") }
        case .semaphore:
            if others.count >= Int(specification.permits) { throw fail("semaphore grant \(node) beyond \(specification.permits) permits") }
        }
        // It was the waiter's turn: the nodes still before it are ones it may share with.
        let before = namespace.childNames(specification.path).compactMap(WaiterName.init(parsing:))
            .filter { $0.sequence < name.sequence }
        switch name.kind {
        case .exclusive where !before.isEmpty, .shared where before.contains(where: { $0.kind == .exclusive }):
            throw fail("grant \(node) jumped the queue ahead of \(before.map(\.name))")
        case .semaphore where before.count >= Int(specification.permits):
            throw fail("grant \(node) with \(before.count) semaphore nodes before it")
        default:
            break
        }
        let incarnation = namespace.nodes[specification.path]?.stat.createdTransaction ?? 0
        if lockIncarnation[request.lock] != incarnation {
            lockIncarnation[request.lock] = incarnation
            lastGrantSequence[request.lock] = nil
        }
        if name.kind == .exclusive || !faulty {
            if let last = lastGrantSequence[request.lock], name.sequence <= last {
                throw fail("grant \(node) after a grant of sequence \(last): not FIFO")
            }
            if let last = lastGrantToken[request.lock], token <= last {
                throw fail("token \(token) of \(node) does not exceed the previous grant's \(last)")
            }
        }
        lastGrantSequence[request.lock] = max(lastGrantSequence[request.lock] ?? 0, name.sequence)
        lastGrantToken[request.lock] = max(lastGrantToken[request.lock] ?? 0, token)
        let lease = UInt64(pendingLease.removeValue(forKey: ticket) ?? 0)
        holders[node] = Holder(lock: request.lock, session: request.session, kind: name.kind, name: name, token: token,
                               revocable: pendingRevocable.remove(ticket) != nil,
                               lockDelay: pendingLockDelay.removeValue(forKey: ticket) ?? 0,
                               leaseDeadline: lease == 0 ? 0 : nowMilliseconds + lease, hold: hold)
    }

    /// Ends the run: no more faults; release everything until the manager is idle; nothing may be left.
    private func finish() throws {
        faultsActive = false
        for round in 0..<400 {
            step += 1
            namespace.deliverAll()
            try absorbEffects()
            if let (node, holder) = someHolder() {
                for _ in 0..<holder.holdCount {
                    releaseTickets.insert(nextTicket)
                    apply(.release(node: node, token: holder.token, session: holder.session, ticket: nextTicket, hold: someHold(holder)))
                    nextTicket += 1
                }
                holders[node] = nil
            } else {
                nowMilliseconds += 200
                apply(.tick)
            }
            namespace.deliverAll()
            try absorbEffects()
            if pending.isEmpty && holders.isEmpty && manager.waiterCount == 0 { break }
            if round == 399 {
                throw fail("did not settle: \(pending.count) pending, \(holders.count) holders, \(manager.waiterCount) waiters")
            }
        }
        for specification in locks {
            let left = namespace.childNames(specification.path)
            if !left.isEmpty { throw fail("nodes left under \(specification.path): \(left)") }
        }
        if manager.lockCount != 0 { throw fail("\(manager.lockCount) locks still tracked") }
        if manager.heldTicketCount != 0 { throw fail("\(manager.heldTicketCount) tickets still held") }
        if manager.watchedNodeCount != 0 { throw fail("\(manager.watchedNodeCount) node watch entries left") }
        if !ghostGrants.isEmpty { throw fail("grants of deleted nodes never followed by lockLost: \(ghostGrants.sorted())") }
    }
}
