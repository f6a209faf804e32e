import XCTest
import Foundation
import BatonProtocol
import BatonTestSupport
@testable import BatonBenchKit

/// The newer measurements, each run for a fraction of a second against a real batond: server CPU
/// from /proc, the bare libuv echo, ping/get, the Swift client library, the write modes and the
/// targets spread over several sidecars. They check counts and that the CPU was read, never speed.
final class MeasurementSmokeTests: BenchDaemonTestCase {
    var target: Target { .baton(.unix(path: daemon.socketPath)) }

    func testLoopReadsTheServersCPU() throws {
        let result = try runLoop(.uncontended, targets: [target], clients: 1, seconds: 0.2, options: ClientOptions(),
                                 lockPrefix: "/bench/smoke-cpu", serverProcessIDs: [daemon.pid])
        XCTAssertGreaterThan(result.pairs, 0)
        let cpu = try XCTUnwrap(result.serverCPUNanoseconds, "batond's CPU was not read from /proc")
        XCTAssertGreaterThan(cpu, 0, "batond served \(result.pairs) pairs without CPU")
        XCTAssertEqual(result.serverCPUNanosecondsPerPair!, Double(cpu) / Double(result.pairs), accuracy: 1e-6)
        // Without a server process there is no CPU figure rather than a made-up one.
        let unknown = try runLoop(.uncontended, targets: [target], clients: 1, seconds: 0.05, options: ClientOptions(),
                                  lockPrefix: "/bench/smoke-cpu-none")
        XCTAssertNil(unknown.serverCPUNanosecondsPerPair)
    }

    func testCPUMeterCountsSeveralProcessesTogether() throws {
        let own = getpid()
        let both = try XCTUnwrap(processCPUNanoseconds([own, daemon.pid]))
        let mine = try XCTUnwrap(processCPUNanoseconds(own))
        XCTAssertGreaterThanOrEqual(both, mine)
        XCTAssertNil(processCPUNanoseconds([own, Int32.max]), "an unknown process makes the sum unknown")
        XCTAssertNil(CPUMeter([]).elapsed())
        // utime+stime from /proc/PID/stat, in ticks: this process has spun for 30 ms at least.
        var spin: UInt64 = 0
        let until = MonotonicClock.nanoseconds() + 30_000_000
        while MonotonicClock.nanoseconds() < until { spin &+= 1 }
        let ticks = try XCTUnwrap(processStatCPUNanoseconds(own))
        XCTAssertGreaterThan(ticks, 0, "spun \(spin) times without a tick")
    }

    func testLibuvEchoBouncesFramesAndReportsItsCPU() throws {
        let echo = EchoProcess.libuvNextTo(try TestDaemon.executablePath())
        guard case .libuv(let path) = echo, FileManager.default.isExecutableFile(atPath: path) else {
            throw XCTSkip("baton-echo is not built next to batond (swift build builds it)")
        }
        for endpoint in [Endpoint.unix(path: daemon.directory + "/echo.sock"), .tcp(host: "127.0.0.1", port: try TestDaemon.freeLoopbackPort())] {
            let result = try runFloor(endpoint, seconds: 0.1, server: echo)
            XCTAssertGreaterThan(result.roundTrips, 0, "\(endpoint)")
            XCTAssertEqual(result.latency.count, UInt64(result.roundTrips), "one sample per round trip (\(endpoint))")
            XCTAssertGreaterThan(try XCTUnwrap(result.serverCPUNanoseconds, "\(endpoint)"), 0)
        }
    }

    func testPingAndGetCountRequestsAndCPU() throws {
        for kind in RequestKind.allCases {
            let result = try runRequests(kind, target: target, seconds: 0.1, options: ClientOptions(), key: "/bench/smoke-requests/key",
                                         serverProcessIDs: [daemon.pid])
            XCTAssertGreaterThan(result.requests, 0, "\(kind)")
            XCTAssertEqual(result.latency.count, UInt64(result.requests), "\(kind)")
            XCTAssertGreaterThan(try XCTUnwrap(result.serverCPUNanosecondsPerRequest, "\(kind)"), 0)
        }
        XCTAssertTrue(supports(.get, .zookeeper(connect: "127.0.0.1:1")))
        XCTAssertFalse(supports(.ping, .etcd(host: "127.0.0.1", port: 1)), "etcd has no user-level ping")
    }

    func testSwiftLibraryClientsAcquireAndRelease() throws {
        for kind in LibraryClient.allCases {
            let lock = "/bench/smoke-library-\(kind.rawValue)"
            let result = try runLibraryUncontended(kind, endpoint: .unix(path: daemon.socketPath), seconds: 0.1, options: ClientOptions(),
                                                   lock: lock, serverProcessIDs: [daemon.pid])
            XCTAssertGreaterThan(result.pairs, 0, "\(kind)")
            XCTAssertEqual(result.latency.count, UInt64(result.pairs), "\(kind)")
            XCTAssertNotNil(result.serverCPUNanosecondsPerPair, "\(kind)")
            try assertLockIsFree(lock)
        }
    }

