@testable import BatonEngine
import BatonNamespace
import BatonProtocol
import Foundation
import XCTest
import BatonTestSupport

/// A seeded simulation of leader election against the real engine (PROTOCOL.md §12.15), with the
/// lock features it rests on: candidates campaign with `acquireOwned` (reentrant, some with a lease,
/// some with a lock-delay), campaign again while leading (hold counts), proclaim, renew, resign one
/// count at a time, die (their Unix connection drops: the session ends), and time passes. An observer
/// session holds a recursive watch on the election's parent and a persistent one on the election.
///
/// After every step: at most one leader, and it is the one the model expects (the holder `inspect`
/// lists, its token and its proclaimed value); tokens increase; hold counts are what the model
/// counted; no leased hold outlives its last deadline and none is lost before it; no grant falls
/// inside a lock-delay; and the observer's picture of the subtree, built only from its events
/// (created adds a node, deleted removes it, dataChanged counts a version), equals the tree: no
/// event lost, repeated or out of order, and the watches are still registered.
final class EngineElectionSimulation {
    struct Failure: Error, CustomStringConvertible { var description: String }

    private struct Hold {
        var connection: ConnectionID
        var node: String
        var token: UInt64
        var count: UInt32
        var leaseMilliseconds: UInt32
        var deadline: UInt64?
        var lockDelayMilliseconds: UInt32
        var proclaimed: [UInt8]?
    }

    private struct Ticket: Hashable {
        var connection: ConnectionID
        var requestID: UInt32
    }

    let seed: UInt64
    private var random: SeededGenerator
    private let harness: EngineHarness
    private let parent = "/e", election = "/e/x"
    private let observer: ConnectionID = 1_000
    private var candidates: [ConnectionID] = []
    private var nextConnection: ConnectionID = 1
    /// Waiting campaigns and what they asked.
    private var pending: [Ticket: LockRequest] = [:]
    private var hold: Hold?
    private var lastToken: UInt64 = 0
    private var delayUntil: UInt64 = 0
    /// The observer's picture: node -> dataChanged events since its created event.
    private var seen: [String: Int32] = [:]
    private(set) var grants = 0, reentries = 0, renewals = 0, leaseLosses = 0, delayedDeaths = 0, events = 0
    private var step = 0
    /// What the last steps did, for a failure's message.
    private var trace: [String] = []

    init(seed: UInt64) {
        self.seed = seed
        random = SeededGenerator(seed: seed)
        harness = EngineHarness(seed: seed) { $0.containerGraceMilliseconds = 300 }
        harness.openSession(observer, timeoutMilliseconds: 600_000)
        _ = harness.call(.create(path: parent, data: [], mode: .persistent), on: observer)
        _ = harness.call(.addWatch(path: parent, mode: .recursive), on: observer)
        _ = harness.call(.addWatch(path: election, mode: .persistent), on: observer)
        for _ in 0..<4 { connect() }
    }

    private var now: UInt64 { harness.now.monotonicMilliseconds }
    private func below(_ bound: Int) -> Int { Int(random.next() % UInt64(bound)) }
    private func fail(_ message: String) -> Failure {
        Failure(description: "EngineElectionSimulation seed \(seed) step \(step): \(message); last steps: \(trace.suffix(8))")
    }

    private func connect() {
        let connection = nextConnection
        nextConnection += 1
        harness.openSession(connection, timeoutMilliseconds: 600_000)
        candidates.append(connection)
    }

    func run(steps: Int) throws {
        for index in 0..<steps {
            step = index
            switch below(100) {
            case 0..<30: try campaign()
            case 30..<40: try proclaim()
            case 40..<50: try renew()
            case 50..<65: try resign()
            case 65..<72: try die()
            default:
                harness.now = harness.now.advanced(by: UInt64(1 + below(250)))
                trace.append("\(step): time \(now)")
                harness.engine.tick(now: harness.now)
                try absorb(harness.engine.takeOutputs())
            }
            try check()
        }
        // Settle: everyone resigns or dies, the lock node is swept, the picture empties with the tree.
        while let hold { try resign(hold) }
        for connection in candidates { try die(connection) }
        harness.now = harness.now.advanced(by: 60_000)
        harness.engine.tick(now: harness.now)
        try absorb(harness.engine.takeOutputs())
        try check()
        guard seen.isEmpty else { throw fail("nodes left in the observer's picture: \(seen)") }
    }

    // MARK: Steps

