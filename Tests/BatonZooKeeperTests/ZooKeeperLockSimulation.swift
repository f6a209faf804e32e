import BatonLocks
import BatonProtocol
import BatonTestSupport
import BatonZooKeeper

/// Several sidecars, each a `LockManager` over a `ZooKeeperLockNamespace` over its own
/// `FakeZooKeeperClient`, all on one `FakeZooKeeper`: the production adapter and recipe, with the
/// network in the simulation's hands. Random acquires (all kinds, try, timeouts, leases), releases,
/// cancels and client deaths interleave with requests reaching the ensemble late, replies arriving
/// late, connections dropping (replies lost: the operation may or may not have happened), failed
/// reconnects, reconnects within the session, and partitions long enough for the session to expire.
///
/// A sidecar reacts as `batond`'s ZooKeeper driver does: on a dropped connection its holds are
/// suspended; once the connection has been gone for the session timeout it ends every local session
/// (`backendSessionLost`: the manager tells holders lost, fails waiters) and opens a new ZooKeeper
/// session. The ensemble expires a session the timeout after it last heard from it (never earlier
/// than the sidecar gives up, as ZooKeeper's 2/3 rule makes it in production).
///
/// After every step: no two holders conflict (exclusive alone, readers only without a writer,
/// semaphore within its permits) anywhere across sidecars, suspended holds included; every grant was
/// the waiter's turn in ZooKeeper's queue; exclusive tokens strictly increase per lock. At the end,
/// with the network healed: every acquire was answered exactly once and no node is left (no orphan of
/// a create whose reply was lost). A failure names the seed: `ZooKeeperLockSimulation(seed:).run(steps:)`.
final class ZooKeeperLockSimulation {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private struct LockSpecification {
        var path: String
        var kinds: [LockKind]
        var permits: UInt32
    }

    private final class Sidecar: CollectsLockEffects {
        let index: Int
        var client: FakeZooKeeperClient
        let namespace: ZooKeeperLockNamespace
        let manager: LockManager<Int>
        /// Effects of the inputs applied (then of the manager's late answers), not yet looked at.
        var applied: [LockEffect<Int>] = []
        let alive = SessionSet()
        var linkUp = true
        var suspendedSince: UInt64?
        var nextLocalSession: UInt64 = 1

        init(index: Int, server: FakeZooKeeper, now: Time) {
            self.index = index
            client = FakeZooKeeperClient(server: server)
            client.connect()
            namespace = ZooKeeperLockNamespace(client: client)
            let alive = self.alive
            manager = LockManager(namespace: namespace, now: now, sessionIsAlive: { alive.ids.contains($0) })
        }
    }

    final class SessionSet {
        var ids: Set<UInt64> = []
    }

    private struct Pending {
        var sidecar: Int
        var lock: Int
        var session: UInt64
    }

    private struct Holder {
        var sidecar: Int
        var lock: Int
        var session: UInt64
        var kind: LockKind
        var name: WaiterName
        var token: UInt64
    }

    let seed: UInt64
    private var random: SeededGenerator
    private let server = FakeZooKeeper()
    private var sidecars: [Sidecar] = []
    private let timeoutMilliseconds: UInt64 = 2_000
    private var nowMilliseconds: UInt64 = 10_000
    private let locks = [
        LockSpecification(path: "/sim/a", kinds: [.exclusive, .shared, .shared], permits: 1),
        LockSpecification(path: "/sim/b", kinds: [.semaphore], permits: 2),
        LockSpecification(path: "/sim/c/d", kinds: [.exclusive], permits: 1),
    ]
    private var nextTicket = 1
    private var pending: [Int: Pending] = [:]
    private var releaseTickets: Set<Int> = []
    /// Holds by node path.
    private var holders: [String: Holder] = [:]
    private var lastExclusiveToken: [Int: UInt64] = [:]
    /// Grants of nodes already deleted when the grant arrived: each must be followed by its `lost`.
    private var ghostGrants: Set<String> = []
    private(set) var grantCount = 0
    private(set) var sessionsLost = 0
    var trace = false
    private var step = 0

    init(seed: UInt64, sidecars count: Int = 3) {
        self.seed = seed
        random = SeededGenerator(seed: seed)
        server.nowMilliseconds = nowMilliseconds
        for index in 0..<count {
            let sidecar = Sidecar(index: index, server: server, now: now)
            sidecars.append(sidecar)
            for _ in 0..<3 { openLocalSession(sidecar) }
        }
    }

