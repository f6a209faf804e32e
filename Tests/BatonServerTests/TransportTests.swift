import BatonEngine
import BatonProtocol
import BatonServer
import BatonTestSupport
import Foundation
import Logging
import XCTest

/// The libuv shell alone, in process, driven by `StandInEngine`: framing, pipelining, large frames,
/// slow readers, bad frames, the timer, listener rules and graceful stop.
final class TransportTests: XCTestCase {
    private var directory = ""
    private var journal = EngineJournal()
    private var server: Server?

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory("baton-test-")
        journal = EngineJournal()
    }

    override func tearDown() {
        server?.stop()
        server?.waitUntilStopped()
        server = nil
        try? FileManager.default.removeItem(atPath: directory)
    }

    private var socketPath: String { directory + "/s.sock" }

    private func configuration(connectionsMax: Int = 1_000) -> ServerConfiguration {
        var configuration = ServerConfiguration(socketPath: socketPath)
        configuration.handlesSignals = false
        configuration.readBufferBytes = 4_096
        configuration.engine.limits.outputBytesPerConnectionMax = 4 * 1_048_576
        configuration.engine.limits.replyBytesMax = 2 * 1_048_576
        configuration.engine.limits.childrenPageMax = 1_000
        configuration.engine.limits.frameBytesMax = 2 * 1_048_576
        return configuration
    }

    @discardableResult
    private func startServer(_ configuration: ServerConfiguration? = nil, connectionsMax: Int = 1_000) throws -> ListeningAddresses {
        let journal = self.journal
        var logger = Logger(label: "transport-test")
        logger.logLevel = .critical
        let server = Server(configuration: configuration ?? self.configuration(), logger: logger) { _ in
            StandInEngine(journal: journal, connectionsMax: connectionsMax)
        }
        self.server = server
        return try server.start()
    }

    func testFrameDeliveredOneByteAtATimeIsAnswered() throws {
        try startServer()
        let connection = try RawConnection(unixPath: socketPath)
        let frame = Codec.encodeRequest(.hello(version: 1, clientName: "bytewise"), requestID: 7)
        for byte in frame {
            try connection.sendRaw([byte])
        }
        let reply = try connection.receiveReply()
        XCTAssertEqual(reply.requestID, 7)
        guard case .success(.hello) = reply.result else { return XCTFail("hello answered \(reply.result)") }
    }

    func testThousandPipelinedRequestsAreAnsweredInOrder() throws {
        try startServer()
        let connection = try RawConnection(unixPath: socketPath)
        var batch: [UInt8] = []
        for requestID in UInt32(1)...1_000 {
            batch += Codec.encodeRequest(.ping, requestID: requestID)
        }
        // Split at an odd offset so frames straddle reads.
        try connection.sendRaw(Array(batch[..<1_237]))
        try connection.sendRaw(Array(batch[1_237...]))
        for requestID in UInt32(1)...1_000 {
            XCTAssertEqual(try connection.receiveReply().requestID, requestID)
        }
    }

    func testFrameSplitAcrossTwoReadsAtEveryOffsetIsDecoded() throws {
        try startServer()
        let connection = try RawConnection(unixPath: socketPath)
        let data = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let checksum = Int32(data.reduce(0) { ($0 &+ Int($1)) & 0x7FFF_FFFF })
        let frame = Codec.encodeRequest(.set(path: "/split", data: data, expectedVersion: -1), requestID: 1)
        var requestID: UInt32 = 2
        for offset in 1..<frame.count {
            // The ping's reply proves the server has read the first part, so the split is real.
            let ping = requestID
            try connection.sendRaw(Codec.encodeRequest(.ping, requestID: ping) + Array(frame[..<offset]))
            XCTAssertEqual(try connection.receiveReply().requestID, ping, "offset \(offset)")
            // The rest arrives with a whole frame behind it, which must be decoded too.
            let after = requestID + 1
            try connection.sendRaw(Array(frame[offset...]) + Codec.encodeRequest(.ping, requestID: after))
            let reply = try connection.receiveReply()
            XCTAssertEqual(reply.requestID, 1, "offset \(offset)")
            guard case .success(.stat(let stat)) = reply.result else { return XCTFail("offset \(offset): set answered \(reply.result)") }
            XCTAssertEqual(stat.dataLength, UInt32(data.count), "offset \(offset)")
            XCTAssertEqual(stat.version, checksum, "offset \(offset)")
            XCTAssertEqual(try connection.receiveReply().requestID, after, "offset \(offset)")
            requestID += 2
        }
    }

    func testLargeFrameWithItsLengthPrefixSplitIsGathered() throws {
        try startServer()
        let connection = try RawConnection(unixPath: socketPath)
        let data = [UInt8](repeating: 0x5A, count: 20_000)
        let frame = Codec.encodeRequest(.set(path: "/large", data: data, expectedVersion: -1), requestID: 1)
        try connection.sendRaw(Codec.encodeRequest(.ping, requestID: 2) + Array(frame[..<2]))
        XCTAssertEqual(try connection.receiveReply().requestID, 2)
        // Then the body in pieces smaller than the read buffer, each read before the next is sent.
        var offset = 2
        while offset < frame.count {
            let end = min(offset + 3_000, frame.count)
            try connection.sendRaw(Array(frame[offset..<end]))
            offset = end
            usleep(1_000)
        }
        let reply = try connection.receiveReply()
        XCTAssertEqual(reply.requestID, 1)
        guard case .success(.stat(let stat)) = reply.result else { return XCTFail("set answered \(reply.result)") }
        XCTAssertEqual(stat.dataLength, 20_000)
    }

    func testFrameLargerThanTheReadBufferIsGatheredAndTheNextFrameStillWorks() throws {
        try startServer()
        let connection = try RawConnection(unixPath: socketPath)
        let data = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var bytes = Codec.encodeRequest(.set(path: "/large", data: data, expectedVersion: -1), requestID: 1)
        bytes += Codec.encodeRequest(.ping, requestID: 2)
        try connection.sendRaw(bytes)
        let reply = try connection.receiveReply()
        XCTAssertEqual(reply.requestID, 1)
        guard case .success(.stat(let stat)) = reply.result else { return XCTFail("set answered \(reply.result)") }
        XCTAssertEqual(stat.dataLength, 300_000)
        XCTAssertEqual(stat.version, Int32(data.reduce(0) { ($0 &+ Int($1)) & 0x7FFF_FFFF }))
        XCTAssertEqual(try connection.receiveReply().requestID, 2)
    }

    func testOversizedLengthPrefixGetsAnErrorAndClosesOnlyThatConnection() throws {
        try startServer()
        let bystander = try RawConnection(unixPath: socketPath)
        let connection = try RawConnection(unixPath: socketPath)
        try connection.sendRaw([0x7F, 0xFF, 0xFF, 0xFF, 1, 2, 3])
        let messages = try connection.readUntilClosed()
        guard case .reply(let reply)? = messages.first, case .failure(let error) = reply.result else {
            return XCTFail("expected an error reply, got \(messages)")
        }
        XCTAssertEqual(error.code, .frameTooLarge)
        XCTAssertEqual(try bystander.call(.ping).requestID, 1)
        XCTAssertTrue(journal.wait { $0.closedConnections.count == 1 }, "the engine was told of the close")
    }

    func testUndecodableFrameThatClosesTheConnectionStopsFurtherRequests() throws {
        try startServer()
        let connection = try RawConnection(unixPath: socketPath)
        // An unknown opcode, then a ping pipelined behind it that must not be answered.
        var bytes: [UInt8] = [0, 0, 0, 5, 0xEE, 0, 0, 0, 9]
        bytes += Codec.encodeRequest(.ping, requestID: 10)
        try connection.sendRaw(bytes)
        let messages = try connection.readUntilClosed()
        XCTAssertEqual(messages.count, 1, "only the error frame: \(messages)")
        guard case .reply(let reply)? = messages.first, case .failure(let error) = reply.result else {
            return XCTFail("expected an error reply, got \(messages)")
        }
        XCTAssertEqual(error.code, .unknownOpcode)
        XCTAssertEqual(reply.requestID, 9)
    }

    func testEngineCloseFlushesTheReplyFirst() throws {
        try startServer()
        let connection = try RawConnection(unixPath: socketPath)
        try connection.send(.closeSession, requestID: 3)
        let messages = try connection.readUntilClosed()
        XCTAssertEqual(messages.count, 1)
        guard case .reply(let reply)? = messages.first else { return XCTFail("no reply before close") }
        XCTAssertEqual(reply.requestID, 3)
    }

    func testReaderThatDoesNotReadIsDisconnectedWhileOthersAreServed() throws {
        var configuration = configuration()
        configuration.writeStallMillisecondsMax = 300
        try startServer(configuration)
        let slow = try RawConnection(unixPath: socketPath)
        slow.setReceiveBufferBytes(4_096)
        let other = try RawConnection(unixPath: socketPath)
        // 64 replies of 256 KiB: 16 MiB, four times the output limit of this server. Backpressure
        // stops reading it at the high-water mark; it is dropped for not reading, not for the volume.
        for requestID in UInt32(1)...64 {
            try slow.send(.get(path: "/bytes/262144", watch: false), requestID: requestID)
        }
        XCTAssertTrue(journal.wait { $0.closedConnections.contains(1) }, "the slow reader was dropped")
        XCTAssertEqual(try other.call(.ping).requestID, 1)
        XCTAssertFalse(journal.closedConnections.contains(2))
    }

    /// Issue 8 item 8: 16 pipelined 1 MiB replies, four times the output limit, in one write: a
    /// client that reads gets every one, in order (backpressure holds its requests back meanwhile).
    func testPipelinedMegabyteRepliesAllReachAClientThatReads() throws {
        try startServer()
        let reader = try RawConnection(unixPath: socketPath)
        var batch: [UInt8] = []
        for requestID in UInt32(1)...16 {
            batch += Codec.encodeRequest(.get(path: "/bytes/1048576", watch: false), requestID: requestID)
        }
        try reader.sendRaw(batch)
        for requestID in UInt32(1)...16 {
            let reply = try reader.receiveReply()
            XCTAssertEqual(reply.requestID, requestID)
            guard case .success(.data(_, let data)) = reply.result else { return XCTFail("reply \(requestID): \(reply.result)") }
            XCTAssertEqual(data.count, 1_048_576)
        }
        guard case .success = try reader.call(.ping).result else { return XCTFail("the connection should stay usable") }
        XCTAssertEqual(journal.closedConnections, [])
    }

    /// A reply over `replyBytesMax` is answered `replyTooLarge`; the connection stays usable.
    func testReplyOverTheLimitIsAnsweredReplyTooLarge() throws {
        try startServer()
        let connection = try RawConnection(unixPath: socketPath)
        let reply = try connection.call(.get(path: "/bytes/3000000", watch: false))
        guard case .failure(let error) = reply.result else { return XCTFail("expected replyTooLarge, got \(reply.result)") }
        XCTAssertEqual(error.code, .replyTooLarge)
        XCTAssertEqual(error.code.closesConnection, false)
        guard case .success(.data(_, let data)) = try connection.call(.get(path: "/bytes/1000", watch: false)).result else {
            return XCTFail("the connection should stay usable")
        }
        XCTAssertEqual(data.count, 1_000)
    }

    /// A long pipeline of big replies, handled a few frames per turn, is answered whole and in
    /// order while another connection is served.
    func testLongPipelineHandledInTurnsIsAnsweredInOrderWhileOthersAreServed() throws {
        var configuration = configuration()
        configuration.framesPerTurnMax = 4
        try startServer(configuration)
        let busy = try RawConnection(unixPath: socketPath)
        let other = try RawConnection(unixPath: socketPath)
        XCTAssertEqual(try other.call(.ping).requestID, 1)
        // 200 replies of 64 KiB: handled 4 frames (and at most the high-water mark) per turn.
        var batch: [UInt8] = []
        for requestID in UInt32(1)...200 {
            batch += Codec.encodeRequest(.get(path: "/bytes/65536", watch: false), requestID: requestID)
        }
        try busy.sendRaw(batch)
        XCTAssertEqual(try other.call(.ping).requestID, 2)
        for requestID in UInt32(1)...200 {
            XCTAssertEqual(try busy.receiveReply().requestID, requestID)
        }
    }

    /// Issue 8 item 4(a): deadlines run after the turn's reads. A request stalls the loop past a
    /// session's timeout while that session's client pings on time: the ping, read after the stall,
    /// keeps the session (before, the timer ran first, before the poll, and expired it).
    func testPingSentDuringAStallIsReadBeforeTheSessionIsJudged() throws {
        try startServer()
        let pinger = try RawConnection(unixPath: socketPath)
        _ = try pinger.call(.openSession(timeoutMilliseconds: 300, flags: []))
        let staller = try RawConnection(unixPath: socketPath)
        try staller.send(.get(path: "/stall/1000", watch: false), requestID: 1)
        usleep(100_000)  // the loop is inside the stall now
        let pingID = try pinger.send(.ping)  // on time: 100 ms into a 300 ms timeout
        XCTAssertEqual(try staller.receiveReply().requestID, 1)
        guard case .reply(let reply) = try pinger.receive() else {
            return XCTFail("the session expired although its ping came in time: \(journal.expiredSessions)")
        }
        XCTAssertEqual(reply.requestID, pingID)
        // Without further pings it does expire, one timeout after the ping was read.
        XCTAssertEqual(try pinger.nextEvent(), .sessionExpired(sessionID: 1))
    }

    func testTimerDeliversDeadlinesFromTheEngine() throws {
        try startServer()
        let connection = try RawConnection(unixPath: socketPath)
        try connection.send(.acquire(LockRequest(path: "/l", waitMilliseconds: 30)), requestID: 1)
        try connection.send(.acquire(LockRequest(path: "/l", waitMilliseconds: 5)), requestID: 2)
        let first = try connection.receiveReply()
        let second = try connection.receiveReply()
        XCTAssertEqual([first.requestID, second.requestID], [2, 1], "the shorter deadline fires first")
        guard case .failure(let error) = first.result else { return XCTFail("expected lockTimeout") }
        XCTAssertEqual(error.code, .lockTimeout)
    }

    func testRefusedConnectionGetsTheEnginesErrorAndIsClosed() throws {
        try startServer(connectionsMax: 1)
        let first = try RawConnection(unixPath: socketPath)
        XCTAssertEqual(try first.call(.ping).requestID, 1)
        let second = try RawConnection(unixPath: socketPath)
        let messages = try second.readUntilClosed()
        guard case .reply(let reply)? = messages.first, case .failure(let error) = reply.result else {
            return XCTFail("expected tooManyConnections, got \(messages)")
        }
        XCTAssertEqual(error.code, .tooManyConnections)
        XCTAssertEqual(try first.call(.ping).requestID, 2)
    }

    func testPeerEndingTheConnectionIsReportedToTheEngine() throws {
        try startServer()
        let connection = try RawConnection(unixPath: socketPath)
        XCTAssertEqual(try connection.call(.ping).requestID, 1)
        connection.close()
        XCTAssertTrue(journal.wait { $0.closedConnections == [1] })
    }

    func testSocketIsCreatedWithTheRequestedMode() throws {
        try startServer()
        XCTAssertEqual(try permissions(of: socketPath), 0o600)
        server?.stop()
        server?.waitUntilStopped()
        var configuration = configuration()
        configuration.socketMode = 0o660
        try startServer(configuration)
        XCTAssertEqual(try permissions(of: socketPath), 0o660)
    }

    func testStaleSocketFileIsReplaced() throws {
        // A socket file nobody listens on, as a killed daemon leaves behind.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(socketPath.utf8) + [0])
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        close(stale)
        XCTAssertTrue(FileManager.default.fileExists(atPath: socketPath))
        try startServer()
        XCTAssertEqual(try RawConnection(unixPath: socketPath).call(.ping).requestID, 1)
    }

    func testSecondServerOnTheSameSocketRefusesToStart() throws {
        try startServer()
        let second = Server(configuration: configuration(), logger: Logger(label: "second")) { [journal] _ in
            StandInEngine(journal: journal)
        }
        XCTAssertThrowsError(try second.start()) { error in
            XCTAssertTrue("\(error)".contains("already running"), "\(error)")
        }
        XCTAssertEqual(try RawConnection(unixPath: socketPath).call(.ping).requestID, 1, "the first one still serves")
    }

    func testSocketPathLongerThanSunPathIsRefused() throws {
        var configuration = configuration()
        configuration.socketPath = directory + "/" + String(repeating: "s", count: 120)
        XCTAssertThrowsError(try startServer(configuration)) { error in
            XCTAssertTrue("\(error)".contains("at most \(Endpoint.unixPathBytesMax)"), "\(error)")
        }
    }

    func testStopClosesConnectionsTellsTheEngineAndRemovesTheSocket() throws {
        try startServer()
        let connections = try (0..<3).map { _ in try RawConnection(unixPath: socketPath) }
        for connection in connections { XCTAssertEqual(try connection.call(.ping).requestID, 1) }
        server?.stop()
        server?.waitUntilStopped()
        for connection in connections {
            let messages = try connection.readUntilClosed()
            guard messages.count == 1, case .reply(let reply) = messages[0], case .failure(let error) = reply.result else {
                return XCTFail("expected one shuttingDown reply, got \(messages)")
            }
            XCTAssertEqual(error.code, .shuttingDown)
            XCTAssertEqual(reply.requestID, 0)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: socketPath))
        XCTAssertEqual(Set(journal.closedConnections), [1, 2, 3])
    }

    func testTCPListenerServesOnTheBoundPort() throws {
        var configuration = configuration()
        configuration.tcpEndpoint = .tcp(host: "127.0.0.1", port: try TestDaemon.freeLoopbackPort())
        let addresses = try startServer(configuration)
        let port = try XCTUnwrap(addresses.tcpPort)
        let connection = try RawConnection(port: port)
        XCTAssertEqual(try connection.call(.ping).requestID, 1)
    }

    private func permissions(of path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return try XCTUnwrap(attributes[.posixPermissions] as? Int)
    }
}
