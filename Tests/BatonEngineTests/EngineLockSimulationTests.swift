@testable import BatonEngine
import BatonLocks
import BatonNamespace
import BatonProtocol
import Foundation
import XCTest
import BatonTestSupport

/// The lock simulation run against the real engine: clients on connections with sessions acquire,
/// release, cancel, time out, hold leases and disconnect (their sessions end), in random order from a
/// seed; hostile or careless ones replay releases of ended holds and try to forge, delete or change
/// waiter nodes (create, sequential create, delete, set, multi: all refused with `lockNodeReserved`,
/// changing nothing); and waiter nodes are deleted out of band (as a ZooKeeper client outside the
/// sidecar could). After every step: no conflicting holders, every grant was the waiter's turn, tokens
/// increase per lock, every acquire answered at most once, a waiting acquire whose node went is
/// answered at once, and `inspect` lists only nodes that exist. Some acquires are sets (`acquireAll`
/// of two locks in random order): answered once with every lock, or failed with none of them held. At the end everything settles, and no
/// node, waiter or internal watch is left.
final class EngineLockSimulation {
    struct Failure: Error, CustomStringConvertible { var description: String }

    private struct Holder {
        var lock: String
        var kind: LockKind
        var connection: ConnectionID
        var token: UInt64
    }

    let seed: UInt64
    private var random: SeededGenerator
    private let harness: EngineHarness
    private let locks: [(path: String, kinds: [LockKind], permits: UInt32)] = [
        ("/sim/a", [.exclusive, .shared, .shared], 1),
        ("/sim/b", [.semaphore], 2),
        ("/sim/c", [.exclusive], 1),
    ]
    private var connections: [ConnectionID] = []
    private var nextConnection: ConnectionID = 1
    /// Waiting acquires: (connection, request id) -> lock.
    private var pending: [LockTicketKey: String] = [:]
    /// Waiting `acquireAll`s: (connection, request id) -> their locks in request order.
    private var pendingSets: [LockTicketKey: [String]] = [:]
    private(set) var setGrants = 0
    private(set) var setFailures = 0
    private var holders: [String: Holder] = [:]
    /// Holds that ended, for replayed releases.
    private var ended: [(node: String, token: UInt64, connection: ConnectionID)] = []
    private var lastToken: [String: UInt64] = [:]
    private var lastSequence: [String: (incarnation: UInt64, sequence: UInt64)] = [:]
    private(set) var grants = 0
    private var step = 0

    struct LockTicketKey: Hashable {
        var connection: ConnectionID
        var requestID: UInt32
    }

    init(seed: UInt64) {
        self.seed = seed
        random = SeededGenerator(seed: seed)
        harness = EngineHarness(seed: seed) { $0.containerGraceMilliseconds = 500 }
        for _ in 0..<4 { connect() }
    }

    private func below(_ bound: Int) -> Int { Int(random.next() % UInt64(bound)) }

    private func fail(_ message: String) -> Failure {
        Failure(description: "EngineLockSimulation seed \(seed) step \(step): \(message)")
    }

    private func connect() {
        let connection = nextConnection
        nextConnection += 1
        harness.openSession(connection, timeoutMilliseconds: 600_000)
        connections.append(connection)
    }

    func run(steps: Int) throws {
        for index in 0..<steps {
            step = index
            let roll = below(100)
            switch roll {
            case 0..<28: try acquire()
            case 28..<35: try acquireSet()
            case 35..<60: try releaseSome()
            case 60..<65: try cancelSome()
            case 65..<69: try disconnectSome()
            case 69..<72: try deleteOutOfBand()
            case 72..<76: try forgeSome()
            case 76..<79: try replayAnEndedRelease()
            default:
                harness.now = harness.now.advanced(by: UInt64(1 + below(400)))
                harness.engine.tick(now: harness.now)
                try absorb(harness.engine.takeOutputs())
            }
            try checkInspect()
        }
        try finish()
    }

    private func acquire() throws {
        let lock = locks[below(locks.count)]
        let connection = connections[below(connections.count)]
        let wait: UInt32 = below(100) < 70 ? LockRequest.waitForever : below(2) == 0 ? 0 : UInt32(1 + below(600))
        let lease: UInt32 = below(100) < 20 ? UInt32(50 + below(1_000)) : 0
        let request = LockRequest(path: lock.path, kind: lock.kinds[below(lock.kinds.count)], permits: lock.permits,
                                  waitMilliseconds: wait, leaseMilliseconds: lease)
        let requestID = harness.nextRequestID
        pending[LockTicketKey(connection: connection, requestID: requestID)] = lock.path
        let (_, outputs) = harness.send(.acquire(request), on: connection)
        try absorb(outputs)
    }

