import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Crash tests against the real daemon (issue 4): four clients write (creates, sequential creates,
/// sets, deletes, multis, pipelined bursts) and take locks, `batond` is killed with SIGKILL at a
/// random moment (one round in ten: SIGTERM), restarted on the same data directory, and what it
/// recovered is checked against what it acknowledged: every acknowledged write is there, a write in
/// flight is there whole or not at all, and zxids, fencing tokens and sequence numbers only go up.
///
/// `BATON_CRASH_ROUNDS` sets the number of rounds (default 60); `BATON_CRASH_SEED` repeats a run's
/// choices (operations, kill moments, policies; thread timing still varies).
final class CrashTests: XCTestCase {
    private var daemon: TestDaemon?

    override func tearDown() {
        if let daemon, let run = testRun, run.failureCount + run.unexpectedExceptionCount > 0 {
            let lines = daemon.standardError.split(separator: "\n", omittingEmptySubsequences: false)
            print("--- batond log (\(daemon.directory)), last 150 lines:\n" + lines.suffix(150).joined(separator: "\n"))
        }
        daemon = nil
    }

    static let clientCount = 4

    /// What one round runs with.
    struct RoundPlan: CustomStringConvertible {
        var fsync: String
        /// `--snapshot-every-records`: small, so snapshots are written during the load and the next
        /// recovery reads a snapshot plus the log after it. Nil: the default (none during the test).
        var snapshotEveryRecords: Int?
        var killDelayMicroseconds: UInt32
        /// Every client mostly takes locks (else only the last one does), so that the kill often
        /// comes right after grants, whose zxids nothing logs: see `CrashClient.prepareRound`.
        var locksMostly: Bool
        /// SIGTERM instead of SIGKILL: a graceful stop under load keeps every acknowledged write too.
        var graceful: Bool

        /// Mostly `always`; every sixth round `batch`, every sixth `none` (kill -9 must lose nothing
        /// acknowledged under any policy: replies wait for the write(2) of their records). Every
        /// third round snapshots often. One kill in ten comes within 20 ms of the start. Every fourth
        /// round mostly takes locks. Every tenth round stops with SIGTERM instead.
        init(round: Int, seed: UInt64) {
            var random = SeededGenerator.derived(seed, 1_000_000, UInt64(round))
            fsync = round % 6 == 4 ? "batch" : round % 6 == 5 ? "none" : "always"
            snapshotEveryRecords = round % 3 == 1 ? 8 + Int(random.next() % 24) : nil
            locksMostly = round % 4 == 2
            graceful = round % 10 == 7
            killDelayMicroseconds = random.next() % 10 == 0 ? UInt32(random.next() % 20_000) : 20_000 + UInt32(random.next() % 300_000)
        }

        var arguments: [String] {
            ["--fsync", fsync] + (snapshotEveryRecords.map { ["--snapshot-every-records", "\($0)"] } ?? [])
        }

        var description: String {
            "fsync=\(fsync) snapshot-every=\(snapshotEveryRecords.map(String.init) ?? "default")\(locksMostly ? " locks-mostly" : "") "
                + "\(graceful ? "SIGTERM" : "kill") after \(killDelayMicroseconds / 1_000) ms"
        }
    }

    /// What every round so far has shown, for the checks of the next.
    struct History {
        /// Highest zxid seen anywhere (replies, tokens, stats read back): every later zxid is above it.
        var transactionFloor: UInt64 = 0
        /// Every token granted, per lock (must never repeat).
        var tokens: [String: Set<UInt64>] = [:]
        /// Creation zxid of each lock directory at the start of the current round (nil: absent).
        var lockDirectoryAtStart: [String: UInt64] = [:]
        /// Highest waiter sequence granted in the lock directory's current incarnation, when known.
        var lockSequenceSeen: [String: UInt64] = [:]
        var acknowledged = 0
        var grants = 0
        var inFlightLanded = 0
        var inFlightLost = 0
    }

    func testAcknowledgedChangesSurviveRepeatedKill9UnderLoad() throws {
        let environment = ProcessInfo.processInfo.environment
        let rounds = max(1, environment["BATON_CRASH_ROUNDS"].flatMap { Int($0) } ?? 60)
        let seed = environment["BATON_CRASH_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)
        print("CrashTests: seed \(seed), \(rounds) rounds (repeat with BATON_CRASH_SEED=\(seed) BATON_CRASH_ROUNDS=\(rounds))")

        var options = TestDaemon.Options(arguments: RoundPlan(round: 0, seed: seed).arguments)
        options.logLevel = "info"
        let daemon = try TestDaemon(options)
        self.daemon = daemon
        let clients = (0..<CrashTests.clientCount).map(CrashClient.init)
        var history = History()
        try createSubtrees(daemon, clients, &history)

        var previous: (plan: RoundPlan, acknowledged: Int, grants: [CrashGrant])?
        for round in 0...rounds {
            if let previous {
                // Restart after the kill of the round before (with this round's arguments) and check it.
                if round < rounds { daemon.options.arguments = RoundPlan(round: round, seed: seed).arguments }
                let cutsBefore = logCuts(daemon)
                let landedBefore = history.inFlightLanded
                try daemon.start()
                try verifyRecovery(daemon, clients, &history, afterRound: round - 1, grants: previous.grants)
                print("CrashTests: round \(round - 1) \(previous.plan): \(previous.acknowledged) writes and "
                      + "\(previous.grants.count) grants acknowledged; after the restart \(history.inFlightLanded - landedBefore) "
                      + "in-flight writes had landed" + (logCuts(daemon) > cutsBefore ? "; a torn log tail was cut" : ""))
            } else {
                try recordLockDirectories(daemon, &history)
            }
            if let run = testRun, run.failureCount > 0 { return }
            guard round < rounds else { break }

            let plan = RoundPlan(round: round, seed: seed)
            let (acknowledged, grants) = try runLoadAndKill(daemon, clients, plan, round: round, seed: seed, &history)
            previous = (plan, acknowledged, grants)
            if let run = testRun, run.failureCount > 0 { return }
        }

        // After the last kill's recovery, a graceful restart: nothing may change across it.
        let settled = clients.map(\.model)
        XCTAssertEqual(daemon.stop(), .exited(0))
        try daemon.start()
        try verifyRecovery(daemon, clients, &history, afterRound: rounds, grants: [])
        XCTAssertEqual(clients.map(\.model), settled, "a graceful restart changed the namespace")

        let files = (try? FileManager.default.contentsOfDirectory(atPath: daemon.dataDirectory)) ?? []
        let segments = files.filter { $0.hasPrefix("wal-") }.sorted()
        print("CrashTests: data directory at the end: \(segments.count) log segments (\(segments.first ?? "none") to "
              + "\(segments.last ?? "none")), \(files.filter { $0.hasSuffix(".snap") }.count) snapshots")
        let graceful = (0..<rounds).filter { RoundPlan(round: $0, seed: seed).graceful }.count
        print("CrashTests: \(rounds - graceful) kills and \(graceful) SIGTERMs; \(history.acknowledged) writes and \(history.grants) grants acknowledged; "
              + "in-flight writes: \(history.inFlightLanded) landed, \(history.inFlightLost) did not; "
              + "\(logCuts(daemon)) torn tails cut; \(recoveriesFromSnapshot(daemon)) recoveries from a snapshot")
        if rounds >= 6 {
            XCTAssertGreaterThan(recoveriesFromSnapshot(daemon), 0, "no restart recovered from a snapshot: the test did not exercise snapshot + log")
        }
    }

    // MARK: Rounds

    private func createSubtrees(_ daemon: TestDaemon, _ clients: [CrashClient], _ history: inout History) throws {
        let connection = try daemon.connect()
        defer { connection.close() }
        try connection.handshake()
        for path in ["/crash", CrashLock.parent] + clients.flatMap({ [$0.root, $0.sequenceParent] }) {
            guard case .created(_, let stat) = try connection.callSuccessfully(.create(path: path, data: [], mode: .persistent)) else {
                throw TestSupportError.unexpected("create \(path) answered something else")
            }
            history.transactionFloor = max(history.transactionFloor, stat.createdTransaction)
        }
    }

    /// Starts the clients, kills the daemon after the plan's delay, waits for every client to stop,
    /// then checks the grants of the round against each other and the rounds before.
    private func runLoadAndKill(_ daemon: TestDaemon, _ clients: [CrashClient], _ plan: RoundPlan, round: Int, seed: UInt64,
                                _ history: inout History) throws -> (acknowledged: Int, grants: [CrashGrant]) {
        let killSwitch = CrashKillSwitch()
        let finished = DispatchSemaphore(value: 0)
        let socketPath = daemon.socketPath
        for client in clients {
            let locksMostly = plan.locksMostly || client.index == clients.count - 1
            client.prepareRound(round, transactionFloor: history.transactionFloor, lockCyclePercent: locksMostly ? 85 : 14)
            let random = SeededGenerator.derived(seed, UInt64(round), UInt64(client.index))
            Thread {
                client.run(socketPath: socketPath, random: random, killSwitch: killSwitch)
                finished.signal()
            }.start()
        }
        usleep(plan.killDelayMicroseconds)
        killSwitch.kill()
        daemon.kill(plan.graceful ? SIGTERM : SIGKILL)
        let termination = daemon.waitForExit(timeoutSeconds: 30)
        XCTAssertEqual(termination, plan.graceful ? .exited(0) : .signaled(SIGKILL), "round \(round): how batond ended")
        for _ in clients {
            guard finished.wait(timeout: .now() + 60) == .success else {
                throw TestSupportError.timedOut("round \(round): a client did not stop after the kill")
            }
        }

        var acknowledged = 0
        var grants: [CrashGrant] = []
        for client in clients {
            for failure in client.failures { XCTFail(failure) }
            acknowledged += client.acknowledgedCount
            grants += client.grants
            history.transactionFloor = max(history.transactionFloor, client.lastTransaction)
            for grant in client.grants {
                let (inserted, _) = history.tokens[grant.lockPath, default: []].insert(grant.token)
                XCTAssertTrue(inserted, "round \(round): token \(grant.token) of \(grant.lockPath) granted twice")
            }
        }
        history.acknowledged += acknowledged
        history.grants += grants.count
        return (acknowledged, grants)
    }

    // MARK: Verification

    /// After a restart: each client's subtree is exactly what was acknowledged, or that plus the
    /// whole of the one write whose reply never came; lock directories hold no waiters; waiter
    /// sequences kept increasing in every lock directory that lived through the round.
    private func verifyRecovery(_ daemon: TestDaemon, _ clients: [CrashClient], _ history: inout History, afterRound round: Int,
                                grants lockGrants: [CrashGrant]) throws {
        let connection = try daemon.connect()
        defer { connection.close() }
        try connection.handshake()
        let reader = TreeReader(connection: connection)

        let roots = try reader.children("/crash")
        XCTAssertEqual(Set(roots), Set(clients.map { "c\($0.index)" }), "after round \(round): children of /crash")
        for client in clients {
            let actual = try reader.tree(client.root)
            history.transactionFloor = max(history.transactionFloor, reader.transactionMax)
            switch CrashTests.settle(acknowledged: client.model, inFlight: client.inFlight, actual: actual, sequenceParent: client.sequenceParent) {
            case .landed(let count):
                history.inFlightLanded += count
                history.inFlightLost += client.inFlight.count - count
            case .mismatch(let explanation):
                XCTFail("after round \(round), client \(client.index): \(explanation)")
            }
            client.settle(model: actual)
            let sequences = actual.nodes.keys.filter { $0.hasPrefix(client.sequenceParent + "/") }.compactMap(crashSequenceNumber(of:))
            if let highest = sequences.max() { client.sequenceSeen = max(client.sequenceSeen ?? 0, highest) }
        }
        for failure in reader.failures { XCTFail("after round \(round): \(failure)") }

        // Lock directories: containers, empty (waiters were ephemeral); waiter sequences went up in each
        // directory that was there, the same one, at both ends of the round.
        let names = try reader.children(CrashLock.parent)
        let known = Set(CrashLock.allCases.map(\.path))
        for name in names where !known.contains(CrashLock.parent + "/" + name) {
            XCTFail("after round \(round): unexpected \(CrashLock.parent)/\(name)")
        }
        for lock in CrashLock.allCases {
            let stat = try reader.stat(lock.path)
            if let stat {
                XCTAssertEqual(stat.kind, .container, "\(lock.path) is a container")
                XCTAssertEqual(stat.childrenCount, 0, "after round \(round): waiters of \(lock.path) survived the restart")
                history.transactionFloor = max(history.transactionFloor, stat.createdTransaction, stat.modifiedTransaction, stat.childrenTransaction)
            }
            let sequences = lockGrants.filter { $0.lockPath == lock.path }.compactMap { crashSequenceNumber(of: $0.node) }
            if let start = history.lockDirectoryAtStart[lock.path], start == stat?.createdTransaction {
                let before = history.lockSequenceSeen[lock.path]
                if let before {
                    for sequence in sequences where sequence <= before {
                        XCTFail("after round \(round): waiter sequence \(sequence) in \(lock.path) is not above \(before), handed out before")
                    }
                }
                history.lockSequenceSeen[lock.path] = [before, sequences.max()].compactMap { $0 }.max()
            } else {
                // Created (or swept and created again) during the round: which grants were in which
                // incarnation is unknown, so start counting afresh.
                history.lockSequenceSeen[lock.path] = nil
            }
            history.lockDirectoryAtStart[lock.path] = stat?.createdTransaction
        }
    }

    private func recordLockDirectories(_ daemon: TestDaemon, _ history: inout History) throws {
        let connection = try daemon.connect()
        defer { connection.close() }
        try connection.handshake()
        let reader = TreeReader(connection: connection)
        for lock in CrashLock.allCases { history.lockDirectoryAtStart[lock.path] = try reader.stat(lock.path)?.createdTransaction }
    }

    enum Settlement: Equatable {
        /// The acknowledged state plus this many of the writes in flight (0: none landed).
        case landed(Int)
        case mismatch(String)
    }

    /// Whether `actual` is the acknowledged state plus a prefix of the writes in flight, each whole
    /// (a write that fails changes nothing; the sequential creates of those that succeed are matched,
    /// in order, to the new sequential children).
    static func settle(acknowledged: CrashTree, inFlight: [CrashOperation], actual: CrashTree, sequenceParent: String) -> Settlement {
        let newSequential = actual.nodes.keys.filter { acknowledged.nodes[$0] == nil && $0.hasPrefix(sequenceParent + "/") }.sorted()
        var candidate = acknowledged
        var sequentialUsed = 0
        var closest = candidate
        for count in 0...inFlight.count {
            if candidate == actual { return .landed(count) }
            guard count < inFlight.count else { break }
            let operation = inFlight[count]
            guard candidate.predictedFailure(of: operation) == nil else { continue }  // fails whole: changes nothing
            var names: [Int: String] = [:]
            for (index, change) in operation.changes.enumerated() {
                guard case .createSequential = change else { continue }
                guard sequentialUsed < newSequential.count else { break }
                names[index] = newSequential[sequentialUsed]
                sequentialUsed += 1
            }
            if candidate.apply(operation, sequentialPath: { _, index in names[index] }) != nil { break }  // its nodes are not all there
            closest = candidate
        }
        let written = inFlight.isEmpty ? "no write was in flight" : "writes in flight: " + inFlight.map(\.description).joined(separator: "; ")
        return .mismatch("neither the acknowledged state nor that plus some whole writes in flight (\(written)); "
                         + "against the acknowledged state:\n" + actual.difference(from: acknowledged)
                         + (closest == acknowledged ? "" : "\nagainst the acknowledged state plus the writes that fit:\n" + actual.difference(from: closest)))
    }

    // MARK: Log

    private func logCuts(_ daemon: TestDaemon) -> Int {
        daemon.standardError.components(separatedBy: "write-ahead log cut").count - 1
    }

    private func recoveriesFromSnapshot(_ daemon: TestDaemon) -> Int {
        daemon.standardError.split(separator: "\n").filter {
            $0.contains("namespace recovered") && $0.range(of: "snapshot_lsn=[0-9]+", options: .regularExpression) != nil
        }.count
    }
}

/// Reads nodes back after a restart, checking what every persistent node's stat must say.
private final class TreeReader {
    let connection: RawConnection
    private(set) var failures: [String] = []
    /// Highest zxid in any stat read.
    private(set) var transactionMax: UInt64 = 0

    init(connection: RawConnection) { self.connection = connection }

    func children(_ path: String) throws -> [String] {
        guard case .children(_, let names, _) = try connection.callSuccessfully(.children(path: path, watch: false)) else {
            throw TestSupportError.unexpected("children \(path) answered something else")
        }
        return names
    }

    func stat(_ path: String) throws -> Stat? {
        let reply = try connection.call(.exists(path: path, watch: false))
        guard case .success(.exists(let stat)) = reply.result else {
            throw TestSupportError.unexpected("exists \(path) answered \(reply.result)")
        }
        return stat
    }

    /// `root`, its children, and the children of `root/seq`.
    func tree(_ root: String) throws -> CrashTree {
        var nodes: [String: CrashNodeValue] = [:]
        func read(_ path: String) throws -> Int {
            guard case .data(let stat, let data) = try connection.callSuccessfully(.get(path: path, watch: false)) else {
                throw TestSupportError.unexpected("get \(path) answered something else")
            }
            if stat.kind != .persistent || stat.ephemeralOwner != 0 || stat.dataLength != UInt32(data.count) {
                failures.append("\(path): stat \(stat) does not fit a persistent node with \(data.count) bytes")
            }
            transactionMax = max(transactionMax, stat.createdTransaction, stat.modifiedTransaction, stat.childrenTransaction)
            nodes[path] = CrashNodeValue(data: data, version: stat.version)
            return Int(stat.childrenCount)
        }
        let count = try read(root)
        let names = try children(root)
        if names.count != count { failures.append("\(root): childrenCount \(count) but \(names.count) children") }
        for name in names {
            let childCount = try read(root + "/" + name)
            if name == "seq" {
                let sequential = try children(root + "/seq")
                if sequential.count != childCount { failures.append("\(root)/seq: childrenCount \(childCount) but \(sequential.count) children") }
                for child in sequential { _ = try read(root + "/seq/" + child) }
            }
        }
        return CrashTree(nodes: nodes)
    }
}
