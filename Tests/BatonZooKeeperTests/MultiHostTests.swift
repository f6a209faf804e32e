import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Many processes, several sidecars, one ensemble: what a deployment across hosts looks like.
final class MultiHostTests: XCTestCase {
    func sidecar(_ ensemble: ZooKeeperEnsemble, chroot: String, timeoutMilliseconds: Int = 4_000) throws -> TestDaemon {
        try TestDaemon.zooKeeperSidecar(store: "zookeeper://\(ensemble.connectString)\(chroot)",
                                        sessionTimeoutMilliseconds: timeoutMilliseconds, logLevel: "info")
    }

    static var batonPath: String {
        get throws { URL(fileURLWithPath: try TestDaemon.executablePath()).deletingLastPathComponent().appendingPathComponent("baton").path }
    }

    /// 16 `baton run` processes over 3 sidecars on one lock, each appending "start TOKEN" and "end TOKEN"
    /// around a pause to one shared file: the lines must pair up (no overlap) with tokens increasing.
    func testSixteenProcessesOverThreeSidecarsNeverOverlapAndTokensIncrease() throws {
        let ensemble = try ZooKeeperEnsemble(members: 3)
        let sidecars = try (0..<3).map { _ in try sidecar(ensemble, chroot: "/many") }
        let file = sidecars[0].directory + "/shared.log"
        FileManager.default.createFile(atPath: file, contents: nil)
        let script = "echo start $BATON_FENCING_TOKEN >> \(file); sleep 0.02; echo end $BATON_FENCING_TOKEN >> \(file)"
        let processes = try (0..<16).map { index -> Process in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try Self.batonPath)
            process.arguments = ["run", "--socket", sidecars[index % 3].socketPath, "/locks/shared", "--", "sh", "-c", script]
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            return process
        }
        for process in processes {
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0)
        }
        let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 32, lines.joined(separator: "\n"))
        var previous: UInt64 = 0
        for pair in stride(from: 0, to: lines.count - 1, by: 2) {
            let start = lines[pair].split(separator: " "), end = lines[pair + 1].split(separator: " ")
            XCTAssertEqual(start.first, "start", "overlap at line \(pair): \(lines)")
            XCTAssertEqual(end.first, "end", "overlap at line \(pair + 1): \(lines)")
            XCTAssertEqual(start.last, end.last, "two holders at once: \(lines)")
            let token = UInt64(start.last ?? "") ?? 0
            XCTAssertGreaterThan(token, previous, "tokens strictly increase")
            previous = token
        }
    }

    /// A sidecar frozen past its ZooKeeper session timeout: the waiter elsewhere is granted; thawed, the
    /// frozen sidecar tells its holder lost; a resource checking fencing tokens refuses the stale holder.
    func testSidecarFrozenPastItsSessionTimeoutLosesItsHoldsAndTheResourceRefusesTheStaleToken() throws {
        let ensemble = try ZooKeeperEnsemble(members: 3)
        let a = try sidecar(ensemble, chroot: "/frozen", timeoutMilliseconds: 2_000)
        let b = try sidecar(ensemble, chroot: "/frozen", timeoutMilliseconds: 2_000)
        let holder = try a.connect()
        try holder.handshake(clientName: "stale", sessionTimeoutMilliseconds: 60_000)
        guard case .granted(let node, let staleToken) = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/f"))) else {
            return XCTFail("acquire")
        }
        var resource = FencedResource()
        XCTAssertTrue(resource.write(token: staleToken))
        let waiter = try b.connect()
        try waiter.handshake(clientName: "next")
        let acquireID = try waiter.send(.acquire(LockRequest(path: "/locks/f")))

        let frozenAt = Date()
        a.kill(SIGSTOP)
        defer { a.kill(SIGCONT) }
        let reply = try waiter.receiveReply(timeoutSeconds: 30)
        let takeover = Date().timeIntervalSince(frozenAt)
        XCTAssertEqual(reply.requestID, acquireID)
        guard case .success(.granted(_, let token)) = reply.result else { return XCTFail("\(reply.result)") }
        XCTAssertGreaterThan(token, staleToken)
        XCTAssertTrue(resource.write(token: token))
        print("takeover after a sidecar froze (ZooKeeper session timeout 2000 ms): \(Int(takeover * 1_000)) ms")

        a.kill(SIGCONT)
        var events: [Event] = []
        while !events.contains(where: { if case .lockLost = $0 { true } else { false } }) {
            events.append(try holder.nextEvent(timeoutSeconds: 30))
        }
        XCTAssertTrue(events.contains(.lockLost(node: node, token: staleToken, reason: .backendSessionLost)), "\(events)")
        XCTAssertFalse(resource.write(token: staleToken), "the stale holder's write is refused")
    }

    /// A sidecar stopped gracefully closes its ZooKeeper session: its holders' locks pass on at once,
    /// long before the session timeout (30 s here; the wait below is 10 s).
    func testGracefulStopOfASidecarPassesItsLocksOnAtOnce() throws {
        let ensemble = try ZooKeeperEnsemble(members: 3, tickMilliseconds: 2_000)
        let a = try sidecar(ensemble, chroot: "/stop", timeoutMilliseconds: 30_000)
        let b = try sidecar(ensemble, chroot: "/stop", timeoutMilliseconds: 30_000)
        let holder = try a.connect()
        try holder.handshake()
        guard case .granted = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/g"))) else { return XCTFail("acquire") }
        let waiter = try b.connect()
        try waiter.handshake()
        let acquireID = try waiter.send(.acquire(LockRequest(path: "/locks/g")))
        XCTAssertFalse(waiter.isReadable(timeoutSeconds: 0.2))
        XCTAssertEqual(a.stop(), .exited(0))
        let reply = try waiter.receiveReply(timeoutSeconds: 10)
        XCTAssertEqual(reply.requestID, acquireID)
        guard case .success(.granted) = reply.result else { return XCTFail("\(reply.result)") }
    }

    /// Takeover across hosts when a holding client is SIGKILLed (its sidecar deletes its node at once).
    func testClientKilledOnOneSidecarHandsTheLockToAWaiterOnAnother() throws {
        let ensemble = try ZooKeeperEnsemble(members: 3)
        let a = try sidecar(ensemble, chroot: "/kill"), b = try sidecar(ensemble, chroot: "/kill")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.batonPath)
        // A SIGKILLed baton cannot stop its command: it is short, and the test does not wait for it
        // (Foundation sees baton's exit only once every inheritor of its pipe has gone).
        process.arguments = ["run", "--socket", a.socketPath, "/locks/k", "--", "sleep", "5"]
        try process.run()
        let waiter = try b.connect()
        try waiter.handshake()
        let observer = try a.connect()
        try observer.handshake()
        let deadline = Date().addingTimeInterval(20)
        while true {
            // noNode until baton run's acquire creates the lock node (PROTOCOL.md §12.6).
            if case .success(.lockEntries(let entries)) = try observer.call(.inspect(path: "/locks/k")).result,
               entries.contains(where: { $0.position == .holder }) { break }
            guard Date() < deadline else { return XCTFail("baton run never held the lock") }
            usleep(20_000)
        }
        let acquireID = try waiter.send(.acquire(LockRequest(path: "/locks/k")))
        XCTAssertFalse(waiter.isReadable(timeoutSeconds: 0.2))
        let killedAt = Date()
        kill(process.processIdentifier, SIGKILL)
        let reply = try waiter.receiveReply(timeoutSeconds: 10)
        let takeover = Date().timeIntervalSince(killedAt)
        XCTAssertEqual(reply.requestID, acquireID)
        guard case .success(.granted) = reply.result else { return XCTFail("\(reply.result)") }
        print("takeover across sidecars after a client's SIGKILL: \(String(format: "%.1f", takeover * 1_000)) ms")
    }

    /// `checkToken` and `inspect` answer from ZooKeeper, so any sidecar knows a holder on another one:
    /// a resource may ask the sidecar next to it, wherever the holder is.
    func testCheckTokenAndInspectAnswerForHoldersOnOtherSidecars() throws {
        let ensemble = try ZooKeeperEnsemble(members: 3)
        let a = try sidecar(ensemble, chroot: "/ask"), b = try sidecar(ensemble, chroot: "/ask")
        let holder = try a.connect()
        try holder.handshake(clientName: "holder-on-a")
        guard case .granted(let node, let token) = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/q"))) else {
            return XCTFail("acquire")
        }
        let asker = try b.connect()
        try asker.handshake(clientName: "asker-on-b")
        XCTAssertEqual(try asker.callSuccessfully(.checkToken(path: "/locks/q", token: token)), .tokenStatus(current: true))
        XCTAssertEqual(try asker.callSuccessfully(.checkToken(path: "/locks/q", token: token + 1)), .tokenStatus(current: false))
        XCTAssertEqual(try asker.callSuccessfully(.checkToken(path: "/locks/none", token: token)), .tokenStatus(current: false))

        // A waiter on b: b lists a's holder first, then its own waiter; a lists both too.
        let waiter = try b.connect()
        try waiter.handshake(clientName: "waiter-on-b")
        let acquireID = try waiter.send(.acquire(LockRequest(path: "/locks/q")))
        var entries: [LockEntry] = []
        let deadline = Date().addingTimeInterval(10)
        while entries.count < 2 {
            guard Date() < deadline else { return XCTFail("the waiter never showed: \(entries)") }
            guard case .lockEntries(let listed) = try asker.callSuccessfully(.inspect(path: "/locks/q")) else { return XCTFail("inspect") }
            entries = listed
        }
        XCTAssertEqual(entries.map(\.position), [.holder, .waiter])
        XCTAssertEqual(entries[0].node, node)
        XCTAssertEqual(entries[0].token, token)
        XCTAssertEqual(entries[0].sessionID, 0, "another sidecar's session is not named")
        XCTAssertEqual(entries[1].clientName, "waiter-on-b", "b's own waiter carries what b knows of it")
        XCTAssertGreaterThan(entries[1].token, token)
        guard case .lockEntries(let fromA) = try holder.callSuccessfully(.inspect(path: "/locks/q")) else { return XCTFail("inspect") }
        XCTAssertEqual(fromA.map(\.node), entries.map(\.node))
        XCTAssertEqual(fromA.map(\.token), entries.map(\.token))
        XCTAssertEqual(fromA.first?.clientName, "holder-on-a")
        guard case .failure(let missing) = try asker.call(.inspect(path: "/locks/none")).result else { return XCTFail("inspect of no lock") }
        XCTAssertEqual(missing.code, .noNode)

        // Released on a: the old token is no longer current anywhere, the waiter's is, from a as well.
        XCTAssertEqual(try holder.callSuccessfully(.release(node: node, token: token)), .empty)
        let reply = try waiter.receiveReply(timeoutSeconds: 10)
        XCTAssertEqual(reply.requestID, acquireID)
        guard case .success(.granted(_, let next)) = reply.result else { return XCTFail("\(reply.result)") }
        XCTAssertEqual(try asker.callSuccessfully(.checkToken(path: "/locks/q", token: token)), .tokenStatus(current: false))
        XCTAssertEqual(try holder.callSuccessfully(.checkToken(path: "/locks/q", token: next)), .tokenStatus(current: true))
    }
}

/// A resource that remembers the highest fencing token it has seen and refuses older ones.
struct FencedResource {
    private(set) var highest: UInt64 = 0
    mutating func write(token: UInt64) -> Bool {
        guard token >= highest else { return false }
        highest = token
        return true
    }
}