    /// Two locks at once, in random order (so sets in both orders meet), of the locks' own kinds.
    private func acquireSet() throws {
        var paths = locks.map(\.path)
        let first = paths.remove(at: below(paths.count))
        let chosen = below(2) == 0 ? [first, paths[below(paths.count)]] : [paths[below(paths.count)], first]
        let members = chosen.map { path in
            let lock = locks.first { $0.path == path }!
            return LockSetMember(path: path, kind: lock.kinds[below(lock.kinds.count)], permits: lock.permits)
        }
        let wait: UInt32 = below(100) < 60 ? LockRequest.waitForever : below(2) == 0 ? 0 : UInt32(1 + below(600))
        let lease: UInt32 = below(100) < 10 ? UInt32(50 + below(1_000)) : 0
        let connection = connections[below(connections.count)]
        pendingSets[LockTicketKey(connection: connection, requestID: harness.nextRequestID)] = chosen
        let (_, outputs) = harness.send(.acquireAll(locks: members, waitMilliseconds: wait, leaseMilliseconds: lease), on: connection)
        try absorb(outputs)
    }

    private func someHolder() -> (node: String, holder: Holder)? {
        guard !holders.isEmpty else { return nil }
        let node = holders.keys.sorted()[below(holders.count)]
        return (node, holders[node]!)
    }

    private func releaseSome() throws {
        guard let (node, holder) = someHolder() else { return }
        holders[node] = nil
        ended.append((node, holder.token, holder.connection))
        let (requestID, outputs) = harness.send(.release(node: node, token: holder.token), on: holder.connection)
        guard let reply = replies(outputs, to: holder.connection).first(where: { $0.requestID == requestID }),
              reply.result == .success(.empty) else { throw fail("release of \(node) was not answered with success: \(outputs)") }
        try absorb(outputs)
    }

    private func cancelSome() throws {
        let keys = Array(pending.keys) + Array(pendingSets.keys)
        guard !keys.isEmpty else { return }
        let key = keys.sorted { ($0.connection, $0.requestID) < ($1.connection, $1.requestID) }[below(keys.count)]
        let (_, outputs) = harness.send(.cancel(acquireRequestID: key.requestID), on: key.connection)
        try absorb(outputs)
    }

    private func disconnectSome() throws {
        guard connections.count > 1 else { return }
        let connection = connections.remove(at: below(connections.count))
        for (node, holder) in holders where holder.connection == connection { holders[node] = nil }
        harness.engine.connectionClosed(connection, now: harness.now)
        for key in pending.keys where key.connection == connection { pending[key] = nil }
        for key in pendingSets.keys where key.connection == connection { pendingSets[key] = nil }
        try absorb(harness.engine.takeOutputs())
        connect()
    }

    /// Queued nodes (holders and waiters) of every lock, as `inspect` lists them.
    private func queued() -> [LockEntry] {
        guard let manager = harness.engine.locks.manager else { return [] }
        return locks.flatMap { manager.inspect(path: $0.path, now: harness.now) }
    }

    /// A holder's or waiter's node goes behind the request path: the holder is told, a waiting acquire
    /// is answered at once (`lockLost`), nothing else waits on it.
    private func deleteOutOfBand() throws {
        let entries = queued()
        guard !entries.isEmpty else { return }
        let entry = entries[below(entries.count)]
        holders[entry.node] = nil
        let outputs = harness.deleteOutOfBand(entry.node)
        let answered = outputs.contains { output in
            guard case .send(_, .reply(let reply)) = output, reply.opcode == .acquire || reply.opcode == .acquireAll,
                  case .failure(let error) = reply.result else { return false }
            return error.code == .lockLost
        }
        if entry.position == .waiter && !answered {
            throw fail("the waiting acquire of \(entry.node) was not answered when its node was deleted: \(outputs)")
        }
        try absorb(outputs)
    }

