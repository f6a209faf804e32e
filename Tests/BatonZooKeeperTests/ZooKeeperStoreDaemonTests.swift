import BatonProtocol
import BatonRevision
import BatonTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `batond --store zookeeper://...`: real sidecars on a real 3-member ensemble, clients on their sockets.
final class ZooKeeperStoreDaemonTests: XCTestCase {
    /// One ensemble for the class; each test uses its own chroot.
    static let shared = SharedEnsemble()
    var ensemble: ZooKeeperEnsemble { get throws { try Self.shared.ensemble() } }

    override class func tearDown() {
        shared.stop()
        super.tearDown()
    }

    /// A sidecar on the ensemble, once its ZooKeeper session is established.
    func sidecar(chroot: String, extra: [String] = []) throws -> TestDaemon {
        try TestDaemon.zooKeeperSidecar(store: "zookeeper://\(try ensemble.connectString)\(chroot)",
                                        sessionTimeoutMilliseconds: 4_000, extra: extra)
    }

    func client(_ daemon: TestDaemon, _ name: String) throws -> RawConnection {
        let connection = try daemon.connect()
        try connection.handshake(clientName: name)
        return connection
    }

    /// Whether `path` exists on `connection`'s sidecar within `timeoutSeconds` (asked every 10 ms).
    func becomesVisible(_ path: String, on connection: RawConnection, timeoutSeconds: Double = 5) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        repeat {
            if case .exists(_?) = try connection.callSuccessfully(.exists(path: path, watch: false)) { return true }
            usleep(10_000)
        } while Date() < deadline
        return false
    }

    func testHelloNamesTheStoreAndBadStoresAreRefused() throws {
        let daemon = try sidecar(chroot: "/d0")
        let connection = try daemon.connect()
        guard case .hello(_, let serverName, _) = try connection.callSuccessfully(.hello(version: ProtocolVersion.current, clientName: "t")) else {
            return XCTFail("hello")
        }
        XCTAssertEqual(serverName, "\(BatonRevision.serverName) store=zookeeper://\(try ensemble.connectString)/d0")

        for (arguments, message) in [(["--store", "zk://h:1"], "--store must be"),
                                     (["--store", "zookeeper://h:1", "--data-dir", "/tmp/x"], "do not apply"),
                                     (["--zookeeper-digest-file", "/tmp/x"], "only with --store")] {
            let run = try TestDaemon.runToCompletion(arguments: ["--socket", daemon.directory + "/other.sock"] + arguments)
            XCTAssertEqual(run.termination, .exited(1), arguments.joined(separator: " "))
            XCTAssertTrue(run.standardError.contains(message), run.standardError)
        }
    }

    func testTwoSidecarsShareOneNamespaceWithWatchesAndEphemerals() throws {
        let a = try sidecar(chroot: "/d1"), b = try sidecar(chroot: "/d1")
        let onA = try client(a, "writer"), onB = try client(b, "reader")

        guard case .created(let path, _) = try onA.callSuccessfully(.create(path: "/shared", data: [1], mode: .persistent)) else {
            return XCTFail("create")
        }
        XCTAssertEqual(path, "/shared")
        // B's ZooKeeper session may be on another member, which applies the create a moment later
        // (ZooKeeper's reads are sequentially consistent, not linearizable: PROTOCOL.md §16).
        XCTAssertTrue(try becomesVisible("/shared", on: onB), "a write through sidecar A reaches sidecar B")
        guard case .data(_, let data) = try onB.callSuccessfully(.get(path: "/shared", watch: true)) else { return XCTFail("get") }
        XCTAssertEqual(data, [1], "a write through sidecar A is read through sidecar B")
        _ = try onA.callSuccessfully(.set(path: "/shared", data: [2], expectedVersion: 0))
        XCTAssertEqual(try onB.nextEvent(), .watch(type: .dataChanged, path: "/shared"))
        XCTAssertEqual(try onA.call(.set(path: "/shared", data: [3], expectedVersion: 0)).result.failureCode, .badVersion)

        // A local session's ephemeral: seen from B as ephemeral (owner 0: not one of B's sessions),
        // deleted the moment its client goes, not after ZooKeeper's session timeout.
        let doomed = try client(a, "doomed")
        guard case .created = try doomed.callSuccessfully(.create(path: "/eph", data: [], mode: .ephemeral)) else { return XCTFail("create eph") }
        guard case .exists(let stat?) = try onB.callSuccessfully(.exists(path: "/eph", watch: true)) else { return XCTFail("exists") }
        XCTAssertEqual(stat.kind, .ephemeral)
        XCTAssertEqual(stat.ephemeralOwner, 0)
        guard case .exists(let own?) = try onA.callSuccessfully(.exists(path: "/eph", watch: false)) else { return XCTFail("exists on A") }
        XCTAssertNotEqual(own.ephemeralOwner, 0, "on its own sidecar the owner is the local session")
        doomed.closeAbruptly()
        XCTAssertEqual(try onB.nextEvent(timeoutSeconds: 3), .watch(type: .deleted, path: "/eph"))

        guard case .children(_, let names, _) = try onB.callSuccessfully(.children(path: "/", watch: false)) else { return XCTFail("children") }
        XCTAssertEqual(names, ["shared"])
        guard case .multi(let results) = try onB.callSuccessfully(.multi([.check(path: "/shared", expectedVersion: 1),
                                                                          .create(path: "/m", data: [], mode: .persistent)])) else {
            return XCTFail("multi")
        }
        XCTAssertEqual(results.count, 2)
        let failed = try onB.call(.multi([.create(path: "/m2", data: [], mode: .persistent), .delete(path: "/nope", expectedVersion: -1)]))
        XCTAssertEqual(failed.result.failureCode, .noNode)
        XCTAssertEqual(try onA.call(.exists(path: "/m2", watch: false)).result, .success(.exists(nil)))
        XCTAssertEqual(try onA.call(.check(path: "/shared", expectedVersion: 1)).result, .success(.empty))
        XCTAssertEqual(try onA.call(.get(path: "bad", watch: false)).result.failureCode, .invalidPath)
    }

    func testLocksExcludeAcrossSidecarsAndAKilledClientPassesItsLockOn() throws {
        let a = try sidecar(chroot: "/d2"), b = try sidecar(chroot: "/d2")
        let holder = try client(a, "holder"), waiter = try client(b, "waiter")
        guard case .granted(let node, let firstToken) = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/k"))) else {
            return XCTFail("the first acquire should be granted")
        }
        let acquireID = try waiter.send(.acquire(LockRequest(path: "/locks/k")))
        XCTAssertFalse(waiter.isReadable(timeoutSeconds: 0.3), "sidecar B must not grant while A's client holds")
        XCTAssertEqual(try holder.callSuccessfully(.checkToken(path: "/locks/k", token: firstToken)), .tokenStatus(current: true))

        XCTAssertEqual(try holder.callSuccessfully(.release(node: node, token: firstToken)), .empty)
        let reply = try waiter.receiveReply()
        XCTAssertEqual(reply.requestID, acquireID)
        guard case .success(.granted(_, let secondToken)) = reply.result else { return XCTFail("\(reply.result)") }
        XCTAssertGreaterThan(secondToken, firstToken)

        // The holder on B dies; a waiter on A is granted at once (B deletes its node when the client goes).
        let next = try client(a, "next")
        let nextID = try next.send(.acquire(LockRequest(path: "/locks/k")))
        XCTAssertFalse(next.isReadable(timeoutSeconds: 0.3))
        waiter.closeAbruptly()
        let granted = try next.receiveReply(timeoutSeconds: 3)
        XCTAssertEqual(granted.requestID, nextID)
        guard case .success(.granted(_, let thirdToken)) = granted.result else { return XCTFail("\(granted.result)") }
        XCTAssertGreaterThan(thirdToken, secondToken)
    }

    func testSidecarDeathFreesItsLocksAfterItsZooKeeperSessionTimeout() throws {
        let a = try sidecar(chroot: "/d3"), b = try sidecar(chroot: "/d3")
        let holder = try client(a, "holder")
        guard case .granted = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/s"))) else { return XCTFail("acquire") }
        let waiter = try client(b, "waiter")
        let acquireID = try waiter.send(.acquire(LockRequest(path: "/locks/s")))
        a.kill(SIGKILL)
        _ = a.waitForExit()
        // ZooKeeper expires the dead sidecar's session (4 s) and deletes its ephemerals.
        let reply = try waiter.receiveReply(timeoutSeconds: 30)
        XCTAssertEqual(reply.requestID, acquireID)
        guard case .success(.granted) = reply.result else { return XCTFail("\(reply.result)") }
    }
}

