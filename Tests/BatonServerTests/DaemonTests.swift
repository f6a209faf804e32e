import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest

/// The real `batond`, as a subprocess, over real sockets: transport and lifecycle. (Namespace, lock
/// and session behaviour, on both stores: `NamespaceLockDaemonTests`.)
final class DaemonTests: DaemonTestCase {
    private func startDaemon(_ options: TestDaemon.Options = TestDaemon.Options()) throws -> TestDaemon {
        return kept(try TestDaemon(options))
    }

    // MARK: Misbehaving clients

    func testReaderThatDoesNotReadIsDisconnectedWhileOthersKeepWorking() throws {
        let daemon = try startDaemon(TestDaemon.Options(arguments: ["--write-stall-ms", "500"]))
        let slow = try daemon.connect()
        try slow.handshake()
        // A 1 MiB node: its create is a frame far larger than the server's read buffer.
        _ = try slow.callSuccessfully(.create(path: "/big", data: [UInt8](repeating: 7, count: 1_048_576), mode: .persistent))
        _ = try slow.callSuccessfully(.create(path: "/slow-owner", data: [], mode: .ephemeral))
        let watcher = try daemon.connect()
        try watcher.handshake()
        XCTAssertNotEqual(try watcher.callSuccessfully(.exists(path: "/slow-owner", watch: true)), .exists(nil))

        slow.setReceiveBufferBytes(4_096)
        var batch: [UInt8] = []
        for _ in 0..<40 {  // 40 MiB of replies: it stops reading them, and is dropped after 500 ms
            batch += Codec.encodeRequest(.get(path: "/big", watch: false), requestID: slow.takeRequestID())
        }
        try slow.sendRaw(batch)

        // Dropping the slow reader ended its Unix session: its ephemeral node is gone.
        XCTAssertEqual(try watcher.nextEvent(timeoutSeconds: 30), .watch(type: .deleted, path: "/slow-owner"))
        XCTAssertEqual(try watcher.callSuccessfully(.ping), .empty)
        XCTAssertTrue(daemon.standardError.contains("stopped reading"), "the disconnect is logged")
    }

    func testGarbageBytesGetAnErrorFrameAndCloseOnlyThatConnection() throws {
        let daemon = try startDaemon()
        let bystander = try daemon.connect()
        try bystander.handshake()

        let unknownOpcode = try daemon.connect()
        try unknownOpcode.hello()
        try unknownOpcode.sendRaw([0, 0, 0, 6, 0xEE, 0, 0, 0, 42, 0x99])
        let first = try unknownOpcode.readUntilClosed()
        guard case .reply(let reply)? = first.first, first.count == 1 else { return XCTFail("expected one error frame, got \(first)") }
        XCTAssertEqual(failureCode(reply), .unknownOpcode)
        XCTAssertEqual(reply.requestID, 42)

        let http = try daemon.connect()
        try http.sendRaw(Array("GET / HTTP/1.1\r\nHost: baton\r\n\r\n".utf8))
        let second = try http.readUntilClosed()
        guard case .reply(let httpReply)? = second.first, second.count == 1 else { return XCTFail("expected one error frame, got \(second)") }
        XCTAssertEqual(failureCode(httpReply), .frameTooLarge)

        XCTAssertEqual(try bystander.callSuccessfully(.ping), .empty)
        _ = try bystander.callSuccessfully(.create(path: "/still-fine", data: [], mode: .persistent))
    }

