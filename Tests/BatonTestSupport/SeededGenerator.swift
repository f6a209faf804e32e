/// SplitMix64: a small seeded generator, so randomized tests and simulations replay from their seed.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }

    /// A number in 0..<bound.
    public mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
    /// True `percent` times in a hundred.
    public mutating func chance(_ percent: Int) -> Bool { below(100) < percent }

    /// A generator for one part of a run, independent of how much the other parts drew.
    public static func derived(_ seed: UInt64, _ parts: UInt64...) -> SeededGenerator {
        var random = SeededGenerator(seed: seed)
        for part in parts { random = SeededGenerator(seed: random.next() ^ (part &* 0xD1B5_4A32_D192_ED03)) }
        return random
    }
}