/// Losing ZooKeeper: suspended, then lost; and an ensemble unreachable from the start.
final class ZooKeeperStoreLossTests: XCTestCase {
    func testCutOffSidecarTellsItsHolderSuspendedThenLostAndTheLockPassesOn() throws {
        let ensemble = try ZooKeeperEnsemble(members: 3)
        let leader = try XCTUnwrap(ensemble.leader())
        let cut = ensemble.members.map(\.id).first { $0 != leader }!
        // Sidecar A talks to one follower only; B to the whole ensemble.
        let a = try sidecar("zookeeper://127.0.0.1:\(ensemble.member(cut).clientPort)/loss")
        let b = try sidecar("zookeeper://\(ensemble.connectString)/loss")
        let holder = try a.connect()
        try holder.handshake(clientName: "holder")
        guard case .granted(let node, let token) = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/cut"))) else {
            return XCTFail("acquire")
        }
        let waiter = try b.connect()
        try waiter.handshake(clientName: "waiter")
        let acquireID = try waiter.send(.acquire(LockRequest(path: "/locks/cut")))

        ensemble.signal(cut, SIGSTOP)
        defer { ensemble.signal(cut, SIGCONT) }
        XCTAssertEqual(try holder.nextEvent(timeoutSeconds: 20), .lockSuspended(node: node, token: token))
        XCTAssertEqual(try holder.callSuccessfully(.checkToken(path: "/locks/cut", token: token)), .tokenStatus(current: false),
                       "a suspended hold is not vouched for")
        XCTAssertEqual(try holder.nextEvent(timeoutSeconds: 20), .lockLost(node: node, token: token, reason: .backendSessionLost))
        guard case .sessionExpired = try holder.nextEvent(timeoutSeconds: 5) else { return XCTFail("the local session ends") }