    func testAClosedConnectionIsNotResetUnderAPeerStillWriting() throws {
        // The server answers the bad frame, shuts its side down, and reads on until the peer closes:
        // a socket closed with the peer's bytes unread is answered with a reset, and a peer still
        // writing (a pipelined request, a hello after a TLS handshake the server refused) would get
        // EPIPE before it read the server's last words.
        let daemon = try startDaemon()
        let connection = try daemon.connect()
        try connection.hello()
        try connection.sendRaw([0, 0, 0, 6, 0xEE, 0, 0, 0, 7, 0x99])
        let messages = try connection.readUntilClosed()
        guard case .reply(let reply)? = messages.first, messages.count == 1 else { return XCTFail("expected one error frame, got \(messages)") }
        XCTAssertEqual(failureCode(reply), .unknownOpcode)
        // The server's FIN arrived; it still reads (and drops) what comes, so none of these is reset.
        for _ in 0..<5 {
            XCTAssertNoThrow(try connection.sendRaw(Codec.encodeRequest(.ping, requestID: connection.takeRequestID())))
            usleep(20_000)
        }
    }

    func testOversizedLengthPrefixIsRefusedBeforeAnyBodyArrives() throws {
        let daemon = try startDaemon()
        let connection = try daemon.connect()
        try connection.hello()
        try connection.sendRaw([0xFF, 0xFF, 0xFF, 0xFF])
        let messages = try connection.readUntilClosed()
        guard case .reply(let reply)? = messages.first, messages.count == 1 else { return XCTFail("expected one error frame, got \(messages)") }
        XCTAssertEqual(failureCode(reply), .frameTooLarge)
        XCTAssertEqual(reply.requestID, 0)
        XCTAssertEqual(reply.opcode, .hello)
    }

    func testWrongVersionInHelloIsRefusedAndClosed() throws {
        let daemon = try startDaemon()
        let connection = try daemon.connect()
        try connection.send(.hello(version: 99, clientName: "from-the-future"), requestID: 1)
        let messages = try connection.readUntilClosed()
        guard case .reply(let reply)? = messages.first, messages.count == 1 else { return XCTFail("expected one error frame, got \(messages)") }
        XCTAssertEqual(reply.requestID, 1)
        XCTAssertEqual(failureCode(reply), .unsupportedVersion)
    }

    // MARK: Daemon lifecycle

    func testSIGTERMShutsDownCleanlyAndRemovesTheSocket() throws {
        let daemon = try startDaemon()
        let connection = try daemon.connect()
        try connection.handshake()
        _ = try connection.callSuccessfully(.create(path: "/ephemeral", data: [], mode: .ephemeral))
        daemon.kill(SIGTERM)
        XCTAssertEqual(daemon.waitForExit(timeoutSeconds: 20), .exited(0))
        XCTAssertFalse(FileManager.default.fileExists(atPath: daemon.socketPath))
        let messages = try connection.readUntilClosed()
        guard case .reply(let reply)? = messages.last else { return XCTFail("expected a shuttingDown reply, got \(messages)") }
        XCTAssertEqual(failureCode(reply), .shuttingDown)
        XCTAssertTrue(daemon.standardError.contains("shutting down"))
    }

    func testSocketFileIsPrivateByDefaultAndFollowsSocketMode() throws {
        let daemon = try startDaemon()
        XCTAssertEqual(try permissions(daemon.socketPath), 0o600)
        let shared = try startDaemon(TestDaemon.Options(arguments: ["--socket-mode", "0660"]))
        XCTAssertEqual(try permissions(shared.socketPath), 0o660)
    }

    func testSecondDaemonOnTheSameSocketRefusesToStart() throws {
        let daemon = try startDaemon()
        let (termination, output) = try TestDaemon.runToCompletion(
            arguments: ["--socket", daemon.socketPath, "--data-dir", daemon.directory + "/other"])
        XCTAssertEqual(termination, .exited(1))
        XCTAssertTrue(output.contains("already running"), output)
        let connection = try daemon.connect()
        XCTAssertNoThrow(try connection.handshake(), "the first daemon still serves")
    }

