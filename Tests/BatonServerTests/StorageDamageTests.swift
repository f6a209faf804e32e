import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest

/// A damaged data directory (issue 8, item 5), against a real batond: damage a crash cannot cause
/// stops it with an error naming the file and offset; `--repair` cuts the log there and starts;
/// and whatever is cut, fencing tokens and zxids never go back.
final class StorageDamageTests: DaemonTestCase {
    override func tearDown() {
        for daemon in daemons { daemon.stop() }
        super.tearDown()
    }

    private func startDaemon(_ arguments: [String] = []) throws -> TestDaemon {
        return kept(try TestDaemon(TestDaemon.Options(arguments: arguments)))
    }

    /// What the clients were told: the highest zxid and fencing token.
    struct Issued {
        var zxid: UInt64 = 0
        var token: UInt64 = 0
    }

    /// Creates `count` persistent nodes under `/n`, pipelined, each acknowledged.
    private func createNodes(_ connection: RawConnection, count: Int, _ issued: inout Issued) throws {
        _ = try? connection.call(.create(path: "/n", data: [], mode: .persistent))
        var next = 0
        while next < count {
            let batch = next..<min(next + 500, count)
            for index in batch { _ = try connection.send(.create(path: "/n/\(index)", data: Array("value \(index)".utf8), mode: .persistent)) }
            for _ in batch {
                let reply = try connection.receiveReply()
                guard case .success(.created(_, let stat)) = reply.result else { return XCTFail("create: \(reply.result)") }
                issued.zxid = max(issued.zxid, stat.createdTransaction)
            }
            next = batch.upperBound
        }
    }

    /// Acquires and releases `/locks/L` `count` times.
    private func grant(_ connection: RawConnection, count: Int, _ issued: inout Issued) throws {
        for _ in 0..<count {
            guard case .granted(let node, let token) = try connection.callSuccessfully(.acquire(LockRequest(path: "/locks/L"))) else {
                return XCTFail("acquire should be granted")
            }
            issued.token = max(issued.token, token)
            _ = try connection.callSuccessfully(.release(node: node, token: token))
        }
    }

    /// The next token and zxid the daemon hands out are above everything issued before.
    private func assertNothingGoesBack(_ daemon: TestDaemon, _ issued: Issued, file: StaticString = #filePath, line: UInt = #line) throws {
        let connection = try daemon.connect()
        try connection.handshake()
        guard case .granted(let node, let token) = try connection.callSuccessfully(.acquire(LockRequest(path: "/locks/L"))) else {
            return XCTFail("acquire should be granted", file: file, line: line)
        }
        XCTAssertGreaterThan(token, issued.token, "fencing token went back", file: file, line: line)
        XCTAssertGreaterThan(token, issued.zxid, "fencing token at or below a zxid already seen", file: file, line: line)
        _ = try connection.callSuccessfully(.release(node: node, token: token))
        guard case .created(_, let stat) = try connection.callSuccessfully(.create(path: "/after-\(UInt64.random(in: 0...UInt64.max))", data: [], mode: .persistent)) else {
            return XCTFail("create should succeed", file: file, line: line)
        }
        XCTAssertGreaterThan(stat.createdTransaction, max(issued.zxid, issued.token), "zxid went back", file: file, line: line)
        connection.close()
    }

    private func nodeCount(_ daemon: TestDaemon) throws -> Int {
        let connection = try daemon.connect()
        defer { connection.close() }
        try connection.handshake()
        guard case .success(let names) = try connection.allChildren(of: "/n") else { return -1 }
        return names.count
    }

    /// batond must exit 1 with a one-line error naming `file` (and `offset`, if given) and --repair.
    private func assertRefusesToStart(_ daemon: TestDaemon, file: String, offset: Int?, line: UInt = #line) throws {
        let (termination, output) = try TestDaemon.runToCompletion(arguments: daemon.arguments)
        XCTAssertEqual(termination, .exited(1), output, line: line)
        XCTAssertTrue(output.contains("batond: error: "), output, line: line)
        XCTAssertTrue(output.contains(file), "names \(file): \(output)", line: line)
        if let offset { XCTAssertTrue(output.contains("offset \(offset)"), "names offset \(offset): \(output)", line: line) }
        XCTAssertTrue(output.contains("--repair"), output, line: line)
    }

