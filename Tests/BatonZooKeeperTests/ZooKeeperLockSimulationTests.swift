import Foundation
import XCTest

/// Seeded runs of `ZooKeeperLockSimulation` (no ensemble needed). `BATON_SIMULATION_RUNS` raises the
/// number of runs; `BATON_SIMULATION_SEED` replays one seed; `BATON_SIMULATION_TRACE` prints its steps.
final class ZooKeeperLockSimulationTests: XCTestCase {
    func testRandomFaultsOverAFakeZooKeeperKeepTheLockInvariants() throws {
        let environment = ProcessInfo.processInfo.environment
        let seeds: [UInt64]
        if let text = environment["BATON_SIMULATION_SEED"], let seed = UInt64(text) {
            seeds = [seed]
        } else {
            let runs = environment["BATON_SIMULATION_RUNS"].flatMap(Int.init) ?? 300
            seeds = (0..<UInt64(runs)).map { 0x2B00_0000 + $0 }
        }
        var grants = 0
        var sessionsLost = 0
        for seed in seeds {
            let simulation = ZooKeeperLockSimulation(seed: seed)
            simulation.trace = environment["BATON_SIMULATION_TRACE"] != nil
            do {
                try simulation.run(steps: 300)
            } catch {
                return XCTFail("\(error)")
            }
            grants += simulation.grantCount
            sessionsLost += simulation.sessionsLost
        }
        XCTAssertGreaterThan(grants, seeds.count * 5, "the runs must actually grant locks")
        XCTAssertGreaterThan(sessionsLost, seeds.count / 10, "the runs must actually lose ZooKeeper sessions")
    }
}