    private var now: Time { Time(milliseconds: nowMilliseconds) }

    private func fail(_ message: String) -> Failure {
        Failure(description: "ZooKeeperLockSimulation seed \(seed) step \(step): \(message)")
    }

    private func note(_ text: @autoclosure () -> String) {
        if trace { print("[\(step)] \(text())") }
    }

    /// Local session ids repeat across sidecars (each counts from 1): a waiter node's name alone must
    /// never make a sidecar take another's node for its own.
    private func openLocalSession(_ sidecar: Sidecar) {
        sidecar.alive.ids.insert(sidecar.nextLocalSession)
        sidecar.nextLocalSession += 1
    }

    func run(steps: Int) throws {
        if trace {
            server.trace = { [unowned self] text in note(text) }
            for sidecar in sidecars { sidecar.client.trace = server.trace }
        }
        for index in 0..<steps {
            step = index
            try randomStep()
            try absorbEffects()
        }
        try finish()
    }

    private func someSidecar() -> Sidecar { sidecars[random.below(sidecars.count)] }

    private func randomStep() throws {
        let roll = random.below(100)
        switch roll {
        case 0..<20: acquire()
        case 20..<32: releaseSomeHolder()
        case 32..<35: cancelSomePending()
        case 35..<38: killSomeLocalSession()
        case 38..<50: advanceTime(UInt64(1 + random.below(400)))
        case 50..<53: cutLink(someSidecar())
        case 53..<58: healLink(someSidecar())
        case 58..<60: someSidecar().client.attemptFailed()
        case 60..<80:
            for _ in 0..<(1 + random.below(4)) { someSidecar().client.sendOne() }
        default:
            for _ in 0..<(1 + random.below(4)) { someSidecar().client.deliverOne() }
        }
    }

    // MARK: Clients

    private func acquire() {
        let sidecar = someSidecar()
        let lockIndex = random.below(locks.count)
        let specification = locks[lockIndex]
        let sessions = sidecar.alive.ids.sorted()
        let session = sessions[random.below(sessions.count)]
        let kind = specification.kinds[random.below(specification.kinds.count)]
        let waitMilliseconds: UInt32 = random.chance(70) ? LockRequest.waitForever
            : random.chance(50) ? 0 : UInt32(1 + random.below(3_000))
        let leaseMilliseconds: UInt32 = random.chance(15) ? UInt32(500 + random.below(3_000)) : 0
        let ticket = nextTicket
        nextTicket += 1
        pending[ticket] = Pending(sidecar: sidecar.index, lock: lockIndex, session: session)
        note("sidecar \(sidecar.index) acquire \(ticket) \(specification.path) \(kind) session \(session) wait \(waitMilliseconds) lease \(leaseMilliseconds)")
        sidecar.apply(.acquire(LockRequest(path: specification.path, kind: kind, permits: specification.permits,
                                           waitMilliseconds: waitMilliseconds, leaseMilliseconds: leaseMilliseconds),
                               ticket: ticket, session: session, clientName: "s\(session)"), now: now)
    }

    private func someHolder() -> (node: String, holder: Holder)? {
        guard !holders.isEmpty else { return nil }
        let nodes = holders.keys.sorted()
        let node = nodes[random.below(nodes.count)]
        return (node, holders[node]!)
    }

    private func release(_ node: String, _ holder: Holder) {
        holders[node] = nil // the client stops using the lock when it asks to release it
        let ticket = nextTicket
        nextTicket += 1
        releaseTickets.insert(ticket)
        note("sidecar \(holder.sidecar) release \(node) ticket \(ticket)")
        sidecars[holder.sidecar].apply(.release(node: node, token: holder.token, session: holder.session, ticket: ticket), now: now)
    }

    private func releaseSomeHolder() {
        guard let (node, holder) = someHolder() else { return }
        release(node, holder)
    }

    private func cancelSomePending() {
        guard !pending.isEmpty else { return }
        let tickets = pending.keys.sorted()
        let ticket = tickets[random.below(tickets.count)]
        note("cancel \(ticket)")
        sidecars[pending[ticket]!.sidecar].apply(.cancel(ticket: ticket), now: now)
    }

