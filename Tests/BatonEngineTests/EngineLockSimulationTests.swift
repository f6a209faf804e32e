@testable import BatonEngine
import BatonLocks
import BatonNamespace
import BatonProtocol
import Foundation
import XCTest
import BatonTestSupport

/// The lock simulation run against the real engine: clients on connections with sessions acquire,
/// release, cancel, time out, hold leases, disconnect (their sessions end) and delete each other's
/// nodes, in random order from a seed. After every step: no conflicting holders, every grant was the
/// waiter's turn, tokens increase per lock, every acquire answered at most once. At the end everything
/// settles, and no node, waiter or internal watch is left.
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
    private var holders: [String: Holder] = [:]
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
            case 0..<35: try acquire()
            case 35..<60: try releaseSome()
            case 60..<65: try cancelSome()
            case 65..<69: try disconnectSome()
            case 69..<72: try deleteSomeHolder()
            default:
                harness.now = harness.now.advanced(by: UInt64(1 + below(400)))
                harness.engine.tick(now: harness.now)
                try absorb(harness.engine.takeOutputs())
            }
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

    private func someHolder() -> (node: String, holder: Holder)? {
        guard !holders.isEmpty else { return nil }
        let node = holders.keys.sorted()[below(holders.count)]
        return (node, holders[node]!)
    }

    private func releaseSome() throws {
        guard let (node, holder) = someHolder() else { return }
        holders[node] = nil
        let (requestID, outputs) = harness.send(.release(node: node, token: holder.token), on: holder.connection)
        guard let reply = replies(outputs, to: holder.connection).first(where: { $0.requestID == requestID }),
              reply.result == .success(.empty) else { throw fail("release of \(node) was not answered with success: \(outputs)") }
        try absorb(outputs)
    }

    private func cancelSome() throws {
        guard !pending.isEmpty else { return }
        let key = pending.keys.sorted { ($0.connection, $0.requestID) < ($1.connection, $1.requestID) }[below(pending.count)]
        let (_, outputs) = harness.send(.cancel(acquireRequestID: key.requestID), on: key.connection)
        try absorb(outputs)
    }

    private func disconnectSome() throws {
        guard connections.count > 1 else { return }
        let connection = connections.remove(at: below(connections.count))
        for (node, holder) in holders where holder.connection == connection { holders[node] = nil }
        harness.engine.connectionClosed(connection, now: harness.now)
        for key in pending.keys where key.connection == connection { pending[key] = nil }
        try absorb(harness.engine.takeOutputs())
        connect()
    }

    private func deleteSomeHolder() throws {
        guard let (node, _) = someHolder() else { return }
        holders[node] = nil
        let (_, outputs) = harness.send(.delete(path: node, expectedVersion: anyVersion), on: connections[0])
        try absorb(outputs)
    }

    private func absorb(_ outputs: [EngineOutput]) throws {
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
            case .event(.lockLost(let node, _, _)):
                holders[node] = nil
            default:
                break
            }
        }
    }

    private func granted(lock: String, node: String, token: UInt64, connection: ConnectionID) throws {
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
        let before = (lockNode?.children ?? []).compactMap(WaiterName.init(parsing:)).filter { $0.sequence < name.sequence }
        switch name.kind {
        case .exclusive where !before.isEmpty, .shared where before.contains(where: { $0.kind == .exclusive }):
            throw fail("grant \(node) jumped the queue ahead of \(before.map(\.name))")
        case .semaphore where before.count >= permits:
            throw fail("grant \(node) with \(before.count) nodes before it")
        default:
            break
        }
        if let last = lastToken[lock], token <= last { throw fail("token \(token) of \(node) after \(last)") }
        lastToken[lock] = token
        let incarnation = lockNode?.stat.createdTransaction ?? 0
        if let last = lastSequence[lock], last.incarnation == incarnation, name.sequence <= last.sequence {
            throw fail("grant \(node) after sequence \(last.sequence): not FIFO")
        }
        lastSequence[lock] = (incarnation, name.sequence)
        holders[node] = Holder(lock: lock, kind: name.kind, connection: connection, token: token)
    }

    private func finish() throws {
        for _ in 0..<1_000 {
            step += 1
            if let (node, holder) = someHolder() {
                holders[node] = nil
                let (_, outputs) = harness.send(.release(node: node, token: holder.token), on: holder.connection)
                try absorb(outputs)
            } else if pending.isEmpty {
                break
            } else {
                harness.now = harness.now.advanced(by: 200)
                harness.engine.tick(now: harness.now)
                try absorb(harness.engine.takeOutputs())
            }
        }
        if !pending.isEmpty || !holders.isEmpty { throw fail("did not settle: \(pending.count) waiting, \(holders.count) holding") }
        harness.now = harness.now.advanced(by: 2_000)
        harness.engine.tick(now: harness.now)
        try absorb(harness.engine.takeOutputs())
        if let left = harness.engine.namespace.node(at: "/sim")?.children, !left.isEmpty {
            throw fail("left under /sim: \(left.sorted())")
        }
        if let manager = harness.engine.locks.manager, manager.waiterCount != 0 {
            throw fail("\(manager.waiterCount) waiters left in the lock manager")
        }
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
        for seed in seeds {
            let simulation = EngineLockSimulation(seed: seed)
            do {
                try simulation.run(steps: 150)
            } catch {
                return XCTFail("\(error)")
            }
            grants += simulation.grants
        }
        XCTAssertGreaterThan(grants, seeds.count * 10)
    }
}
