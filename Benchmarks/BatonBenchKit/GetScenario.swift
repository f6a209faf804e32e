import BatonProtocol
import Histogram

/// Issue 2's figures: `get` of one small node over N connections, each keeping `depth` requests in
/// flight (1 = one at a time). Latency is per request: from the write of its batch to its reply.
public struct GetResult: Sendable {
    public var connections: Int
    public var depth: Int
    public var requests: Int
    public var elapsedSeconds: Double
    public var latency: LatencySummary
    public var requestsPerSecond: Double { Double(requests) / elapsedSeconds }
}

public func runBatonGets(endpoint: Endpoint, connections: Int, depth: Int, seconds: Double,
                         options: ClientOptions, key: String) throws(BenchError) -> GetResult {
    precondition(connections > 0 && depth > 0 && seconds > 0)
    let setup = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: options.batonSessionTimeoutMilliseconds,
                                    clientName: "gets-setup")
    _ = try setup.call(.create(path: key, data: [UInt8](repeating: 0x61, count: 16), mode: .persistent))

    struct Outcome: Sendable {
        var requests: Int
        var histogram: Histogram<UInt64>?
        var error: String?
    }
    let outcomes = Collector<Outcome>()
    let start = StartLine(connections)
    runThreads(connections) { index in
        do throws(BenchError) {
            let client = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: options.batonSessionTimeoutMilliseconds,
                                             clientName: "gets-\(index)")
            var histogram = makeLatencyHistogram()
            let batch = [Request](repeating: .get(path: key, watch: false), count: depth)
            start.arriveAndWait()
            let deadline = MonotonicClock.nanoseconds() + UInt64(seconds * 1e9)
            var requests = 0
            while MonotonicClock.nanoseconds() < deadline {
                let sent = MonotonicClock.nanoseconds()
                _ = try client.sendBatch(batch)
                for _ in 0..<depth {
                    let reply = try client.receiveReply()
                    if case .failure(let error) = reply.result { throw BenchError("get: \(error)") }
                    histogram.recordNanoseconds(MonotonicClock.nanoseconds() - sent)
                }
                requests += depth
            }
            outcomes.append(Outcome(requests: requests, histogram: histogram, error: nil))
        } catch {
            outcomes.append(Outcome(requests: 0, histogram: nil, error: "\(error)"))
            start.arriveAndWait()
        }
    }
    let results = outcomes.elements
    if let failure = results.compactMap(\.error).first { throw BenchError(failure) }
    var merged = makeLatencyHistogram()
    for result in results { if let histogram = result.histogram { merged.add(histogram) } }
    return GetResult(connections: connections, depth: depth, requests: results.reduce(0) { $0 + $1.requests },
                     elapsedSeconds: seconds, latency: LatencySummary(merged))
}