    func testStaleSocketLeftByAKilledDaemonIsReplacedOnRestart() throws {
        let daemon = try startDaemon()
        daemon.kill(SIGKILL)
        XCTAssertEqual(daemon.waitForExit(), .signaled(SIGKILL))
        XCTAssertTrue(FileManager.default.fileExists(atPath: daemon.socketPath), "kill -9 leaves the socket file")
        try daemon.start()
        XCTAssertNoThrow(try daemon.connect().handshake())
    }

    func testSocketPathTooLongForSunPathIsRefused() throws {
        let path = "/tmp/" + String(repeating: "p", count: 110)
        let (termination, output) = try TestDaemon.runToCompletion(arguments: ["--socket", path, "--in-memory"])
        XCTAssertEqual(termination, .exited(1))
        XCTAssertTrue(output.contains("at most \(Endpoint.unixPathBytesMax)"), output)
        XCTAssertEqual(output.split(separator: "\n").count, 1, "one line: \(output)")
    }

    func testBadArgumentsExitWithOneLine() throws {
        for arguments in [["--fsync", "sometimes"], ["--listen", "nowhere"], ["--socket-mode", "9"], ["--no-such-option"]] {
            let (termination, output) = try TestDaemon.runToCompletion(arguments: arguments)
            XCTAssertEqual(termination, .exited(1), "\(arguments)")
            XCTAssertEqual(output.split(separator: "\n").count, 1, "\(arguments): \(output)")
            XCTAssertTrue(output.hasPrefix("batond: error: "), output)
        }
    }