        // The ensemble expires A's session and the waiter on B gets the lock, with a larger token.
        let reply = try waiter.receiveReply(timeoutSeconds: 30)
        XCTAssertEqual(reply.requestID, acquireID)
        guard case .success(.granted(_, let next)) = reply.result else { return XCTFail("\(reply.result)") }
        XCTAssertGreaterThan(next, token)

        // Thawed: A serves again on a new ZooKeeper session.
        ensemble.signal(cut, SIGCONT)
        let again = try a.connect()
        try again.handshake(clientName: "again")
        let deadline = Date().addingTimeInterval(30)
        while true {
            let result = try again.call(.create(path: "/after", data: [], mode: .persistent)).result
            if case .success = result { break }
            XCTAssertEqual(result.failureCode, .storageFailure)
            guard Date() < deadline else { return XCTFail("sidecar A did not serve again: \(a.standardError)") }
            usleep(100_000)
        }
        XCTAssertTrue(a.standardError.contains("every hold is lost"), a.standardError)
    }

    func testAHolderToldSuspendedIsToldResumedWhenTheSidecarReconnectsWithinItsSession() throws {
        let ensemble = try ZooKeeperEnsemble(members: 3)
        let leader = try XCTUnwrap(ensemble.leader())
        // The sidecar knows the two followers only: freezing the one it talks to leaves the leader and
        // a member to move to, so it reconnects well within its session (no election in between).
        let followers = ensemble.members.filter { $0.id != leader }
        let a = try sidecar("zookeeper://\(followers.map { "127.0.0.1:\($0.clientPort)" }.joined(separator: ","))/resume")
        let holder = try a.connect()
        try holder.handshake(clientName: "holder", flags: [.resumedEvents])
        let older = try a.connect() // a version-1 client that does not know lockResumed
        try older.handshake(clientName: "older")
        guard case .granted(let node, let token) = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/resume"))),
              case .granted(let otherNode, let otherToken) = try older.callSuccessfully(.acquire(LockRequest(path: "/locks/older")))
        else { return XCTFail("acquire") }

        let established = try XCTUnwrap(a.standardError.split(separator: "\n").first { $0.contains("ZooKeeper session established") })
        let frozen = try XCTUnwrap(followers.first { established.contains(":\($0.clientPort)") }?.id, String(established))
        ensemble.signal(frozen, SIGSTOP)
        defer { ensemble.signal(frozen, SIGCONT) }
        XCTAssertEqual(try holder.nextEvent(timeoutSeconds: 20), .lockSuspended(node: node, token: token))
        XCTAssertEqual(try older.nextEvent(timeoutSeconds: 20), .lockSuspended(node: otherNode, token: otherToken))
        XCTAssertEqual(try holder.nextEvent(timeoutSeconds: 20), .lockResumed(node: node, token: token))
        XCTAssertEqual(try holder.callSuccessfully(.checkToken(path: "/locks/resume", token: token)), .tokenStatus(current: true))
        // The engine told both sessions at once: had the older one been sent lockResumed, it would come
        // before this reply.
        let ping = try older.send(.ping)
        guard case .reply(let reply) = try older.receive() else { return XCTFail("the older client got an event it does not know") }
        XCTAssertEqual(reply.requestID, ping)
        XCTAssertEqual(try older.callSuccessfully(.checkToken(path: "/locks/older", token: otherToken)), .tokenStatus(current: true))
        XCTAssertTrue(a.standardError.contains("holds resumed"), a.standardError)
        XCTAssertFalse(a.standardError.contains("every hold is lost"), a.standardError)
    }

    func testUnreachableEnsembleGivesNamedErrorsAndALogLine() throws {
        let port = try TestDaemon.freeLoopbackPort()
        var options = TestDaemon.Options(arguments: ["--store", "zookeeper://127.0.0.1:\(port)/x", "--zookeeper-session-timeout-ms", "1000"])
        options.usesDataDirectory = false
        let daemon = try TestDaemon(options)
        let connection = try daemon.connect()
        try connection.handshake()
        let reply = try connection.call(.create(path: "/n", data: [], mode: .persistent), timeoutSeconds: 30)
        XCTAssertEqual(reply.result.failureCode, .storageFailure)
        let acquire = try connection.call(.acquire(LockRequest(path: "/locks/u", waitMilliseconds: 500)), timeoutSeconds: 30)
        XCTAssertNotNil(acquire.result.failureCode)
        let deadline = Date().addingTimeInterval(20)
        while !daemon.standardError.contains("ZooKeeper unreachable") {
            guard Date() < deadline else { return XCTFail(daemon.standardError) }
            usleep(50_000)
        }
    }

    func testBatonRunStopsItsCommandWhenTheHoldIsSuspendedAndPingNamesTheStore() throws {
        let ensemble = try ZooKeeperEnsemble(members: 3)
        let leader = try XCTUnwrap(ensemble.leader())
        let cut = ensemble.members.map(\.id).first { $0 != leader }!
        let store = "zookeeper://127.0.0.1:\(ensemble.member(cut).clientPort)/run"
        let a = try sidecar(store)
        let baton = URL(fileURLWithPath: try TestDaemon.executablePath()).deletingLastPathComponent().appendingPathComponent("baton").path

        let ping = Process()
        ping.executableURL = URL(fileURLWithPath: baton)
        ping.arguments = ["ping", "--socket", a.socketPath]
        let output = Pipe()
        ping.standardOutput = output
        try ping.run()
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        ping.waitUntilExit()
        XCTAssertEqual(ping.terminationStatus, 0)
        XCTAssertEqual(printed, "\(BatonRevision.serverName) store=\(store)\n")

        let run = Process()
        run.executableURL = URL(fileURLWithPath: baton)
        // The command marks that it runs: then baton run holds the grant (inspect over ZooKeeper lists a
        // holder as soon as its node is entitled, which can be before its sidecar has granted it).
        let started = NSTemporaryDirectory() + "baton-run-started-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: started) }
        run.arguments = ["run", "--socket", a.socketPath, "--stop-on-suspended", "--grace", "1", "/locks/r", "--",
                         "/bin/sh", "-c", "touch \(started); exec sleep 600"]
        let errors = Pipe()
        run.standardError = errors
        try run.run()
        defer { if run.isRunning { kill(run.processIdentifier, SIGKILL) } }
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: started) {
            guard Date() < deadline else { return XCTFail("baton run never held the lock") }
            usleep(50_000)
        }
        ensemble.signal(cut, SIGSTOP)
        defer { ensemble.signal(cut, SIGCONT) }
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.waitUntilExit()
        XCTAssertEqual(run.terminationStatus, 74, message)
        XCTAssertTrue(message.contains("lock suspended"), message)
    }

    func sidecar(_ store: String) throws -> TestDaemon {
        try TestDaemon.zooKeeperSidecar(store: store, sessionTimeoutMilliseconds: 3_000)
    }
}
