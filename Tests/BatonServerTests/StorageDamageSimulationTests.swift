import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest

/// Crash and damage, round after round (issue 8, item 5). Each round: load with acknowledged
/// writes and lock grants, kill -9, flip a random byte of a random file of the data directory;
/// load again, stop cleanly, then flip, truncate or remove bytes of a random file (or delete it).
/// After each damage batond must either come up with every acknowledged write, or refuse to start
/// naming the damage, and then come up with `--repair`. In every case the next fencing token and
/// zxid are above everything handed out before.
///
/// Truncations and removals only after a clean stop: after a crash, a log whose last segment ends
/// inside a record is exactly what a write cut short leaves, and is cut as a torn tail
/// (docs/STORAGE.md, "What recovery cuts"); after a clean stop the log's end is recorded.
///
/// `BATON_DAMAGE_ROUNDS` (default 6) and `BATON_DAMAGE_SEED` repeat or extend a run.
final class StorageDamageSimulationTests: XCTestCase {
    private var daemon: TestDaemon?

    override func tearDown() {
        TestDaemon.printLogs([daemon].compactMap { $0 }, failures: testRun?.totalFailureCount ?? 0)
        daemon?.stop()
        super.tearDown()
    }

    struct History {
        /// The acknowledged state of /d: key -> data.
        var nodes: [String: [UInt8]] = [:]
        var zxid: UInt64 = 0
        var token: UInt64 = 0
        var refusals = 0
        var recoveries = 0
    }