    private func endLocalSession(_ sidecar: Sidecar, _ session: UInt64) {
        sidecar.alive.ids.remove(session)
        for (node, holder) in holders where holder.sidecar == sidecar.index && holder.session == session { holders[node] = nil }
        sidecar.apply(.sessionEnded(session), now: now)
    }

    private func killSomeLocalSession() {
        let sidecar = someSidecar()
        let sessions = sidecar.alive.ids.sorted()
        let session = sessions[random.below(sessions.count)]
        note("sidecar \(sidecar.index) local session \(session) dies")
        endLocalSession(sidecar, session)
        openLocalSession(sidecar)
    }

    // MARK: Network and time

    private func cutLink(_ sidecar: Sidecar) {
        guard sidecar.linkUp else { return }
        note("sidecar \(sidecar.index) cut off")
        sidecar.linkUp = false
        if sidecar.client.state == .connected {
            sidecar.client.dropConnection()
            sidecar.suspendedSince = nowMilliseconds
        }
    }

    private func healLink(_ sidecar: Sidecar) {
        guard !sidecar.linkUp else { return }
        note("sidecar \(sidecar.index) reconnects")
        sidecar.linkUp = true
        switch sidecar.client.state {
        case .connecting:
            sidecar.client.connect()
        case .suspended:
            if sidecar.client.reconnect() {
                sidecar.suspendedSince = nil
            } else {
                sessionLost(sidecar) // the ensemble expired it
            }
        case .connected, .closed:
            break
        }
    }

    /// `batond`'s reaction: every local session ends (holders told lost, waiters fail), then a new
    /// ZooKeeper session.
    private func sessionLost(_ sidecar: Sidecar) {
        note("sidecar \(sidecar.index) loses its ZooKeeper session")
        sessionsLost += 1
        sidecar.suspendedSince = nil
        for session in sidecar.alive.ids.sorted() {
            endLocalSession(sidecar, session)
            openLocalSession(sidecar)
        }
        // As `ZooKeeperBackend.reopen`: the new client serves before the old one closes.
        let old = sidecar.client
        let client = FakeZooKeeperClient(server: server)
        client.trace = server.trace
        sidecar.client = client
        sidecar.namespace.client = client
        if sidecar.linkUp { client.connect() }
        old.close(serverReachable: sidecar.linkUp)
    }

    private func advanceTime(_ milliseconds: UInt64) {
        nowMilliseconds += milliseconds
        server.nowMilliseconds = nowMilliseconds
        note("time \(nowMilliseconds)")
        // The sidecar gives up no later than the ensemble expires the session.
        for sidecar in sidecars {
            if let since = sidecar.suspendedSince, nowMilliseconds - since >= timeoutMilliseconds { sessionLost(sidecar) }
        }
        server.expireSessions(timeoutMilliseconds: timeoutMilliseconds)
        for sidecar in sidecars { sidecar.apply(.tick, now: now) }
    }

    // MARK: Checking

    private func absorbEffects() throws {
        for sidecar in sidecars {
            for effect in sidecar.takeEffects() {
                note("sidecar \(sidecar.index) effect \(effect)")
                switch effect {
                case .granted(let ticket, let node, let token, _):
                    try granted(sidecar, ticket: ticket, node: node, token: token)
                case .failed(let ticket, _):
                    if pending.removeValue(forKey: ticket) == nil && !releaseTickets.contains(ticket) {
                        throw fail("failure for ticket \(ticket), which is not pending")
                    }
                case .released(let ticket):
                    guard releaseTickets.contains(ticket) else { throw fail("released an unknown ticket \(ticket)") }
                case .reentered(let ticket, _, _, _):
                    throw fail("ticket \(ticket) re-entered a hold: the simulation names no owners")
                case .lost(_, let node, let token, _):
                    ghostGrants.remove(node)
                    if holders[node]?.token == token { holders[node] = nil }
                }
            }
        }
        try checkHolders()
    }