    /// A client tries to put a node into a lock's queue, end a hold or change a waiter: refused, no change.
    private func forgeSome() throws {
        let lock = locks[below(locks.count)]
        let connection = connections[below(connections.count)]
        let entries = queued()
        let sessions = connections.compactMap { harness.engine.connections[$0]?.sessionID }
        let kind = [LockKind.exclusive, .shared, .semaphore][below(3)]
        let sequence = (harness.engine.namespace.node(at: lock.path)?.sequenceNext ?? 0) + UInt64(below(2))
        let forged = lock.path + "/" + WaiterName(kind: kind, session: sessions[below(sessions.count)], sequence: sequence).name
        let existing = entries.isEmpty ? forged : entries[below(entries.count)].node
        let mode = [CreateMode.persistent, .ephemeral, .container][below(3)]
        let request: Request
        switch below(6) {
        case 0: request = .create(path: forged, data: [], mode: mode)
        case 1: request = .create(path: String(forged.dropLast(10)), data: WaiterName.permitData(1_000),
                                  mode: CreateMode(kind: mode.kind == .container ? .persistent : mode.kind, sequential: true))
        case 2: request = .delete(path: existing, expectedVersion: anyVersion)
        case 3: request = .set(path: existing, data: WaiterName.permitData(1_000), expectedVersion: anyVersion)
        case 4: request = .multi([.check(path: "/", expectedVersion: anyVersion), .delete(path: existing, expectedVersion: anyVersion)])
        default: request = .multi([.create(path: forged, data: [], mode: mode)])
        }
        let before = harness.engine.namespace.node(at: lock.path)
        let (requestID, outputs) = harness.send(request, on: connection)
        guard let reply = replies(outputs, to: connection).first(where: { $0.requestID == requestID }),
              case .failure(let error) = reply.result, error.code == .lockNodeReserved else {
            throw fail("\(request) was not refused with lockNodeReserved: \(outputs)")
        }
        if harness.engine.namespace.node(at: lock.path) != before { throw fail("\(request) changed \(lock.path)") }
        try absorb(outputs)
    }

    /// A release of a hold that ended (delayed, retried, or a confused client): never ends another hold.
    private func replayAnEndedRelease() throws {
        guard !ended.isEmpty else { return }
        let old = ended[below(ended.count)]
        guard harness.engine.connections[old.connection]?.sessionID != nil else { return }
        let current = holders
        let (requestID, outputs) = harness.send(.release(node: old.node, token: old.token), on: old.connection)
        guard let reply = replies(outputs, to: old.connection).first(where: { $0.requestID == requestID }),
              case .failure(let error) = reply.result, error.code == .lockLost || error.code == .notHolder else {
            throw fail("replayed release of \(old.node) token \(old.token) was not refused: \(outputs)")
        }
        try absorb(outputs)
        for (node, holder) in current where holders[node] != nil {
            guard harness.engine.locks.manager?.checkToken(path: holder.lock, token: holder.token) == true else {
                throw fail("replayed release of \(old.node) token \(old.token) ended the hold of \(node) token \(holder.token)")
            }
        }
    }

    /// After every step: what `inspect` lists exists.
    private func checkInspect() throws {
        for entry in queued() where harness.engine.namespace.node(at: entry.node) == nil {
            throw fail("inspect lists \(entry.node), which does not exist")
        }
    }

    private func absorb(_ outputs: [EngineOutput]) throws {
        var failedSets: [(connection: ConnectionID, paths: [String])] = []
        try absorbEach(outputs, &failedSets)
        // A failed set holds none of its locks: once the whole step is absorbed (a grant its release
        // caused may be reported after it), every hold of the session there is a known one.
        for (connection, paths) in failedSets {
            let session = harness.engine.connections[connection]?.sessionID
            for path in paths {
                for entry in harness.engine.locks.manager?.inspect(path: path, now: harness.now) ?? []
                where entry.sessionID == session && entry.position == .holder
                    && holders[entry.node] == nil && harness.engine.locks.setOfNode[entry.node] == nil {
                    throw fail("failed set \(paths) left its hold \(entry.node)")
                }
            }
        }
    }

    private func absorbEach(_ outputs: [EngineOutput], _ failedSets: inout [(connection: ConnectionID, paths: [String])]) throws {
        for output in outputs {
            guard case .send(let connection, let message) = output else { continue }
            switch message {
            case .reply(let reply) where reply.opcode == .acquire:
                let key = LockTicketKey(connection: connection, requestID: reply.requestID)
                guard let lock = pending.removeValue(forKey: key) else {
                    throw fail("acquire answer to \(key), which is not waiting: \(reply)")
                }
                if case .success(.granted(let node, let token)) = reply.result {
                    try granted(lock: lock, node: node, token: token, connection: connection)
                }
            case .reply(let reply) where reply.opcode == .acquireAll:
                let key = LockTicketKey(connection: connection, requestID: reply.requestID)
                guard let paths = pendingSets.removeValue(forKey: key) else {
                    throw fail("acquireAll answer to \(key), which is not waiting: \(reply)")
                }
                switch reply.result {
                case .success(.grantedAll(let holds)):
                    guard holds.count == paths.count else { throw fail("set \(paths) answered \(holds)") }
                    setGrants += 1
                    // Each lock was granted when the set reached it, maybe before later grants were
                    // reported: the order checks of tokens and sequences apply to plain acquires only.
                    for (path, hold) in zip(paths, holds) {
                        try granted(lock: path, node: hold.node, token: hold.token, connection: connection, inOrder: false)
                    }
                case .failure:
                    setFailures += 1
                    failedSets.append((connection, paths))
                default:
                    throw fail("set \(paths) answered \(reply)")
                }
            case .event(.lockLost(let node, let token, _)):
                if holders[node]?.token == token {
                    ended.append((node, token, holders[node]!.connection))
                    holders[node] = nil
                }
            default:
                break
            }
        }
    }