    func testWriteModesCreateTheirNodes() throws {
        let directory = "/bench/smoke-writes"
        let modes: [NamespaceMode] = [.oneAtATime, .pipelined(4), .clients(3)]
        let result = try runBatonNamespace(endpoint: .unix(path: daemon.socketPath), seconds: 0.1, modes: modes,
                                           operations: ["set", "create"], options: ClientOptions(), directory: directory)
        for operation in ["set", "create"] {
            for mode in modes { XCTAssertGreaterThan(result.operationsPerSecond[operation]?[mode] ?? 0, 0, "\(operation) \(mode)") }
        }
        XCTAssertNil(result.operationsPerSecond["get"], "only the operations asked for run")
        // Every mode's creates landed, and the 16-clients mode's came from each of its connections.
        let client = try BatonLockClient(endpoint: .unix(path: daemon.socketPath), sessionTimeoutMilliseconds: 5_000, clientName: "smoke-check")
        for prefix in ["r1m0c0n", "r1m1c0n", "r1m2c0n", "r1m2c1n", "r1m2c2n"] {
            // The first name after the bare prefix starts with it when any node has it.
            guard case .children(_, let names, _) = try client.call(.children(path: directory, watch: false, after: prefix, limit: 1)) else {
                return XCTFail("children of \(directory) did not come back as children")
            }
            XCTAssertTrue(names.first?.hasPrefix(prefix) == true, "no node created by \(prefix) (first after it: \(names))")
        }
    }

    func testLoopSpreadsClientsOverSeveralTargets() throws {
        var options = TestDaemon.Options()
        options.logLevel = "warning"
        let second = try TestDaemon(options)
        defer { _ = second.stop() }
        let targets: [Target] = [target, .baton(.unix(path: second.socketPath))]
        let result = try runLoop(.spread, targets: targets, clients: 4, seconds: 0.2, options: ClientOptions(),
                                 lockPrefix: "/bench/smoke-targets", serverProcessIDs: [daemon.pid, second.pid])
        XCTAssertEqual(result.grantsPerClient.count, 4)
        XCTAssertGreaterThan(result.fewestGrants, 0)
        XCTAssertNotNil(result.serverCPUNanoseconds)
        // The four client threads' CPU (this process's, read around the measured interval).
        XCTAssertGreaterThan(result.clientCPUNanoseconds ?? 0, 0)
        // Clients 0 and 2 used the first daemon, 1 and 3 the second. A fencing token is the zxid of the
        // grant's waiter node, so each daemon's next token is past every grant it made.
        for (socket, clients) in [(daemon.socketPath, [0, 2]), (second.socketPath, [1, 3])] {
            let grants = clients.reduce(0) { $0 + result.grantsPerClient[$1] }
            XCTAssertGreaterThan(try nextToken(on: socket), UInt64(grants), "clients \(clients) were served by \(socket)")
        }
    }

    func testFootprintStaysWithinTheNodesPerSessionQuota() throws {
        var options = TestDaemon.Options(arguments: ["--nodes-per-session-max", "1000"])
        options.logLevel = "warning"
        let small = try TestDaemon(options)
        defer { _ = small.stop() }
        let result = try runBatonFootprint(endpoint: .unix(path: small.socketPath), serverProcessID: small.pid, nodes: 2_500, sessions: 3,
                                           options: ClientOptions(), directory: "/bench/smoke-footprint", nodesPerSession: 900)
        XCTAssertEqual(result.nodes, 2_500)
        XCTAssertGreaterThan(result.withNodesBytes, 0)
        let client = try BatonLockClient(endpoint: .unix(path: small.socketPath), sessionTimeoutMilliseconds: 5_000, clientName: "smoke-check")
        guard case .children(_, let names, _) = try client.call(.children(path: "/bench/smoke-footprint/d2", watch: false)) else {
            return XCTFail("no third directory")
        }
        XCTAssertEqual(names.count, 500, "the last directory holds the last 500 nodes")
    }

    func testTargetsParseEnsembles() {
        XCTAssertEqual(Target.parse("zookeeper:127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"), .zookeeper(connect: "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"))
        XCTAssertEqual(Target.parse("zookeeper:127.0.0.1:1")?.argument, "zookeeper:127.0.0.1:1")
        XCTAssertNil(Target.parse("zookeeper:127.0.0.1:1,nonsense"))
    }

    /// The fencing token of a fresh grant on the daemon at `socket`.
    func nextToken(on socket: String) throws -> UInt64 {
        let client = try BatonLockClient(endpoint: .unix(path: socket), sessionTimeoutMilliseconds: 5_000, clientName: "smoke-check")
        let hold = try client.acquire("/bench/smoke-token-check")
        return UInt64(hold[hold.index(after: hold.lastIndex(of: "@")!)...])!
    }

    func assertLockIsFree(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let client = try BatonLockClient(endpoint: .unix(path: daemon.socketPath), sessionTimeoutMilliseconds: 5_000, clientName: "smoke-check")
        guard case .lockEntries(let entries) = try client.call(.inspect(path: path)) else {
            return XCTFail("inspect did not return lock entries", file: file, line: line)
        }
        XCTAssertEqual(entries, [], "lock \(path) still has entries", file: file, line: line)
    }
}
