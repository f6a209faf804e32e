import BatonFuzzSupport
import BatonTestSupport
import XCTest

/// The fuzz targets' bodies on their seed corpus and on seeded mutations of it, in every `swift test`:
/// the long runs are `scripts/fuzz.sh`, this keeps the harnesses working and replays what they check.
final class FuzzCorpusTests: XCTestCase {
    func corpus() throws -> [[UInt8]] {
        try GoldenVectors.files.flatMap { try GoldenVectors.load($0) }.map { Array($0.bytes.dropFirst(4)) }
    }

    func testFrameFuzzerOnTheVectorsAndTheirMutations() throws {
        let seeds = try corpus()
        XCTAssertGreaterThan(seeds.count, 40)
        var random = SeededGenerator(seed: 0xF022)
        for seed in seeds {
            FrameFuzzer.run(seed)
            for _ in 0..<50 { FrameFuzzer.run(mutate(seed, &random)) }
        }
    }

    func testEngineFuzzerOnRandomScripts() {
        var random = SeededGenerator(seed: 0xE461)
        for _ in 0..<200 {
            let script = (0..<random.below(600)).map { _ in UInt8.random(in: 0...255, using: &random) }
            EngineFuzzer.run(script)
        }
    }

    func testEngineFuzzerOnVectorFrames() throws {
        // Each vector as a raw frame from client 1 (operation 0), its length first.
        for seed in try corpus() where seed.count < 256 {
            EngineFuzzer.run([0, UInt8(seed.count)] + seed + [0x05, 0xff, 0x02, 0x00, 0x00])
        }
    }

    func mutate(_ bytes: [UInt8], _ random: inout SeededGenerator) -> [UInt8] {
        var result = bytes
        for _ in 0...random.below(4) {
            switch random.below(4) {
            case 0 where !result.isEmpty: result[random.below(result.count)] ^= UInt8(1 << random.below(8))
            case 1 where !result.isEmpty: result.removeSubrange(random.below(result.count)...)
            case 2: result.insert(UInt8.random(in: 0...255, using: &random), at: random.below(result.count + 1))
            default: if !result.isEmpty { result[random.below(result.count)] = [0x00, 0xff, 0x7f, 0x80][random.below(4)] }
            }
        }
        return result
    }
}
