import BatonProtocol
import Foundation
import Histogram

/// Creates of fresh persistent nodes by `clients` connections, each one request at a time.
public struct DurabilityWriteResult: Sendable {
    public var clients: Int
    public var creates: Int
    public var elapsedSeconds: Double
    /// From sending a create to its reply (so, under `--fsync always`, including the fsync).
    public var latency: LatencySummary
    public var createsPerSecond: Double { Double(creates) / elapsedSeconds }
}

/// Each client creates `<directory>/c<index>/n<k>` (16 bytes of data) for `seconds`, after a warm-up.
public func runDurabilityWrites(endpoint: Endpoint, clients: Int, seconds: Double,
                                directory: String) throws(BenchError) -> DurabilityWriteResult {
    precondition(clients > 0 && seconds > 0)
    let setup = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: 10_000, clientName: "durability-setup")
    try createParents(of: directory + "/c", with: setup)
    let results = Collector<(histogram: Histogram<UInt64>, creates: Int)>()
    let failures = Collector<BenchError>()
    let startLine = StartLine(clients)
    let begin = Collector<UInt64>()
    let data = [UInt8](repeating: 0x77, count: 16)
    runThreads(clients) { index in
        let parent = "\(directory)/c\(index)"
        var client: BatonLockClient?
        do throws(BenchError) {
            client = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: 10_000, clientName: "durability-\(index)")
            _ = try client!.call(.create(path: parent, data: [], mode: .persistent))
            for warmUp in 0..<20 { _ = try client!.call(.create(path: "\(parent)/w\(warmUp)", data: data, mode: .persistent)) }
        } catch {
            failures.append(error)
        }
        startLine.arriveAndWait()
        guard let client, failures.elements.isEmpty else { return }
        var histogram = makeLatencyHistogram()
        var creates = 0
        let start = MonotonicClock.nanoseconds()
        if index == 0 { begin.append(start) }
        let deadline = start + UInt64(seconds * 1e9)
        do throws(BenchError) {
            var before = start
            while true {
                _ = try client.call(.create(path: "\(parent)/n\(creates)", data: data, mode: .persistent))
                let after = MonotonicClock.nanoseconds()
                histogram.recordNanoseconds(after - before)
                creates += 1
                if after >= deadline { break }
                before = after
            }
        } catch {
            failures.append(error)
        }
        results.append((histogram, creates))
    }
    let end = MonotonicClock.nanoseconds()
    if let failure = failures.elements.first { throw failure }
    var total = makeLatencyHistogram()
    var creates = 0
    for entry in results.elements {
        total.add(entry.histogram)
        creates += entry.creates
    }
    let start = begin.elements.first ?? end
    return DurabilityWriteResult(clients: clients, creates: creates, elapsedSeconds: Double(end - start) / 1e9,
                                 latency: LatencySummary(total))
}

/// Creates every ancestor of `path` (not `path` itself) that does not exist yet.
func createParents(of path: String, with client: BatonLockClient) throws(BenchError) {
    var prefix = ""
    let segments = path.split(separator: "/")
    for segment in segments.dropLast() {
        prefix += "/" + segment
        guard case .exists(let stat) = try client.call(.exists(path: prefix, watch: false)) else {
            throw BenchError("batond: exists did not return a stat")
        }
        if stat == nil { _ = try client.call(.create(path: prefix, data: [], mode: .persistent)) }
    }
}

/// Creates `count` persistent nodes under `directory` (created with its ancestors if missing): `directory/d<i>`
/// holds up to `perDirectory` nodes `n<j>` of `dataBytes` bytes; the directories count as nodes.
/// Pipelined: `batch` creates per write and two writes in flight. Returns nodes created and seconds.
public func loadPersistentNodes(endpoint: Endpoint, count: Int, directory: String, perDirectory: Int = 1_000,
                                dataBytes: Int = 16, batch: Int = 1_000) throws(BenchError) -> (nodes: Int, seconds: Double) {
    precondition(count > 0 && perDirectory > 0 && batch > 0)
    let client = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: 60_000, clientName: "durability-load")
    try createParents(of: directory + "/d", with: client)
    let data = [UInt8](repeating: 0x6e, count: dataBytes)
    let started = MonotonicClock.nanoseconds()
    var created = 0  // nodes asked for so far (directories and leaves)
    var leaves = 0
    var inFlight: [Int] = []  // request counts of the writes not answered yet
    var requests: [Request] = []
    func receive(_ replies: Int) throws(BenchError) {
        for _ in 0..<replies {
            let reply = try client.receiveReply()
            if case .failure(let error) = reply.result { throw BenchError("load: create failed: \(error)") }
        }
    }
    while created < count {
        requests.removeAll(keepingCapacity: true)
        while requests.count < batch && created < count {
            let parent = "\(directory)/d\(leaves / perDirectory)"
            if leaves % perDirectory == 0 {
                requests.append(.create(path: parent, data: [], mode: .persistent))
                created += 1
                if created == count { break }
            }
            requests.append(.create(path: "\(parent)/n\(leaves % perDirectory)", data: data, mode: .persistent))
            leaves += 1
            created += 1
        }
        _ = try client.sendBatch(requests)
        inFlight.append(requests.count)
        if inFlight.count >= 2 { try receive(inFlight.removeFirst()) }
    }
    for replies in inFlight { try receive(replies) }
    return (created, Double(MonotonicClock.nanoseconds() - started) / 1e9)
}

/// The nodes under `directory` as loaded by `loadPersistentNodes` (the directory itself not
/// counted): its directories and their children, from the stats.
public func countLoadedNodes(endpoint: Endpoint, directory: String) throws(BenchError) -> Int {
    let client = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: 10_000, clientName: "durability-count")
    guard case .children(_, let names, _) = try client.call(.children(path: directory, watch: false)) else {
        throw BenchError("batond: children did not return names")
    }
    var total = names.count
    for name in names {
        guard case .exists(let stat?) = try client.call(.exists(path: "\(directory)/\(name)", watch: false)) else {
            throw BenchError("batond: \(directory)/\(name) is missing")
        }
        total += Int(stat.childrenCount)
    }
    return total
}