    func testSoftOpenFileLimitIsRaisedToTheHardLimitAndALowLimitIsWarnedAbout() throws {
        let prlimit = "/usr/bin/prlimit"
        guard FileManager.default.isExecutableFile(atPath: prlimit) else { throw XCTSkip("no \(prlimit)") }
        let directory = try makeTemporaryDirectory("baton-test-")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let logPath = directory + "/batond.log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: prlimit)
        // prlimit execs batond with soft 128 and hard 300: far below the 20,000 connections allowed.
        process.arguments = ["--nofile=128:300", try TestDaemon.executablePath(), "--in-memory",
                             "--socket", directory + "/s.sock", "--log-level", "info"]
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardInput = FileHandle.nullDevice
        try process.run()
        defer {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
        var log = ""
        var attempts = 0
        while !log.contains("open-file limit") {
            attempts += 1
            guard process.isRunning, attempts < 3_000 else { return XCTFail("batond did not start: \(log)") }
            usleep(10_000)
            log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        }
        let limits = try String(contentsOfFile: "/proc/\(process.processIdentifier)/limits", encoding: .utf8)
        let line = try XCTUnwrap(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        XCTAssertEqual(fields[3], "300", "soft limit: \(line)")
        XCTAssertEqual(fields[4], "300", "hard limit: \(line)")
        XCTAssertTrue(log.contains("open-file limit 300 is below"), log)
    }

    // MARK: Helpers

    private func permissions(_ path: String) throws -> Int {
        try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }
}

/// The embedded store wired into the daemon: what a restart (graceful or kill -9) keeps.
final class DurabilityTests: DaemonTestCase {
    private func startDaemon(_ arguments: [String] = []) throws -> TestDaemon {
        return kept(try TestDaemon(TestDaemon.Options(arguments: arguments)))
    }

    private func data(at path: String, _ connection: RawConnection) throws -> [UInt8]? {
        let reply = try connection.call(.get(path: path, watch: false))
        switch reply.result {
        case .success(.data(_, let data)): return data
        case .failure(let error) where error.code == .noNode: return nil
        default: throw TestSupportError.unexpected("get \(path) answered \(reply.result)")
        }
    }

    func testPersistentNodesSurviveAGracefulRestartAndEphemeralsDoNot() throws {
        let daemon = try startDaemon()
        let connection = try daemon.connect()
        try connection.handshake()
        _ = try connection.callSuccessfully(.create(path: "/kept", data: Array("value".utf8), mode: .persistent))
        _ = try connection.callSuccessfully(.set(path: "/kept", data: Array("changed".utf8), expectedVersion: 0))
        _ = try connection.callSuccessfully(.create(path: "/gone", data: [], mode: .ephemeral))
        try daemon.restart()

        let after = try daemon.connect()
        try after.handshake()
        XCTAssertEqual(try data(at: "/kept", after), Array("changed".utf8))
        XCTAssertNil(try data(at: "/gone", after))
    }

    func testAcknowledgedChangesSurviveKill9AndSequencesKeepIncreasing() throws {
        let daemon = try startDaemon(["--fsync", "batch"])
        let connection = try daemon.connect()
        try connection.handshake()
        _ = try connection.callSuccessfully(.create(path: "/queue", data: [], mode: .persistent))
        var before: [String] = []
        for index in 0..<20 {
            guard case .created(let path, _) = try connection.callSuccessfully(
                .create(path: "/queue/item-", data: [UInt8(index)], mode: .persistentSequential)) else {
                return XCTFail("create answered something else")
            }
            before.append(path)
        }
        daemon.kill(SIGKILL)
        XCTAssertEqual(daemon.waitForExit(), .signaled(SIGKILL))
        try daemon.start()

        let after = try daemon.connect()
        try after.handshake()
        guard case .children(_, let names, _) = try after.callSuccessfully(.children(path: "/queue", watch: false)) else {
            return XCTFail("children answered something else")
        }
        XCTAssertEqual(Set(names.map { "/queue/" + $0 }), Set(before))
        guard case .created(let next, _) = try after.callSuccessfully(.create(path: "/queue/item-", data: [], mode: .persistentSequential)) else {
            return XCTFail("create answered something else")
        }
        XCTAssertGreaterThan(next, before.max()!, "a sequence number is never handed out twice")
    }

    func testSnapshotsAreTakenInTheBackgroundAndRecoveryUsesThem() throws {
        let daemon = try startDaemon(["--snapshot-every-records", "50"])
        let connection = try daemon.connect()
        try connection.handshake()
        var batch: [UInt8] = []
        for index in 0..<400 {
            batch += Codec.encodeRequest(.create(path: "/n-\(index)", data: [UInt8(index % 256)], mode: .persistent),
                                         requestID: connection.takeRequestID())
        }
        try connection.sendRaw(batch)
        for _ in 0..<400 { _ = try connection.receiveReply().result.get() }

        XCTAssertTrue(waitFor { daemon.standardError.contains("snapshot finished") }, "a snapshot was written")
        XCTAssertTrue(daemon.standardError.contains("loop_stall_microseconds"), "the loop stall is logged")
        let files = try FileManager.default.contentsOfDirectory(atPath: daemon.dataDirectory)
        XCTAssertTrue(files.contains { $0.hasSuffix(".snap") }, "\(files)")

        daemon.kill(SIGKILL)
        _ = daemon.waitForExit()
        try daemon.start()
        let after = try daemon.connect()
        try after.handshake()
        for index in [0, 199, 399] {
            XCTAssertEqual(try data(at: "/n-\(index)", after), [UInt8(index % 256)])
        }
        XCTAssertTrue(daemon.standardError.range(of: "snapshot_lsn=[0-9]+", options: .regularExpression) != nil,
                      "the restart recovered from a snapshot")
    }

    func testSecondDaemonOnTheSameDataDirectoryRefusesAndLeavesNoSocket() throws {
        let daemon = try startDaemon()
        let otherSocket = daemon.directory + "/other.sock"
        let (termination, output) = try TestDaemon.runToCompletion(
            arguments: ["--socket", otherSocket, "--data-dir", daemon.dataDirectory])
        XCTAssertEqual(termination, .exited(1))
        XCTAssertTrue(output.contains("in use by another batond"), output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: otherSocket))
        XCTAssertNoThrow(try daemon.connect().handshake())
    }

    private func waitFor(timeoutSeconds: Double = 20, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }
}