    private func granted(lock: String, node: String, token: UInt64, connection: ConnectionID, inOrder: Bool = true) throws {
        guard let name = WaiterName(parsing: NamespacePath.name(of: node)), NamespacePath.parent(of: node) == lock else {
            throw fail("grant of \(node) for \(lock)")
        }
        grants += 1
        let permits = Int(locks.first { $0.path == lock }!.permits)
        let others = holders.values.filter { $0.lock == lock }
        switch name.kind {
        case .exclusive where !others.isEmpty,
             .shared where others.contains(where: { $0.kind == .exclusive }):
            throw fail("\(name.kind) grant \(node) while \(others.count) hold \(lock)")
        case .semaphore where others.count >= permits:
            throw fail("semaphore grant \(node) beyond \(permits) permits")
        default:
            break
        }
        let lockNode = harness.engine.namespace.node(at: lock)
        let before = (harness.engine.namespace.childNames(of: lock) ?? []).compactMap(WaiterName.init(parsing:)).filter { $0.sequence < name.sequence }
        switch name.kind {
        case .exclusive where !before.isEmpty, .shared where before.contains(where: { $0.kind == .exclusive }):
            throw fail("grant \(node) jumped the queue ahead of \(before.map(\.name))")
        case .semaphore where before.count >= permits:
            throw fail("grant \(node) with \(before.count) nodes before it")
        default:
            break
        }
        if inOrder {
            if let last = lastToken[lock], token <= last { throw fail("token \(token) of \(node) after \(last)") }
            lastToken[lock] = token
            let incarnation = lockNode?.stat.createdTransaction ?? 0
            if let last = lastSequence[lock], last.incarnation == incarnation, name.sequence <= last.sequence {
                throw fail("grant \(node) after sequence \(last.sequence): not FIFO")
            }
            lastSequence[lock] = (incarnation, name.sequence)
        }
        holders[node] = Holder(lock: lock, kind: name.kind, connection: connection, token: token)
    }

    private func finish() throws {
        for _ in 0..<1_000 {
            step += 1
            if let (node, holder) = someHolder() {
                holders[node] = nil
                let (_, outputs) = harness.send(.release(node: node, token: holder.token), on: holder.connection)
                try absorb(outputs)
            } else if pending.isEmpty && pendingSets.isEmpty {
                break
            } else {
                harness.now = harness.now.advanced(by: 200)
                harness.engine.tick(now: harness.now)
                try absorb(harness.engine.takeOutputs())
            }
        }
        if !pending.isEmpty || !pendingSets.isEmpty || !holders.isEmpty {
            throw fail("did not settle: \(pending.count + pendingSets.count) waiting, \(holders.count) holding")
        }
        if !harness.engine.locks.sets.isEmpty || !harness.engine.locks.setOfNode.isEmpty { throw fail("set state left in the engine") }
        harness.now = harness.now.advanced(by: 2_000)
        harness.engine.tick(now: harness.now)
        try absorb(harness.engine.takeOutputs())
        if let left = harness.engine.namespace.childNames(of: "/sim"), !left.isEmpty {
            throw fail("left under /sim: \(left.sorted())")
        }
        if let manager = harness.engine.locks.manager, manager.waiterCount != 0 {
            throw fail("\(manager.waiterCount) waiters left in the lock manager")
        }
        // The engine's holder entries go with their holds (kept by token: none may outlive its hold).
        if !harness.engine.locks.holders.isEmpty { throw fail("\(harness.engine.locks.holders.count) holder entries left") }
        if let watches = harness.engine.locks.adapter?.watchCount, watches != 0 {
            throw fail("\(watches) internal watches left")
        }
    }
}

final class EngineLockSimulationTests: XCTestCase {
    func testRandomInterleavingsAgainstTheEngineKeepTheLockInvariants() {
        let seeds = simulationSeeds(runsVariable: "BATON_SIMULATION_RUNS", seedVariable: "BATON_SIMULATION_SEED",
                                    defaultRuns: 300, firstSeed: 0xE_0000)
        var grants = 0
        var setGrants = 0
        var setFailures = 0
        for seed in seeds {
            let simulation = EngineLockSimulation(seed: seed)
            do {
                try simulation.run(steps: 150)
            } catch {
                return XCTFail("\(error)")
            }
            grants += simulation.grants
            setGrants += simulation.setGrants
            setFailures += simulation.setFailures
        }
        XCTAssertGreaterThan(grants, seeds.count * 10)
        if seeds.count >= 100 {
            XCTAssertGreaterThan(setGrants, 0, "the runs must grant sets")
            XCTAssertGreaterThan(setFailures, 0, "the runs must fail sets")
        }
    }
}
