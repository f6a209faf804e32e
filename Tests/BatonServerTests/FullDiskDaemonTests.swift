import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest

/// A full disk (issue 8, item 6), for real: batond's data directory on a small tmpfs (root only),
/// filled up. Writes are refused with `storageFull`, the write that hit the full disk is held, not
/// acknowledged; reads, pings and locks go on; freeing space lets the held reply out and writes in
/// again, and nothing acknowledged is lost across a restart.
final class FullDiskDaemonTests: XCTestCase {
    private var daemon: TestDaemon?
    private var mountPoint: String?

    override func tearDown() {
        TestDaemon.printLogs([daemon].compactMap { $0 }, failures: testRun?.totalFailureCount ?? 0)
        daemon?.stop()
        if let mountPoint { _ = try? run("/bin/umount", [mountPoint]) }
        super.tearDown()
    }

    @discardableResult
    private func run(_ tool: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Writes zeros to `path` until the file system refuses.
    private func fill(_ path: String) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        precondition(descriptor >= 0)
        defer { close(descriptor) }
        let chunk = [UInt8](repeating: 0, count: 4_096)
        while chunk.withUnsafeBytes({ write(descriptor, $0.baseAddress, $0.count) }) > 0 {}
    }

    private func waitForLog(_ daemon: TestDaemon, _ text: String) throws {
        for _ in 0..<3_000 where !daemon.standardError.contains(text) { usleep(10_000) }
        XCTAssertTrue(daemon.standardError.contains(text), "batond should log \(text)")
    }

    func testAFullDiskRefusesWritesKeepsReadsAndLocksAndRecoversWhenSpaceIsFreed() throws {
        try fullDisk(fsync: "batch")
    }

    /// With `always` the append itself fails, in the middle of routing the engine's outputs.
    func testAFullDiskUnderFsyncAlways() throws {
        try fullDisk(fsync: "always")
    }

    func testAFullDiskUnderFsyncNone() throws {
        try fullDisk(fsync: "none")
    }

    /// Stopping while the disk is still full: the held reply is never sent (it was never
    /// durable), every client gets the goodbye, batond exits 1, and a restart once space is back
    /// has everything acknowledged.
    func testShutdownWhileTheDiskIsFullSaysGoodbyeAndLosesNothingAcknowledged() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a tmpfs needs root (CI runs as root)") }
        let daemon = try mountedDaemon(fsync: "batch")
        let writer = try daemon.connect()
        try writer.handshake(clientName: "writer")
        var lastToken: UInt64 = 0
        for index in 0..<20 {
            _ = try writer.callSuccessfully(.create(path: "/keep\(index)", data: Array("kept \(index)".utf8), mode: .persistent))
            guard case .granted(let node, let token) = try writer.callSuccessfully(.acquire(LockRequest(path: "/locks/l"))) else {
                return XCTFail("grant")
            }
            lastToken = token
            _ = try writer.callSuccessfully(.release(node: node, token: token))
        }
        let idle = try daemon.connect()
        try idle.handshake(clientName: "idle")
        let ballast = daemon.dataDirectory + "/ballast"
        fill(ballast)
        let heldID = try writer.send(.create(path: "/big", data: [UInt8](repeating: 7, count: 600_000), mode: .persistent))
        try waitForLog(daemon, "write-ahead log write failed")

        daemon.kill(SIGTERM)
        XCTAssertEqual(daemon.waitForExit(timeoutSeconds: 20), .exited(1), "unacknowledged writes were dropped: exit 1")
        for (name, connection) in [("writer", writer), ("idle", idle)] {
            let replies = try connection.readUntilClosed().compactMap { message -> Reply? in
                if case .reply(let reply) = message { return reply }
                return nil
            }
            XCTAssertFalse(replies.contains { $0.requestID == heldID }, "\(name): the held reply is never sent")
            guard case .failure(let error)? = replies.last?.result else { return XCTFail("\(name): no goodbye: \(replies)") }
            XCTAssertEqual(error.code, .shuttingDown, name)
        }

