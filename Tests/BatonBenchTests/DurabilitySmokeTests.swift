import XCTest
import Foundation
import BatonProtocol
import BatonTestSupport
@testable import BatonBenchKit

/// Runs the whole durability scenario with tiny counts against the debug batond and checks that
/// it completes and counts correctly (never how fast: machines are noisy).
final class DurabilitySmokeTests: XCTestCase {
    func testDurabilityScenarioCompletesAndCounts() throws {
        var settings = DurabilitySettings(executable: try TestDaemon.executablePath(), isDebugBuild: true)
        settings.seconds = 0.2
        settings.rounds = 1
        settings.concurrentClients = 3
        settings.datasetNodes = [250]
        settings.recoveryRepetitions = 2
        settings.perDirectory = 100
        let report = try runDurability(settings)

        for storage in settings.writeStorages {
            let rounds = try XCTUnwrap(report.writes[storage], "no writes for \(storage)")
            XCTAssertEqual(rounds.count, 1)
            for (result, clients) in [(rounds[0].single, 1), (rounds[0].concurrent, 3)] {
                XCTAssertEqual(result.clients, clients, "\(storage)")
                XCTAssertGreaterThan(result.creates, 0, "\(storage)")
                XCTAssertEqual(result.latency.count, UInt64(result.creates), "one latency sample per create (\(storage))")
                XCTAssertLessThanOrEqual(result.latency.p50, result.latency.p99)
            }
        }
        for storage in settings.lockStorages {
            let result = try XCTUnwrap(report.medianLock(storage), "no lock figure for \(storage)")
            XCTAssertGreaterThan(result.pairs, 0)
            XCTAssertEqual(result.latency.count, UInt64(result.pairs))
            XCTAssertEqual(result.overlaps, 0)
        }

        XCTAssertEqual(report.datasets.count, 1)
        let dataset = try XCTUnwrap(report.datasets.first)
        XCTAssertEqual(dataset.nodes, 250)
        XCTAssertGreaterThan(dataset.dataDirectoryBytes, 0, "the log holds the nodes")
        XCTAssertEqual(dataset.recoveries.map(\.diskState), [.logOnly, .logOnly, .snapshot])
        XCTAssertEqual(dataset.recoveries.map(\.stop), [.killed, .terminated, .killed])
        for recovery in dataset.recoveries {
            XCTAssertEqual(recovery.samples.count, 2, "\(recovery.diskState) after \(recovery.stop)")
            for sample in recovery.samples {
                XCTAssertEqual(sample.nodesFound, 250, "every node survives (\(recovery.diskState) after \(recovery.stop))")
                XCTAssertGreaterThan(sample.readyNanoseconds, 0)
                XCTAssertGreaterThan(sample.residentBytes, 0)
                XCTAssertGreaterThanOrEqual(sample.peakResidentBytes, sample.residentBytes)
                if recovery.diskState == .logOnly {
                    XCTAssertGreaterThanOrEqual(sample.recordsReplayed, 250, "log only: every create is replayed")
                } else {
                    XCTAssertGreaterThanOrEqual(sample.recordsReplayed, 0)
                    XCTAssertLessThan(sample.recordsReplayed, 250, "the snapshot covers the nodes")
                }
            }
        }
        let snapshot = dataset.snapshot
        XCTAssertEqual(snapshot.nodes, 250)
        XCTAssertGreaterThan(snapshot.snapshotBytes, 250 * 16, "the snapshot holds every node's data")
        XCTAssertGreaterThan(snapshot.baseline.count, 0, "gets before the snapshot")
        XCTAssertGreaterThan(snapshot.during.count, 0, "gets while it was taken")

        let markdown = report.markdown
        for storage in DurabilityStorage.allCases {
            XCTAssertTrue(markdown.contains("| `\(storage)` |"), "the table has a row for \(storage)")
        }
        XCTAssertEqual(markdown.components(separatedBy: "| log only |").count - 1, 2)
        XCTAssertEqual(markdown.components(separatedBy: "| snapshot + log tail |").count - 1, 1)
    }

    func testLoaderCountsDirectoriesAndLeaves() throws {
        var options = TestDaemon.Options()
        options.logLevel = "warning"
        let daemon = try TestDaemon(options)
        defer { daemon.stop() }
        let endpoint = Endpoint.unix(path: daemon.socketPath)
        // 7 per directory, 30 nodes: d0 + 7 leaves, d1 + 7, d2 + 7, d3 + 5.
        let loaded = try loadPersistentNodes(endpoint: endpoint, count: 30, directory: "/smoke/load", perDirectory: 7, batch: 4)
        XCTAssertEqual(loaded.nodes, 30)
        XCTAssertEqual(try countLoadedNodes(endpoint: endpoint, directory: "/smoke/load"), 30)
        let client = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: 5_000, clientName: "smoke-check")
        guard case .children(_, let names, _) = try client.call(.children(path: "/smoke/load/d3", watch: false)) else {
            return XCTFail("children did not return names")
        }
        XCTAssertEqual(names.sorted(), ["n0", "n1", "n2", "n3", "n4"])
    }
}
