import BatonLocks
import Foundation
import XCTest

/// Seeded runs of `LockSimulation`. `BATON_SIMULATION_RUNS` raises the number of runs;
/// `BATON_SIMULATION_SEED` replays one seed.
final class LockSimulationTests: XCTestCase {
    func testRandomInterleavingsKeepTheLockInvariants() throws {
        let environment = ProcessInfo.processInfo.environment
        let seeds: [UInt64]
        if let text = environment["BATON_SIMULATION_SEED"], let seed = UInt64(text) {
            seeds = [seed]
        } else {
            let runs = environment["BATON_SIMULATION_RUNS"].flatMap(Int.init) ?? 1_000
            seeds = (0..<UInt64(runs)).map { 0x5EED_0000 + $0 }
        }
        var grants = 0
        var deadlocks = 0
        var reentries = 0
        var renewals = 0
        var delayedDeaths = 0
        for seed in seeds {
            for (delivery, reports) in [(MemoryLockNamespace.Delivery.immediate, false), (.deferred, false), (.immediate, true), (.deferred, true)] {
                let simulation = LockSimulation(seed: seed, delivery: delivery, reportsDeletions: reports)
                simulation.trace = environment["BATON_SIMULATION_TRACE"] != nil
                do {
                    try simulation.run(steps: 150)
                } catch {
                    XCTFail("\(error)")
                    return
                }
                grants += simulation.grantCount
                deadlocks += simulation.deadlockCount
                reentries += simulation.reentryCount
                renewals += simulation.renewalCount
                delayedDeaths += simulation.delayedDeaths
            }
        }
        XCTAssertGreaterThan(grants, seeds.count * 10, "the runs must actually grant locks")
        if seeds.count >= 100 {
            XCTAssertGreaterThan(deadlocks, 0, "the runs must close cycles")
            XCTAssertGreaterThan(reentries, 0, "the runs must reenter holds")
            XCTAssertGreaterThan(renewals, 0, "the runs must renew leases")
            XCTAssertGreaterThan(delayedDeaths, 0, "holders with a lock-delay must die")
        }
    }
}
