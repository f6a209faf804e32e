import BatonClient
import BatonProtocol
import Dispatch
import Histogram

/// Scenario 1 through the Swift client library users get (Sources/BatonClient), beside the
/// benchmark's raw socket client: one client, one lock, acquire+release in a loop.
public enum LibraryClient: String, Sendable, CaseIterable {
    /// `BlockingClient`: synchronous calls on the caller's thread.
    case blocking
    /// `BatonClient`: async/await, from one task.
    case async

    public var title: String {
        switch self {
        case .blocking: return "BlockingClient"
        case .async: return "BatonClient (async)"
        }
    }
}

public func runLibraryUncontended(_ kind: LibraryClient, endpoint: Endpoint, seconds: Double, options: ClientOptions,
                                  lock: String, serverProcessIDs: [Int32] = []) throws(BenchError) -> LoopResult {
    precondition(seconds > 0)
    struct Measured: Sendable {
        var pairs: Int
        var histogram: Histogram<UInt64>
        var elapsedNanoseconds: UInt64
        var serverCPUNanoseconds: UInt64?
    }
    // The library's default options (heartbeats on, as users get them) with the bench's session timeout.
    // (Its `ClientOptions` is shadowed here by the bench's own: `.init` is inferred from `connect`.)
    let clientName = "bench-\(kind.rawValue)"
    let sessionTimeout = Duration.milliseconds(Int(options.batonSessionTimeoutMilliseconds))
    let duration = UInt64(seconds * 1e9)
    let measured: Result<Measured, BenchError>
    switch kind {
    case .blocking:
        measured = Result { () throws(BenchError) -> Measured in
            let client: BlockingClient
            do { client = try BlockingClient.connect(to: endpoint, options: .init(clientName: clientName, sessionTimeout: sessionTimeout)) } catch {
                throw BenchError("BlockingClient.connect: \(error)")
            }
            defer { try? client.closeSession() }
            do {
                try client.release(try client.acquire(lock))
                var histogram = makeLatencyHistogram()
                let meter = CPUMeter(serverProcessIDs)
                let start = MonotonicClock.nanoseconds()
                var now = start, pairs = 0
                while now < start + duration {
                    try client.release(try client.acquire(lock))
                    let after = MonotonicClock.nanoseconds()
                    histogram.recordNanoseconds(after - now)
                    now = after
                    pairs += 1
                }
                return Measured(pairs: pairs, histogram: histogram, elapsedNanoseconds: now - start, serverCPUNanoseconds: meter.elapsed())
            } catch {
                throw BenchError("BlockingClient: \(error)")
            }
        }
    case .async:
        let outcome = Collector<Result<Measured, BenchError>>()
        let done = DispatchSemaphore(value: 0)
        Task {
            defer { done.signal() }
            do {
                let client = try await BatonClient.connect(to: endpoint, options: .init(clientName: clientName, sessionTimeout: sessionTimeout))
                try await client.release(try await client.acquire(lock))
                var histogram = makeLatencyHistogram()
                let meter = CPUMeter(serverProcessIDs)
                let start = MonotonicClock.nanoseconds()
                var now = start, pairs = 0
                while now < start + duration {
                    try await client.release(try await client.acquire(lock))
                    let after = MonotonicClock.nanoseconds()
                    histogram.recordNanoseconds(after - now)
                    now = after
                    pairs += 1
                }
                let cpu = meter.elapsed()
                try? await client.closeSession()
                outcome.append(.success(Measured(pairs: pairs, histogram: histogram, elapsedNanoseconds: now - start,
                                                 serverCPUNanoseconds: cpu)))
            } catch {
                outcome.append(.failure(BenchError("BatonClient (async): \(error)")))
            }
        }
        done.wait()
        measured = outcome.elements.first ?? .failure(BenchError("BatonClient (async): no result"))
    }
    let result = try measured.get()
    return LoopResult(clients: 1, pairs: result.pairs, elapsedSeconds: Double(result.elapsedNanoseconds) / 1e9,
                      latency: LatencySummary(result.histogram), grantsPerClient: [result.pairs], overlaps: 0, wakeups: 0,
                      serverCPUNanoseconds: result.serverCPUNanoseconds)
}
