@testable import BatonServer
import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest

/// Memory batond took for thousands of connections goes back to the system once they close
/// (MemoryReturn.swift: `malloc_trim` after a burst of closes).
final class MemoryReturnTests: XCTestCase {
    /// A burst of N closes trims about log2(N) times, the last with only a few connections left;
    /// a few closes among many open connections never trim.
    func testTrimsAreAmortisedOverCloses() {
        var memory = MemoryReturn()
        var open = 2_000
        var trimmedAt: [Int] = []
        while open > 0 {
            open -= 1
            memory.connectionClosed()
            if memory.trimIsDue(openConnections: open) { trimmedAt.append(open) }
        }
        XCTAssertEqual(trimmedAt.first, 1_000)
        XCTAssertLessThanOrEqual(trimmedAt.last ?? .max, MemoryReturn.closesMin)
        XCTAssertLessThanOrEqual(trimmedAt.count, 12)

        var steady = MemoryReturn()
        for _ in 0..<(MemoryReturn.closesMin - 1) { steady.connectionClosed() }
        XCTAssertFalse(steady.trimIsDue(openConnections: 0), "fewer closes than closesMin")
        steady.connectionClosed()
        XCTAssertFalse(steady.trimIsDue(openConnections: 5_000), "fewer closes than open connections")
        XCTAssertTrue(steady.trimIsDue(openConnections: 10))
        XCTAssertFalse(steady.trimIsDue(openConnections: 10), "the count starts again after a trim")
    }

    /// 2,000 Unix connections each hold 60 KiB of a frame they never finish; once they close,
    /// batond's resident memory falls back near where it started (glibc alone would keep it).
    func testResidentMemoryFallsBackAfterThousandsOfPartialFrameConnectionsClose() throws {
        let count = 2_000
        var options = TestDaemon.Options(arguments: ["--partial-frame-timeout-ms", "120000"])
        options.logLevel = "info"
        let daemon = try TestDaemon(options)
        defer { _ = daemon.stop() }
        let local = try daemon.connect()
        try local.handshake()
        XCTAssertEqual(try local.callSuccessfully(.ping), .empty)
        let before = try AdmissionDaemonTests.residentBytes(daemon.pid)

        let length = 1_000_000
        let partial = [UInt8(length >> 24 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
            + [UInt8](repeating: 0x41, count: 60 * 1_024)
        var attackers: [RawConnection] = []
        for _ in 0..<count {
            let attacker = try daemon.connect()
            try attacker.sendRaw(partial)
            attackers.append(attacker)
        }
        // Read by batond once a later request on another connection is answered.
        XCTAssertEqual(try local.callSuccessfully(.ping), .empty)
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertEqual(try local.callSuccessfully(.ping), .empty)
        let during = try AdmissionDaemonTests.residentBytes(daemon.pid)
        XCTAssertGreaterThan(during - before, count * 30 * 1_024, "the partial frames were not held: the test shows nothing")

        for attacker in attackers { attacker.close() }
        attackers.removeAll()
        // Closes are seen within a few loop turns; allow a generous while before judging.
        let bound = before + (during - before) / 4
        var after = during
        let deadline = Date().addingTimeInterval(20)
        repeat {
            Thread.sleep(forTimeInterval: 0.2)
            XCTAssertEqual(try local.callSuccessfully(.ping), .empty)
            after = try AdmissionDaemonTests.residentBytes(daemon.pid)
        } while after > bound && Date() < deadline
        print("memory return figures: batond RSS \(before / 1_024) KiB before, \(during / 1_024) KiB with \(count) "
            + "partial-frame connections, \(after / 1_024) KiB after they closed")
        XCTAssertLessThanOrEqual(after, bound, "resident memory after the connections closed")
    }
}
