import XCTest
import Foundation
import BatonProtocol
import BatonTestSupport
@testable import BatonBenchKit

/// Runs the runner's uncontended and contended scenarios briefly against a real batond and checks
/// that they complete and count correctly (never how fast: machines are noisy).
final class RunnerSmokeTests: BenchDaemonTestCase {
    func testUncontendedCompletesAndCounts() throws {
        let target = Target.baton(.unix(path: daemon.socketPath))
        let result = try runLoop(.uncontended, targets: [target], clients: 8, seconds: 0.2, options: ClientOptions(),
                                 lockPrefix: "/bench/smoke-uncontended")
        XCTAssertEqual(result.clients, 1, "uncontended is one client whatever is asked")
        XCTAssertGreaterThan(result.pairs, 0)
        XCTAssertEqual(result.grantsPerClient, [result.pairs])
        XCTAssertEqual(result.latency.count, UInt64(result.pairs), "one latency sample per pair")
        XCTAssertEqual(result.overlaps, 0)
        XCTAssertGreaterThan(result.latency.p50, 0)
        XCTAssertLessThanOrEqual(result.latency.p50, result.latency.p99)
        try assertLockIsFree("/bench/smoke-uncontended")
    }

    func testContendedCompletesCountsAndIsFair() throws {
        let target = Target.baton(.unix(path: daemon.socketPath))
        let result = try runLoop(.contended, targets: [target], clients: 4, seconds: 0.3, options: ClientOptions(),
                                 lockPrefix: "/bench/smoke-contended")
        XCTAssertEqual(result.clients, 4)
        XCTAssertEqual(result.grantsPerClient.count, 4)
        XCTAssertEqual(result.grantsPerClient.reduce(0, +), result.pairs, "grants per client add up to the total")
        XCTAssertEqual(result.latency.count, UInt64(result.pairs), "one wait sample per grant")
        XCTAssertEqual(result.overlaps, 0, "never two holders of one exclusive lock")
        // FIFO grants: every client that keeps asking is served.
        XCTAssertGreaterThan(result.fewestGrants, 0)
        try assertLockIsFree("/bench/smoke-contended")
    }

    func testSpreadUsesOneLockPerClient() throws {
        let target = Target.baton(.unix(path: daemon.socketPath))
        let result = try runLoop(.spread, targets: [target], clients: 3, seconds: 0.2, options: ClientOptions(),
                                 lockPrefix: "/bench/smoke-spread")
        XCTAssertEqual(result.grantsPerClient.count, 3)
        XCTAssertEqual(result.grantsPerClient.reduce(0, +), result.pairs)
        XCTAssertEqual(result.overlaps, 0)
        for index in 0..<3 { try assertLockIsFree("/bench/smoke-spread-\(index)") }
    }

    /// After the run every client released: the lock has no holder and no waiter.
    func assertLockIsFree(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let client = try BatonLockClient(endpoint: .unix(path: daemon.socketPath), sessionTimeoutMilliseconds: 5_000,
                                         clientName: "smoke-check")
        let body = try client.call(.inspect(path: path))
        guard case .lockEntries(let entries) = body else {
            return XCTFail("inspect returned \(body)", file: file, line: line)
        }
        XCTAssertEqual(entries, [], "lock \(path) still has entries", file: file, line: line)
    }
}