    func testCrashThenDamageEitherRecoversEveryAcknowledgedWriteOrRefusesToStart() throws {
        let environment = ProcessInfo.processInfo.environment
        let rounds = max(1, environment["BATON_DAMAGE_ROUNDS"].flatMap { Int($0) } ?? 6)
        let seed = environment["BATON_DAMAGE_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)
        print("StorageDamageSimulationTests: seed \(seed), \(rounds) rounds (repeat with BATON_DAMAGE_SEED=\(seed) BATON_DAMAGE_ROUNDS=\(rounds))")
        // Small snapshots, so snapshot files (and pruned logs) are among what gets damaged.
        var options = TestDaemon.Options(arguments: ["--snapshot-every-records", "150"])
        options.logLevel = "info"
        let daemon = try TestDaemon(options)
        self.daemon = daemon
        var history = History()
        try prepare(daemon, &history)

        for round in 0..<rounds {
            var random = SeededGenerator.derived(seed, UInt64(round))
            // kill -9, then a flipped byte: caught wherever it lands, even at the log's end.
            try load(daemon, &random, &history, round: round)
            daemon.kill(SIGKILL)
            XCTAssertNotNil(daemon.waitForExit(), "round \(round)")
            try restart(daemon, after: try damageOneFile(daemon.dataDirectory, &random, flipOnly: true), &history, round: round)

            // A clean stop, then any damage: flipped, truncated or removed bytes, or a deleted file.
            try load(daemon, &random, &history, round: round)
            XCTAssertNotNil(daemon.stop(), "round \(round)")
            try restart(daemon, after: try damageOneFile(daemon.dataDirectory, &random, flipOnly: false), &history, round: round)
            if (testRun?.totalFailureCount ?? 0) > 0 { return }
        }
        print("StorageDamageSimulationTests: \(history.recoveries) recovered, \(history.refusals) refused and repaired")
    }

    /// Starts after `damage`: either everything acknowledged is back, or batond refuses with one
    /// error line and `--repair` brings it up; tokens go up either way.
    private func restart(_ daemon: TestDaemon, after damage: String, _ history: inout History, round: Int) throws {
        let refusalsLogged = daemon.standardError.components(separatedBy: "batond: error: ").count
        do {
            // (The socket accepts before the data directory is opened: a refusal shows in verify.)
            try daemon.start()
            try verify(daemon, &history, "round \(round) after \(damage)")
            history.recoveries += 1
        } catch {
            guard let termination = daemon.waitForExit() else {
                XCTFail("round \(round), \(damage): batond is running, yet \(error)")
                throw error
            }
            XCTAssertEqual(termination, .exited(1), "round \(round), \(damage): \(error)")
            XCTAssertEqual(daemon.standardError.components(separatedBy: "batond: error: ").count, refusalsLogged + 1,
                           "round \(round), \(damage): one error line says why")
            history.refusals += 1
            daemon.options.arguments.append("--repair")
            defer { daemon.options.arguments.removeAll { $0 == "--repair" } }
            try daemon.start()
            try verifyTokens(daemon, &history, "round \(round) repaired after \(damage)")
            try reload(daemon, &history)
        }
    }

    // MARK: Load and checks

    private func prepare(_ daemon: TestDaemon, _ history: inout History) throws {
        let connection = try daemon.connect()
        defer { connection.close() }
        try connection.handshake()
        _ = try connection.callSuccessfully(.create(path: "/d", data: [], mode: .persistent))
    }

    /// Creates, sets and deletes on 60 keys, pipelined, plus a few grants; records what was acknowledged.
    private func load(_ daemon: TestDaemon, _ random: inout SeededGenerator, _ history: inout History, round: Int) throws {
        let connection = try daemon.connect()
        defer { connection.close() }
        try connection.handshake()
        var expected = history.nodes
        var requests: [(Request, key: String, data: [UInt8]?)] = []
        for index in 0..<(100 + random.below(200)) {
            let key = "/d/k\(random.below(60))"
            let data = Array("r\(round)-\(index)-".utf8) + [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: random.below(300))
            if expected[key] == nil {
                requests.append((.create(path: key, data: data, mode: .persistent), key, data))
                expected[key] = data
            } else if random.chance(30) {
                requests.append((.delete(path: key, expectedVersion: -1), key, nil))
                expected[key] = nil
            } else {
                requests.append((.set(path: key, data: data, expectedVersion: -1), key, data))
                expected[key] = data
            }
        }
        for (request, _, _) in requests { _ = try connection.send(request) }
        for (request, key, data) in requests {
            let reply = try connection.receiveReply()
            guard case .success(let body) = reply.result else { return XCTFail("\(request): \(reply.result)") }
            history.nodes[key] = data
            switch body {
            case .created(_, let stat), .stat(let stat): history.zxid = max(history.zxid, stat.modifiedTransaction)
            default: break
            }
        }
        for _ in 0..<random.below(5) {
            guard case .granted(let node, let token) = try connection.callSuccessfully(.acquire(LockRequest(path: "/locks/r\(random.below(3))"))) else {
                return XCTFail("acquire should be granted")
            }
            history.token = max(history.token, token)
            _ = try connection.callSuccessfully(.release(node: node, token: token))
        }
    }

    /// Every acknowledged node with its data, nothing else under /d; tokens above all issued.
    private func verify(_ daemon: TestDaemon, _ history: inout History, _ when: String) throws {
        let connection = try daemon.connect()
        defer { connection.close() }
        try connection.handshake()
        guard case .success(let names) = try connection.allChildren(of: "/d") else {
            return XCTFail("\(when): /d is gone")
        }
        XCTAssertEqual(Set(names.map { "/d/" + $0 }), Set(history.nodes.keys), "\(when): acknowledged nodes")
        for (key, data) in history.nodes {
            guard case .success(.data(_, let stored)) = try connection.call(.get(path: key, watch: false)).result else {
                XCTFail("\(when): \(key) lost"); continue
            }
            XCTAssertEqual(stored, data, "\(when): \(key) holds acknowledged data")
        }
        try verifyTokens(daemon, &history, when)
    }

    private func verifyTokens(_ daemon: TestDaemon, _ history: inout History, _ when: String) throws {
        let connection = try daemon.connect()
        defer { connection.close() }
        try connection.handshake()
        guard case .granted(let node, let token) = try connection.callSuccessfully(.acquire(LockRequest(path: "/locks/check"))) else {
            return XCTFail("\(when): acquire should be granted")
        }
        XCTAssertGreaterThan(token, max(history.token, history.zxid), "\(when): fencing token went back")
        history.token = max(history.token, token)
        _ = try connection.callSuccessfully(.release(node: node, token: token))
    }

    /// After a repair: what is there now is the truth for later rounds.
    private func reload(_ daemon: TestDaemon, _ history: inout History) throws {
        let connection = try daemon.connect()
        defer { connection.close() }
        try connection.handshake()
        history.nodes = [:]
        guard case .success(let names) = try connection.allChildren(of: "/d") else {
            _ = try connection.callSuccessfully(.create(path: "/d", data: [], mode: .persistent))
            return
        }
        for name in names {
            guard case .data(_, let data) = try connection.callSuccessfully(.get(path: "/d/" + name, watch: false)) else { continue }
            history.nodes["/d/" + name] = data
        }
    }

    // MARK: Damage

    /// Flips, truncates or removes bytes of one random file (LOCK aside), or deletes it.
    private func damageOneFile(_ directory: String, _ random: inout SeededGenerator, flipOnly: Bool) throws -> String {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0 != "LOCK" }.sorted()
        let name = names[random.below(names.count)]
        let path = directory + "/" + name
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let description: String
        switch bytes.isEmpty ? 3 : flipOnly ? 0 : random.below(4) {
        case 0:
            let offset = random.below(bytes.count)
            bytes[offset] ^= UInt8(1 + random.below(255))
            description = "a flipped byte at \(offset) of \(name)"
        case 1:
            let length = random.below(bytes.count)
            bytes.removeSubrange(length...)
            description = "\(name) truncated to \(length) bytes"
        case 2:
            let offset = random.below(bytes.count)
            let count = min(1 + random.below(64), bytes.count - offset)
            bytes.removeSubrange(offset..<(offset + count))
            description = "\(count) bytes removed at \(offset) of \(name)"
        default:
            try FileManager.default.removeItem(atPath: path)
            return "\(name) deleted"
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return description
    }
}