    private func campaign() throws {
        let connection = candidates[below(candidates.count)]
        let lease: UInt32 = below(3) == 0 ? UInt32(100 + below(600)) : 0
        let delay: UInt32 = below(4) == 0 ? UInt32(50 + below(400)) : 0
        let wait: UInt32 = below(4) == 0 ? UInt32(below(300)) : LockRequest.waitForever
        let request = LockRequest(path: election, waitMilliseconds: wait, leaseMilliseconds: lease, owner: "candidate",
                                  lockDelayMilliseconds: delay)
        let (requestID, outputs) = harness.send(.acquire(request), on: connection)
        trace.append("\(step): campaign by \(connection) lease \(lease) delay \(delay) wait \(wait) -> \(replies(outputs, to: connection).map(\.result))")
        let ticket = Ticket(connection: connection, requestID: requestID)
        let waiting = pending.keys.contains { $0.connection == connection }
        pending[ticket] = request
        try absorb(outputs)
        if let hold, hold.connection == connection, pending[ticket] != nil {
            throw fail("a leader's second campaign was not answered at once: \(outputs)")
        }
        if waiting, pending[ticket] != nil { throw fail("a second wait of the same owner was accepted") }
    }

    private func proclaim() throws {
        guard var current = hold else { return }
        let value = Array("v\(step)".utf8)
        var record = (0..<8).map { UInt8(truncatingIfNeeded: current.token >> (56 - 8 * $0)) }
        record += value
        let result = try call(.set(path: election, data: record, expectedVersion: -1), on: current.connection)
        guard case .success = result else { throw fail("proclamation failed: \(result)") }
        current.proclaimed = value
        hold = current
    }

    private func renew() throws {
        guard var current = hold, current.leaseMilliseconds > 0 else { return }
        let lease = UInt32(100 + below(600))
        let result = try call(.renew(node: current.node, token: current.token, leaseMilliseconds: lease),
                              on: current.connection)
        guard result == .success(.empty) else { throw fail("renewal of a live leased hold failed: \(result)") }
        trace.append("\(step): renew \(lease) at \(now)")
        current.leaseMilliseconds = lease
        renewals += 1
        current.deadline = now + UInt64(lease)
        hold = current
    }

    private func resign() throws {
        guard let current = hold else { return }
        try resign(current)
    }

    private func resign(_ current: Hold) throws {
        trace.append("\(step): resign by \(current.connection) count \(current.count)")
        let (requestID, outputs) = harness.send(.release(node: current.node, token: current.token), on: current.connection)
        if current.count == 1 {
            hold = nil  // before absorbing: the release may grant the next candidate
        } else {
            hold!.count -= 1
        }
        try absorb(outputs)
        guard replies(outputs, to: current.connection).contains(where: { $0.requestID == requestID && $0.result == .success(.empty) }) else {
            throw fail("resign not answered ok: \(outputs)")
        }
    }

    private func die() throws {
        try die(candidates[below(candidates.count)])
        connect()
    }

    private func die(_ connection: ConnectionID) throws {
        trace.append("\(step): death of \(connection) at \(now)")
        candidates.removeAll { $0 == connection }
        pending = pending.filter { $0.key.connection != connection }
        if let current = hold, current.connection == connection {
            hold = nil
            if current.lockDelayMilliseconds > 0 {
                delayUntil = max(delayUntil, now + UInt64(current.lockDelayMilliseconds))
                delayedDeaths += 1
            }
        }
        harness.engine.connectionClosed(connection, now: harness.now)
        try absorb(harness.engine.takeOutputs())
    }

    // MARK: What the engine said

    /// Sends a request, absorbs everything it caused (events included) and returns its reply.
    private func call(_ request: Request, on connection: ConnectionID) throws -> Result<ReplyBody, ReplyError> {
        let (requestID, outputs) = harness.send(request, on: connection)
        try absorb(outputs)
        guard let reply = replies(outputs, to: connection).first(where: { $0.requestID == requestID }) else {
            throw fail("\(request.opcode) not answered: \(outputs)")
        }
        return reply.result
    }

    private func absorb(_ outputs: [EngineOutput]) throws {
        for output in outputs {
            // A dead candidate's session may still be told of its end (the shell drops it): nobody reads it.
            guard case .send(let connection, let message) = output,
                  connection == observer || candidates.contains(connection) else { continue }
            switch message {
            case .event(.watch(let type, let path)) where connection == observer:
                try observe(type, path)
            case .event(.lockLost(let node, let token, let reason)):
                guard let current = hold, current.connection == connection, current.token == token, current.node == node else {
                    throw fail("lockLost for a hold the model does not have: \(node) \(token)")
                }
                guard reason == .leaseExpired, let deadline = current.deadline, now >= deadline else {
                    throw fail("hold lost (\(reason)) before its deadline \(String(describing: current.deadline)), now \(now)")
                }
                hold = nil
                leaseLosses += 1
            case .reply(let reply):
                let ticket = Ticket(connection: connection, requestID: reply.requestID)
                guard let request = pending.removeValue(forKey: ticket) else { continue }
                try answered(request, reply.result, on: connection)
            default:
                continue
            }
        }
    }

