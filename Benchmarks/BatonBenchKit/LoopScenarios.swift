import Foundation
import Histogram

/// Result of a scenario where clients acquire and release in a loop.
public struct LoopResult: Sendable {
    public var clients: Int
    /// Acquire+release pairs completed in all (= grants).
    public var pairs: Int
    public var elapsedSeconds: Double
    /// Uncontended and spread: acquire+release time. Contended: wait, from sending acquire to holding.
    public var latency: LatencySummary
    public var grantsPerClient: [Int]
    /// Times a client found another client holding the same exclusive lock: must be 0.
    public var overlaps: Int
    /// Failed tries (Redis) or watch wake-ups (ZooKeeper) in all.
    public var wakeups: Int
    /// Server CPU (all server processes given) over the measured interval; nil when not known.
    public var serverCPUNanoseconds: UInt64? = nil
    /// The clients' CPU over the measured interval: this process's, all client threads together
    /// (they share the machine's cores with the server: what a CPU-bound row can reach depends on both).
    public var clientCPUNanoseconds: UInt64? = nil

    public var pairsPerSecond: Double { Double(pairs) / elapsedSeconds }
    public var fewestGrants: Int { grantsPerClient.min() ?? 0 }
    public var mostGrants: Int { grantsPerClient.max() ?? 0 }
    /// Server CPU per acquire+release pair (per grant in the contended scenario), nanoseconds.
    public var serverCPUNanosecondsPerPair: Double? {
        guard let serverCPUNanoseconds, pairs > 0 else { return nil }
        return Double(serverCPUNanoseconds) / Double(pairs)
    }
    /// The clients' CPU per pair (per grant in the contended scenario), nanoseconds.
    public var clientCPUNanosecondsPerPair: Double? {
        guard let clientCPUNanoseconds, pairs > 0 else { return nil }
        return Double(clientCPUNanoseconds) / Double(pairs)
    }
}

/// Counts holders of one lock as the clients see them, to catch two at once.
final class HolderCount: @unchecked Sendable {
    private let lock = NSLock()
    private var holders = 0
    private(set) var overlaps = 0
    func enter() {
        lock.lock()
        holders += 1
        if holders > 1 { overlaps += 1 }
        lock.unlock()
    }
    func leave() {
        lock.lock()
        holders -= 1
        lock.unlock()
    }
}

public enum LoopScenario: String, Sendable, CaseIterable {
    /// One client, one lock.
    case uncontended
    /// N clients on one lock.
    case contended
    /// N clients, each on its own lock.
    case spread
}

/// Runs one of the loop scenarios for `seconds` (after a short warm-up for the single client).
/// Client `i` talks to `targets[i % targets.count]` (several sidecars or members of one service);
/// the CPU of `serverProcessIDs` is sampled when the measured interval starts and when it ends.
public func runLoop(_ scenario: LoopScenario, targets: [Target], clients requestedClients: Int, seconds: Double,
                    options: ClientOptions, lockPrefix: String, serverProcessIDs: [Int32] = []) throws(BenchError) -> LoopResult {
    precondition(!targets.isEmpty)
    let clients = scenario == .uncontended ? 1 : requestedClients
    precondition(clients > 0 && seconds > 0)
    let histograms = Collector<(index: Int, histogram: Histogram<UInt64>, grants: Int, wakeups: Int)>()
    let failures = Collector<BenchError>()
    let startLine = StartLine(clients)
    let counters = (0..<clients).map { _ in HolderCount() }
    let begin = Collector<UInt64>()
    let meter = Collector<CPUMeter>()
    let clientCPUStart = Collector<UInt64>()
    runThreads(clients) { index in
        let lock = scenario == .spread ? "\(lockPrefix)-\(index)" : lockPrefix
        let counter = counters[scenario == .spread ? index : 0]
        var histogram = makeLatencyHistogram()
        var grants = 0
        var client: LockClient?
        do {
            client = try makeClient(targets[index % targets.count], options: options)
            // Warm-up: first use of the lock creates its directory (ZooKeeper) and fills caches.
            let hold = try client!.acquire(lock)
            try client!.release(lock, hold: hold)
        } catch {
            failures.append(error as! BenchError)
        }
        startLine.arriveAndWait()
        guard let client, failures.elements.isEmpty else { return }
        if index == 0 {
            meter.append(CPUMeter(serverProcessIDs))
            clientCPUStart.append(ownCPUNanoseconds())
        }
        let start = MonotonicClock.nanoseconds()
        if index == 0 { begin.append(start) }
        let deadline = start + UInt64(seconds * 1e9)
        do {
            while true {
                let before = MonotonicClock.nanoseconds()
                let hold = try client.acquire(lock)
                let granted = MonotonicClock.nanoseconds()
                counter.enter()
                counter.leave()
                try client.release(lock, hold: hold)
                let released = MonotonicClock.nanoseconds()
                histogram.recordNanoseconds(scenario == .contended ? granted - before : released - before)
                grants += 1
                if released >= deadline { break }
            }
        } catch {
            failures.append(error as! BenchError)
        }
        client.finish()
        histograms.append((index, histogram, grants, client.wakeups))
    }
    let end = MonotonicClock.nanoseconds()
    let serverCPU = meter.elements.first?.elapsed()
    let clientCPU = clientCPUStart.elements.first.map { ownCPUNanoseconds() - $0 }
    if let failure = failures.elements.first { throw failure }
    var total = makeLatencyHistogram()
    var grantsPerClient = [Int](repeating: 0, count: clients)
    var wakeups = 0
    for entry in histograms.elements {
        total.add(entry.histogram)
        grantsPerClient[entry.index] = entry.grants
        wakeups += entry.wakeups
    }
    let start = begin.elements.first ?? end
    return LoopResult(clients: clients, pairs: grantsPerClient.reduce(0, +), elapsedSeconds: Double(end - start) / 1e9,
                      latency: LatencySummary(total), grantsPerClient: grantsPerClient,
                      overlaps: counters.reduce(0) { $0 + $1.overlaps }, wakeups: wakeups,
                      serverCPUNanoseconds: serverCPU, clientCPUNanoseconds: clientCPU)
}
