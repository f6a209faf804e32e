#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A latency histogram with fixed buckets, confined to one thread: recording is a short scan and
/// three adds, no lock and no allocation, so it can sit on the request path. The metrics endpoint
/// renders it as a Prometheus histogram (`exposition`).
public struct LatencyHistogram: Sendable, Equatable {
    /// Upper bounds of the buckets, in nanoseconds, ascending; a last `+Inf` bucket is implied.
    public let boundsNanoseconds: [UInt64]
    /// Observations per bucket (not cumulative); one more slot than bounds, for `+Inf`.
    public private(set) var counts: [UInt64]
    public private(set) var count: UInt64 = 0
    public private(set) var sumNanoseconds: UInt64 = 0

    public init(boundsNanoseconds: [UInt64]) {
        precondition(!boundsNanoseconds.isEmpty && zip(boundsNanoseconds, boundsNanoseconds.dropFirst()).allSatisfy { $0 < $1 },
                     "bucket bounds must be ascending")
        self.boundsNanoseconds = boundsNanoseconds
        counts = [UInt64](repeating: 0, count: boundsNanoseconds.count + 1)
    }

    public mutating func record(nanoseconds: UInt64) {
        var index = 0
        while index < boundsNanoseconds.count && nanoseconds > boundsNanoseconds[index] { index += 1 }
        counts[index] += 1
        count += 1
        sumNanoseconds &+= nanoseconds
    }

    /// Buckets from 50 µs to 1 s: a request served, an fsync.
    public static let serviceBounds: [UInt64] = [
        50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
        25_000_000, 50_000_000, 100_000_000, 250_000_000, 500_000_000, 1_000_000_000,
    ]
    /// Buckets from 100 µs to 5 minutes: waiting for a lock.
    public static let waitBounds: [UInt64] = [
        100_000, 1_000_000, 5_000_000, 10_000_000, 50_000_000, 100_000_000, 500_000_000,
        1_000_000_000, 5_000_000_000, 10_000_000_000, 30_000_000_000, 60_000_000_000, 300_000_000_000,
    ]

    /// The Prometheus text (format 0.0.4) of this histogram in seconds: HELP, TYPE, cumulative
    /// `_bucket` series with `le`, `_sum` and `_count`.
    public func exposition(name: String, help: String) -> String {
        var text = "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        var cumulative: UInt64 = 0
        for (index, bound) in boundsNanoseconds.enumerated() {
            cumulative += counts[index]
            text += "\(name)_bucket{le=\"\(LatencyHistogram.seconds(bound))\"} \(cumulative)\n"
        }
        text += "\(name)_bucket{le=\"+Inf\"} \(count)\n"
        text += "\(name)_sum \(LatencyHistogram.seconds(sumNanoseconds))\n"
        text += "\(name)_count \(count)\n"
        return text
    }

    /// A bound or sum as Prometheus writes seconds: "0.001", "1", "2.5e-05".
    public static func seconds(_ nanoseconds: UInt64) -> String {
        let value = Double(nanoseconds) / 1e9
        return value == value.rounded() ? String(Int64(value)) : String(value)
    }

    /// CLOCK_MONOTONIC, in nanoseconds: what durations are measured with.
    public static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