    private func answered(_ request: LockRequest, _ result: Result<ReplyBody, ReplyError>, on connection: ConnectionID) throws {
        switch result {
        case .success(.held(let node, let token, let count)):
            if var current = hold, current.connection == connection {
                guard node == current.node, token == current.token, count == current.count + 1 else {
                    throw fail("reentrant campaign answered \(node) \(token) count \(count), model \(current)")
                }
                current.count = count
                hold = current
                reentries += 1
                return
            }
            guard hold == nil else { throw fail("two leaders: \(String(describing: hold)) and \(connection) \(token)") }
            guard token > lastToken else { throw fail("token \(token) after \(lastToken)") }
            guard count == 1 else { throw fail("a new hold with count \(count)") }
            guard now >= delayUntil else { throw fail("granted at \(now) inside a lock-delay until \(delayUntil)") }
            lastToken = token
            hold = Hold(connection: connection, node: node, token: token, count: 1,
                        leaseMilliseconds: request.leaseMilliseconds,
                        deadline: request.leaseMilliseconds > 0 ? now + UInt64(request.leaseMilliseconds) : nil,
                        lockDelayMilliseconds: request.lockDelayMilliseconds)
            grants += 1
        case .failure(let error) where [.lockTimeout, .lockBusy, .lockHeldBySession].contains(error.code):
            return
        default:
            throw fail("campaign answered \(result)")
        }
    }

    private func observe(_ type: WatchEventType, _ path: String) throws {
        events += 1
        switch type {
        case .created:
            guard seen.updateValue(0, forKey: path) == nil else { throw fail("created twice without deletion: \(path)") }
        case .deleted:
            guard seen.removeValue(forKey: path) != nil else { throw fail("deleted without creation: \(path)") }
        case .dataChanged:
            guard seen[path] != nil else { throw fail("dataChanged of a node not seen created: \(path)") }
            seen[path]! += 1
        case .childrenChanged:
            guard path == election else { throw fail("childrenChanged of \(path): only the persistent watch hears it") }
        }
    }

    // MARK: Invariants

    private func check() throws {
        // The leader is the model's.
        let entries: [LockEntry]
        switch try call(.inspect(path: election), on: observer) {
        case .success(.lockEntries(let listed)): entries = listed
        case .failure(let error) where error.code == .noNode: entries = []
        case let other: throw fail("inspect answered \(other)")
        }
        let holders = entries.filter { $0.position == .holder }
        guard holders.count <= 1 else { throw fail("\(holders.count) leaders") }
        guard holders.first?.token == hold?.token, holders.first?.node == hold?.node else {
            throw fail("the engine's leader \(holders) is not the model's \(String(describing: hold))")
        }
        if let current = hold {
            if let deadline = current.deadline, now >= deadline { throw fail("a leased hold outlived its deadline") }
            if let value = current.proclaimed {
                guard case .success(.data(_, let data)) = try call(.get(path: election, watch: false), on: observer),
                      data.count >= 8, Array(data.dropFirst(8)) == value else { throw fail("the proclaimed value is not readable") }
            }
        }
        // The observer's picture, from events alone, is the tree under /e.
        var tree: [String: Int32] = [:]
        var queue = [parent]
        while let path = queue.popLast() {
            for name in try harness.engine.namespace.children(path).names {
                let child = path + "/" + name
                tree[child] = harness.engine.namespace.node(at: child)!.stat.version
                queue.append(child)
            }
        }
        guard tree == seen else { throw fail("the observer's picture \(seen) is not the tree \(tree)") }
        guard harness.engine.namespace.watchCount(of: .session(observerSession)) == 2 else {
            throw fail("the observer's persistent watches went")
        }
    }

    private lazy var observerSession: UInt64 = harness.engine.connections[observer]!.sessionID!
}

final class EngineElectionSimulationTests: XCTestCase {
    func testRandomElectionsKeepOneLeaderAndPersistentWatchesSeeEveryChangeInOrder() {
        let seeds = simulationSeeds(runsVariable: "BATON_SIMULATION_RUNS", seedVariable: "BATON_SIMULATION_SEED",
                                    defaultRuns: 200, firstSeed: 0xE1_0000)
        var totals = (grants: 0, reentries: 0, renewals: 0, leaseLosses: 0, delayedDeaths: 0, events: 0)
        for seed in seeds {
            let simulation = EngineElectionSimulation(seed: seed)
            do {
                try simulation.run(steps: 150)
            } catch {
                return XCTFail("\(error)")
            }
            totals.grants += simulation.grants
            totals.reentries += simulation.reentries
            totals.renewals += simulation.renewals
            totals.leaseLosses += simulation.leaseLosses
            totals.delayedDeaths += simulation.delayedDeaths
            totals.events += simulation.events
        }
        // Every feature was exercised, not just allowed.
        XCTAssertGreaterThan(totals.grants, seeds.count * 5)
        XCTAssertGreaterThan(totals.reentries, seeds.count)
        XCTAssertGreaterThan(totals.renewals, seeds.count)
        XCTAssertGreaterThan(totals.leaseLosses, seeds.count / 4)
        XCTAssertGreaterThan(totals.delayedDeaths, seeds.count / 4)
        XCTAssertGreaterThan(totals.events, seeds.count * 20)
        print("election simulation: \(seeds.count) seeds, \(totals)")
    }
}