    private func granted(_ sidecar: Sidecar, ticket: Int, node: String, token: UInt64) throws {
        guard let request = pending.removeValue(forKey: ticket) else { throw fail("grant for ticket \(ticket), which is not pending") }
        guard request.sidecar == sidecar.index else { throw fail("ticket \(ticket) granted by sidecar \(sidecar.index)") }
        let specification = locks[request.lock]
        guard node.hasPrefix(specification.path + "/"), let name = WaiterName(parsing: String(node.split(separator: "/").last!)) else {
            throw fail("grant of \(node) for a request on \(specification.path)")
        }
        grantCount += 1
        guard let stat = server.nodes[node]?.stat else {
            note("grant of \(node), already deleted")
            ghostGrants.insert(node)
            return
        }
        guard stat.createdTransaction == token else { throw fail("token \(token) of \(node) is not its czxid \(stat.createdTransaction)") }
        guard stat.ephemeralOwner == sidecar.client.sessionID else { throw fail("granted \(node), a node of another ZooKeeper session") }
        guard name.session == request.session else { throw fail("granted \(node) to session \(request.session)") }
        // It was the waiter's turn: the nodes still before it in ZooKeeper are ones it may share with.
        let before = (server.nodes[specification.path]?.children ?? []).compactMap(WaiterName.init(parsing:))
            .filter { $0.sequence < name.sequence }
        switch name.kind {
        case .exclusive where !before.isEmpty, .shared where before.contains(where: { $0.kind == .exclusive }):
            throw fail("grant \(node) jumped the queue ahead of \(before.map(\.name))")
        case .semaphore where before.count >= Int(specification.permits):
            throw fail("grant \(node) with \(before.count) semaphore nodes before it")
        default:
            break
        }
        if name.kind == .exclusive {
            if let last = lastExclusiveToken[request.lock], token <= last {
                throw fail("exclusive token \(token) of \(node) does not exceed the previous \(last)")
            }
            lastExclusiveToken[request.lock] = token
        }
        holders[node] = Holder(sidecar: sidecar.index, lock: request.lock, session: request.session, kind: name.kind, name: name, token: token)
    }

    /// No two holds conflict, on any sidecar, suspended ones included: ZooKeeper grants a lock elsewhere
    /// only after the holder's node is gone, and a sidecar gives its holds up before its session can expire.
    private func checkHolders() throws {
        for (index, specification) in locks.enumerated() {
            let current = holders.filter { $0.value.lock == index && !ghostGrants.contains($0.key) }
            let exclusive = current.filter { $0.value.kind == .exclusive }
            if !exclusive.isEmpty && current.count > 1 {
                throw fail("\(specification.path) held by \(current.keys.sorted()) with a writer among them")
            }
            if current.count > Int(specification.permits) && current.values.contains(where: { $0.kind == .semaphore }) {
                throw fail("\(specification.path) held \(current.count) times, permits \(specification.permits)")
            }
        }
    }

    /// Heals the network, releases everything, lets every session that was abandoned expire; then
    /// nothing may be pending, held, tracked, or left in ZooKeeper.
    private func finish() throws {
        for sidecar in sidecars { healLink(sidecar) }
        for round in 0..<400 {
            step += 1
            for _ in 0..<50 {
                for sidecar in sidecars {
                    while sidecar.client.canSend { sidecar.client.sendOne() }
                    while sidecar.client.canDeliver { sidecar.client.deliverOne() }
                }
                try absorbEffects()
            }
            if let (node, holder) = someHolder() {
                release(node, holder)
            } else {
                advanceTime(250)
            }
            try absorbEffects()
            let tracked = sidecars.reduce(0) { $0 + $1.manager.waiterCount }
            if pending.isEmpty && holders.isEmpty && tracked == 0 { break }
            if round == 399 { throw fail("did not settle: \(pending.count) pending, \(holders.count) holders, \(tracked) waiters") }
        }
        // Sessions abandoned while cut off expire (their ephemerals with them); live ones keep theirs.
        advanceTime(timeoutMilliseconds)
        try absorbEffects()
        for specification in locks {
            let left = server.nodes[specification.path]?.children.sorted() ?? []
            if !left.isEmpty {
                let owners = left.map { name -> String in
                    let owner = server.nodes[specification.path + "/" + name]?.owner ?? 0
                    let sidecar = sidecars.first { $0.client.sessionID == owner }?.index
                    return "\(name) of ZooKeeper session \(String(owner, radix: 16)) (sidecar \(sidecar.map(String.init) ?? "none"))"
                }
                throw fail("nodes left under \(specification.path): \(owners)")
            }
        }
        if !ghostGrants.isEmpty { throw fail("grants of deleted nodes never followed by lockLost: \(ghostGrants.sorted())") }
    }
}
