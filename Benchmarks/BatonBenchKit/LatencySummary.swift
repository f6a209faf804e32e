import Histogram

/// Percentiles of a latency histogram, in nanoseconds.
public struct LatencySummary: Sendable, Equatable {
    public var count: UInt64
    public var p50: UInt64
    public var p99: UInt64
    public var p999: UInt64
    public var max: UInt64

    public init(_ histogram: Histogram<UInt64>) {
        count = histogram.totalCount
        p50 = histogram.valueAtPercentile(50)
        p99 = histogram.valueAtPercentile(99)
        p999 = histogram.valueAtPercentile(99.9)
        max = histogram.max
    }

    public init(count: UInt64, p50: UInt64, p99: UInt64, p999: UInt64, max: UInt64) {
        self.count = count
        self.p50 = p50
        self.p99 = p99
        self.p999 = p999
        self.max = max
    }
}

/// A histogram of nanoseconds from 100 ns to 100 s, three significant digits.
func makeLatencyHistogram() -> Histogram<UInt64> {
    var histogram = Histogram<UInt64>(lowestDiscernibleValue: 100, highestTrackableValue: 100_000_000_000, numberOfSignificantValueDigits: .three)
    histogram.autoResize = true
    return histogram
}

extension Histogram where Count == UInt64 {
    mutating func recordNanoseconds(_ value: UInt64) {
        _ = record(Swift.max(value, 100))
    }
}