        try FileManager.default.removeItem(atPath: ballast)
        try daemon.start()
        let reader = try daemon.connect()
        try reader.handshake()
        for index in 0..<20 {
            guard case .data(_, let data) = try reader.callSuccessfully(.get(path: "/keep\(index)", watch: false)) else { return XCTFail("keep") }
            XCTAssertEqual(data, Array("kept \(index)".utf8))
        }
        guard case .granted(_, let token) = try reader.callSuccessfully(.acquire(LockRequest(path: "/locks/l"))) else { return XCTFail("grant") }
        XCTAssertGreaterThan(token, lastToken)
        reader.close()
    }

    /// A daemon whose data directory is a 4 MiB tmpfs of its own.
    private func mountedDaemon(fsync: String, arguments: [String] = []) throws -> TestDaemon {
        let daemon = try TestDaemon(TestDaemon.Options(arguments: ["--fsync", fsync] + arguments))
        self.daemon = daemon
        XCTAssertNotNil(daemon.stop())
        try FileManager.default.removeItem(atPath: daemon.dataDirectory)
        try FileManager.default.createDirectory(atPath: daemon.dataDirectory, withIntermediateDirectories: false)
        guard try run("/bin/mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", daemon.dataDirectory]) == 0 else {
            throw XCTSkip("cannot mount a tmpfs here")
        }
        mountPoint = daemon.dataDirectory
        try daemon.start()
        return daemon
    }

    private func fullDisk(fsync: String) throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a tmpfs needs root (CI runs as root)") }
        let metricsPort = try TestDaemon.freeLoopbackPort()
        let daemon = try mountedDaemon(fsync: fsync, arguments: ["--metrics", "127.0.0.1:\(metricsPort)"])
        XCTAssertEqual(try HTTPClient.get(port: metricsPort, path: "/readyz").status, 200)

        let writer = try daemon.connect()
        try writer.handshake(clientName: "writer")
        for index in 0..<20 {
            _ = try writer.callSuccessfully(.create(path: "/keep\(index)", data: Array("kept \(index)".utf8), mode: .persistent))
        }
        let holder = try daemon.connect()
        try holder.handshake(clientName: "holder")
        guard case .granted(let heldNode, let heldToken) = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/held"))) else {
            return XCTFail("the first acquire should be granted")
        }

        let ballast = daemon.dataDirectory + "/ballast"
        fill(ballast)
        // This create needs far more than the page left in the segment: it hits the full disk.
        let big = [UInt8](repeating: 0xB1, count: 600_000)
        let heldID = try writer.send(.create(path: "/big", data: big, mode: .persistent))
        try waitForLog(daemon, "write-ahead log write failed")
        XCTAssertFalse(writer.isReadable(timeoutSeconds: 0.2), "the reply of a write that is not durable is held")
        // Not ready while writes are refused; still alive.
        let notReady = try HTTPClient.get(port: metricsPort, path: "/readyz")
        XCTAssertEqual(notReady.status, 503)
        XCTAssertTrue(notReady.body.hasPrefix("not ready: the write-ahead log cannot be written"), notReady.body)
        XCTAssertEqual(try HTTPClient.get(port: metricsPort, path: "/healthz").status, 200)

        let other = try daemon.connect()
        try other.handshake(clientName: "other")
        let refused = try other.call(.create(path: "/refused", data: [1], mode: .persistent))
        guard case .failure(let error) = refused.result else { return XCTFail("a write must be refused: \(refused.result)") }
        XCTAssertEqual(error.code, .storageFull, "\(error)")
        let setRefused = try other.call(.set(path: "/keep3", data: [9], expectedVersion: -1))
        guard case .failure(let setError) = setRefused.result else { return XCTFail("a set must be refused") }
        XCTAssertEqual(setError.code, .storageFull)
        // A new lock path needs its directory created (a logged change): refused, nothing left behind.
        let fresh = try other.call(.acquire(LockRequest(path: "/locks/fresh")))
        guard case .failure(let freshError) = fresh.result else { return XCTFail("a new lock path must be refused: \(fresh.result)") }
        XCTAssertEqual(freshError.code, .storageFull, "\(freshError)")
        XCTAssertEqual(try other.callSuccessfully(.exists(path: "/locks/fresh", watch: false)), .exists(nil))
        // Reads, heartbeats and lock operations on existing state go on.
        _ = try other.callSuccessfully(.ping)
        guard case .data(_, let kept) = try other.callSuccessfully(.get(path: "/keep3", watch: false)) else { return XCTFail("get") }
        XCTAssertEqual(kept, Array("kept 3".utf8), "the refused set changed nothing")
        XCTAssertEqual(try other.callSuccessfully(.checkToken(path: "/locks/held", token: heldToken)), .tokenStatus(current: true))
        let waitingID = try other.send(.acquire(LockRequest(path: "/locks/held")))
        _ = try holder.callSuccessfully(.release(node: heldNode, token: heldToken))
        let granted = try other.receiveReply()
        XCTAssertEqual(granted.requestID, waitingID)
        guard case .success(.granted(_, let nextToken)) = granted.result else { return XCTFail("the waiter gets the lock: \(granted.result)") }
        XCTAssertGreaterThan(nextToken, heldToken)

        // Space comes back: the held reply goes out by itself and writes are accepted again.
        try FileManager.default.removeItem(atPath: ballast)
        let heldReply = try writer.receiveReply(timeoutSeconds: 30)
        XCTAssertEqual(heldReply.requestID, heldID)
        guard case .success(.created(let path, _)) = heldReply.result else { return XCTFail("\(heldReply.result)") }
        XCTAssertEqual(path, "/big")
        XCTAssertEqual(try HTTPClient.get(port: metricsPort, path: "/readyz").status, 200, "ready again once the log is written")
        _ = try other.callSuccessfully(.create(path: "/after", data: [2], mode: .persistent))

        // Nothing acknowledged is lost across a restart.
        writer.close()
        other.close()
        holder.close()
        XCTAssertNotNil(daemon.stop())
        try daemon.start()
        let reader = try daemon.connect()
        try reader.handshake()
        guard case .data(_, let bigData) = try reader.callSuccessfully(.get(path: "/big", watch: false)) else { return XCTFail("/big") }
        XCTAssertEqual(bigData, big)
        XCTAssertNotEqual(try reader.callSuccessfully(.exists(path: "/after", watch: false)), .exists(nil))
        XCTAssertEqual(try reader.callSuccessfully(.exists(path: "/refused", watch: false)), .exists(nil))
        for index in 0..<20 {
            guard case .data(_, let data) = try reader.callSuccessfully(.get(path: "/keep\(index)", watch: false)) else { return XCTFail("keep") }
            XCTAssertEqual(data, Array("kept \(index)".utf8))
        }
        reader.close()
    }
}