    private func repairAndStart(_ daemon: TestDaemon) throws {
        daemon.options.arguments.append("--repair")
        try daemon.start()
        daemon.options.arguments.removeAll { $0 == "--repair" }
    }

    /// 15,000 acknowledged creates and 20 grants, no snapshot, then kill -9.
    private func fillAndCrash() throws -> (TestDaemon, Issued) {
        let daemon = try startDaemon()
        let connection = try daemon.connect()
        try connection.handshake()
        var issued = Issued()
        try createNodes(connection, count: 15_000, &issued)
        try grant(connection, count: 20, &issued)
        connection.close()
        daemon.kill(SIGKILL)
        _ = daemon.waitForExit()
        return (daemon, issued)
    }

    private var segment: String { "wal-00000000000000000001.log" }

    /// kill -9 at any moment of a first start (the socket accepts before the data directory is
    /// set up) must leave a directory that opens: no crash window may look like damage.
    func testKill9DuringAFirstStartLeavesADirectoryThatOpens() throws {
        let daemon = try startDaemon()
        var random = SeededGenerator(seed: UInt64.random(in: 0...UInt64.max))
        for attempt in 0..<25 {
            XCTAssertNotNil(daemon.stop())
            try FileManager.default.removeItem(atPath: daemon.dataDirectory)
            try daemon.start()
            usleep(UInt32(random.below(4_000)))
            daemon.kill(SIGKILL)
            _ = daemon.waitForExit()
            try daemon.start()
            let connection = try daemon.connect()
            try connection.handshake()
            XCTAssertNoThrow(try connection.callSuccessfully(.create(path: "/attempt\(attempt)", data: [], mode: .persistent)),
                             "attempt \(attempt)")
            connection.close()
        }
    }

    func testAFlippedByteAThirdIntoTheLogStopsBatondAndRepairKeepsTokensGoingUp() throws {
        let (daemon, issued) = try fillAndCrash()
        let path = daemon.dataDirectory + "/" + segment
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count / 3] ^= 0x5A
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        try assertRefusesToStart(daemon, file: segment, offset: nil)
        try repairAndStart(daemon)
        let kept = try nodeCount(daemon)
        XCTAssertLessThan(kept, 15_000, "the cut drops what follows the damage")
        XCTAssertGreaterThan(kept, 3_000)
        try assertNothingGoesBack(daemon, issued)
        // The repaired directory starts again without --repair and keeps what it now holds.
        XCTAssertNotNil(daemon.stop())
        try daemon.start()
        XCTAssertEqual(try nodeCount(daemon), kept)
        try assertNothingGoesBack(daemon, issued)
    }

    func testAFlippedByteInTheSegmentHeaderStopsBatond() throws {
        let (daemon, issued) = try fillAndCrash()
        let path = daemon.dataDirectory + "/" + segment
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[14] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        try assertRefusesToStart(daemon, file: segment, offset: 0)
        try repairAndStart(daemon)
        XCTAssertEqual(try nodeCount(daemon), -1, "the only segment was set aside: /n is gone")
        try assertNothingGoesBack(daemon, issued)
    }

    func testADeletedLastSegmentStopsBatond() throws {
        // A snapshot covers part of the log; the segment holds the rest.
        let daemon = try startDaemon(["--snapshot-every-records", "5000"])
        let connection = try daemon.connect()
        try connection.handshake()
        var issued = Issued()
        try createNodes(connection, count: 8_000, &issued)
        try grant(connection, count: 20, &issued)
        connection.close()
        XCTAssertNotNil(daemon.stop())
        let names = try FileManager.default.contentsOfDirectory(atPath: daemon.dataDirectory)
        XCTAssertTrue(names.contains { $0.hasPrefix("snapshot-") }, "\(names)")
        try FileManager.default.removeItem(atPath: daemon.dataDirectory + "/" + segment)

        try assertRefusesToStart(daemon, file: segment, offset: nil)
        try repairAndStart(daemon)
        try assertNothingGoesBack(daemon, issued)
    }
}
