import XCTest
import Foundation
import BatonProtocol
import BatonTestSupport
@testable import BatonBenchKit

/// The multi-host measurements against a real one-member ensemble with two sidecars, briefly: clients
/// spread over the sidecars share one lock space, ZooKeeper requests are counted with `mntr`, and a
/// sidecar's death hands its lock to a waiter on the other sidecar (after the ZooKeeper session
/// timeout). Counts and outcomes only, never speed.
final class MultiHostSmokeTests: XCTestCase {
    func testSidecarsOverOneEnsemble() throws {
        guard ZooKeeperEnsemble.isInstalled else { throw XCTSkip("Debian's zookeeper is not installed (scripts/setup.sh)") }
        let ensemble = try ZooKeeperEnsemble(members: 1)
        let member = "127.0.0.1:\(ensemble.member(1).clientPort)"
        let store = "zookeeper://\(ensemble.connectString)/bench-smoke"
        // 2 s sessions (the ensemble ticks every 200 ms): short enough that the sidecar's death costs
        // little, long enough for a busy test machine.
        let first = try TestDaemon.zooKeeperSidecar(store: store, sessionTimeoutMilliseconds: 2_000)
        let second = try TestDaemon.zooKeeperSidecar(store: store, sessionTimeoutMilliseconds: 2_000)
        defer {
            _ = first.stop()
            _ = second.stop()
        }
        let sidecars: [Target] = [.baton(.unix(path: first.socketPath)), .baton(.unix(path: second.socketPath))]

        // One lock, clients on both sidecars: one queue in ZooKeeper, so never two holders.
        let contended = try runLoop(.contended, targets: sidecars, clients: 4, seconds: 0.3, options: ClientOptions(),
                                    lockPrefix: "/bench/smoke-multi", serverProcessIDs: [first.pid, second.pid])
        XCTAssertEqual(contended.overlaps, 0, "clients on two sidecars held one lock at once")
        XCTAssertGreaterThan(contended.fewestGrants, 0, "every client, on either sidecar, was served")
        XCTAssertNotNil(contended.serverCPUNanoseconds)

        // Requests per pair: the sidecar's and the direct recipe's, from the member's own counter.
        let packets = try zookeeperPacketsReceived([member])
        XCTAssertGreaterThan(packets, 0)
        for target in [sidecars[0], .zookeeper(connect: member)] {
            let counted = try zookeeperRequestsPerPair(targets: [target], members: [member], seconds: 0.2, options: ClientOptions(),
                                                       lock: "/bench/smoke-requests")
            XCTAssertGreaterThan(counted.pairs, 0, "\(target)")
            // A pair cannot cost ZooKeeper less than a create and a delete.
            XCTAssertGreaterThanOrEqual(counted.perPair, 2, "\(target)")
        }

        // A sidecar started for the purpose holds the lock and is killed; the waiter on `second` gets it.
        var options = ClientOptions()
        options.batonSessionTimeoutMilliseconds = 5_000
        let death = try runSidecarDeathTakeover(batondPath: try TestDaemon.executablePath(), store: store, sessionTimeoutMilliseconds: 2_000,
                                                waiterTarget: sidecars[1], samples: 1, options: options,
                                                lockPrefix: "/bench/smoke-sidecar-death")
        XCTAssertEqual(death.samplesNanoseconds.count, 1)
        XCTAssertGreaterThan(death.medianNanoseconds, 0)
    }
}
