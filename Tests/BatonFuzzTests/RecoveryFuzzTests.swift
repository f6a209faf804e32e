import BatonFuzzSupport
import BatonTestSupport
import XCTest

/// The recovery fuzz target's body (`scripts/fuzz.sh recovery`) on its generated seeds and on
/// seeded mutations of them, in every `swift test`.
final class RecoveryFuzzTests: XCTestCase {
    /// The seeds are real data directories: each recovers, replaying the records the store wrote.
    func testSeedsRecover() {
        let seeds = RecoveryFuzzer.seeds()
        XCTAssertEqual(seeds.count, 8)
        let outcomes = seeds.map { RecoveryFuzzer.run($0.bytes) }
        for (seed, outcome) in zip(seeds, outcomes) {
            guard case .recovered = outcome else { return XCTFail("\(seed.name): \(outcome)") }
        }
        XCTAssertTrue(outcomes.contains(.recovered(records: 0, fromSnapshot: false)), "the empty directory")
        XCTAssertTrue(outcomes.contains { if case .recovered(let records, false) = $0 { records > 10 } else { false } },
                      "a log alone: \(outcomes)")
        XCTAssertTrue(outcomes.contains { if case .recovered(let records, true) = $0 { records > 3 } else { false } },
                      "a snapshot and the log after it: \(outcomes)")
    }

    /// Damaged directories recover or are refused by name, never crash; damage is seen (some are refused
    /// without repair), and repair recovers some of what is refused without it.
    func testMutatedSeedsRecoverOrAreRefused() {
        var random = SeededGenerator(seed: 0x2EC0)
        var refused = 0
        var repairedAfterRefusal = 0
        for seed in RecoveryFuzzer.seeds() where seed.bytes.count > 64 && seed.bytes[0] == 0 {
            for _ in 0..<60 {
                var damaged = seed.bytes
                for _ in 0...random.below(3) {
                    let index = 1 + random.below(damaged.count - 1)
                    damaged[index] ^= UInt8(1 << random.below(8))
                }
                let outcome = RecoveryFuzzer.run(damaged)
                guard outcome == .refusedByStore || outcome == .refusedByNamespace else { continue }
                refused += 1
                damaged[0] = 1
                if case .recovered = RecoveryFuzzer.run(damaged) { repairedAfterRefusal += 1 }
            }
        }
        XCTAssertGreaterThan(refused, 0)
        XCTAssertGreaterThan(repairedAfterRefusal, 0)
    }
}
