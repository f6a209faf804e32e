import Foundation
import BatonProtocol

/// Scenario 6: namespace writes (and reads), one request at a time, pipelined, and from many clients.
public enum NamespaceMode: Hashable, Sendable, CustomStringConvertible {
    /// One client, one request in flight.
    case oneAtATime
    /// One client keeping `depth` requests in flight (sent in one write, then every reply read).
    case pipelined(Int)
    /// `clients` connections on their own threads, each one request at a time.
    case clients(Int)

    public var description: String {
        switch self {
        case .oneAtATime: return "one at a time"
        case .pipelined(let depth): return "pipelined \(depth) deep"
        case .clients(let count): return "\(count) clients"
        }
    }
}

public struct NamespaceResult: Sendable {
    /// Operations per second by operation name ("get", "set", "create") and mode.
    public var operationsPerSecond: [String: [NamespaceMode: Double]]
}

public let namespaceOperations = ["get", "set", "create"]

/// Runs `batch` (which returns how many operations it completed) until `seconds` have passed.
func operationsPerSecond(seconds: Double, _ batch: () throws(BenchError) -> Int) throws(BenchError) -> Double {
    let start = MonotonicClock.nanoseconds()
    let deadline = start + UInt64(seconds * 1e9)
    var count = 0
    var now = start
    while now < deadline {
        count += try batch()
        now = MonotonicClock.nanoseconds()
    }
    return Double(count) / (Double(now - start) / 1e9)
}

/// One connection's work: `batch(depth)` sends `depth` requests of the operation and waits for their replies.
typealias NamespaceWorker = (_ depth: Int) throws(BenchError) -> Int

/// Measures `mode`: `makeWorker(index)` opens connection `index` (on the thread that will use it).
func namespaceRate(_ mode: NamespaceMode, seconds: Double,
                   makeWorker: @escaping @Sendable (Int) throws(BenchError) -> NamespaceWorker) throws(BenchError) -> Double {
    switch mode {
    case .oneAtATime:
        let worker = try makeWorker(0)
        return try operationsPerSecond(seconds: seconds) { () throws(BenchError) in try worker(1) }
    case .pipelined(let depth):
        let worker = try makeWorker(0)
        return try operationsPerSecond(seconds: seconds) { () throws(BenchError) in try worker(depth) }
    case .clients(let count):
        let counts = Collector<Result<Int, BenchError>>()
        let startLine = StartLine(count)
        let window = Collector<UInt64>()
        runThreads(count) { index in
            let worker: NamespaceWorker
            do { worker = try makeWorker(index) } catch {
                counts.append(.failure(error as! BenchError))
                startLine.arriveAndWait()
                return
            }
            startLine.arriveAndWait()
            let start = MonotonicClock.nanoseconds()
            if index == 0 { window.append(start) }
            let deadline = start + UInt64(seconds * 1e9)
            var done = 0
            do {
                while MonotonicClock.nanoseconds() < deadline { done += try worker(1) }
                counts.append(.success(done))
            } catch {
                counts.append(.failure(error as! BenchError))
            }
        }
        let end = MonotonicClock.nanoseconds()
        var total = 0
        for result in counts.elements { total += try result.get() }
        let start = window.elements.first ?? end
        return Double(total) / max(Double(end - start) / 1e9, 1e-9)
    }
}

/// Baton: get and set of one 16-byte node, create of fresh persistent nodes, each for `seconds` per mode.
public func runBatonNamespace(endpoint: Endpoint, seconds: Double, modes: [NamespaceMode], operations: [String] = namespaceOperations,
                              options: ClientOptions, directory: String) throws(BenchError) -> NamespaceResult {
    let setup = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: options.batonSessionTimeoutMilliseconds,
                                    clientName: "namespace")
    let data = [UInt8](repeating: 0x61, count: 16)
    _ = try? setup.call(.create(path: "/bench", data: [], mode: .persistent))
    _ = try setup.call(.create(path: directory, data: [], mode: .persistent))
    let key = directory + "/key"
    _ = try setup.call(.create(path: key, data: data, mode: .persistent))
    var results: [String: [NamespaceMode: Double]] = [:]
    for (round, operation) in operations.enumerated() {
        for (modeIndex, mode) in modes.enumerated() {
            results[operation, default: [:]][mode] = try namespaceRate(mode, seconds: seconds) { (index: Int) throws(BenchError) -> NamespaceWorker in
                let client = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: options.batonSessionTimeoutMilliseconds,
                                                 clientName: "namespace-\(index)")
                var created = 0
                let prefix = "\(directory)/r\(round)m\(modeIndex)c\(index)n"
                return { (depth: Int) throws(BenchError) -> Int in
                    var batch: [Request] = []
                    batch.reserveCapacity(depth)
                    for _ in 0..<depth {
                        switch operation {
                        case "get": batch.append(.get(path: key, watch: false))
                        case "set": batch.append(.set(path: key, data: data, expectedVersion: anyVersion))
                        default:
                            created += 1
                            batch.append(.create(path: "\(prefix)\(created)", data: data, mode: .persistent))
                        }
                    }
                    _ = try client.sendBatch(batch)
                    for _ in 0..<depth {
                        let reply = try client.receiveReply()
                        if case .failure(let error) = reply.result { throw BenchError("batond \(operation): \(error)") }
                    }
                    return depth
                }
            }
        }
    }
    return NamespaceResult(operationsPerSecond: results)
}

/// Redis as the reference: GET and SET of one key, `SET NX` of fresh keys as "create".
public func runRedisNamespace(host: String, port: UInt16, seconds: Double, modes: [NamespaceMode], operations: [String] = namespaceOperations,
                              options: ClientOptions, prefix: String) throws(BenchError) -> NamespaceResult {
    let setup = try RedisLockClient(host: host, port: port, ttlMilliseconds: options.redisTTLMilliseconds,
                                    backoffMicroseconds: options.redisBackoffMicroseconds)
    let value = String(repeating: "a", count: 16)
    let key = prefix + "/key"
    _ = try setup.command(["SET", key, value])
    var results: [String: [NamespaceMode: Double]] = [:]
    for (round, operation) in operations.enumerated() {
        for (modeIndex, mode) in modes.enumerated() {
            results[operation, default: [:]][mode] = try namespaceRate(mode, seconds: seconds) { (index: Int) throws(BenchError) -> NamespaceWorker in
                let client = try RedisLockClient(host: host, port: port, ttlMilliseconds: options.redisTTLMilliseconds,
                                                 backoffMicroseconds: options.redisBackoffMicroseconds)
                var created = 0
                let fresh = "\(prefix)/r\(round)m\(modeIndex)c\(index)n"
                return { (depth: Int) throws(BenchError) -> Int in
                    var batch: [[String]] = []
                    for _ in 0..<depth {
                        switch operation {
                        case "get": batch.append(["GET", key])
                        case "set": batch.append(["SET", key, value])
                        default:
                            created += 1
                            batch.append(["SET", "\(fresh)\(created)", value, "NX"])
                        }
                    }
                    try client.pipeline(batch)
                    return depth
                }
            }
        }
    }
    return NamespaceResult(operationsPerSecond: results)
}

/// Scenario 7: resident memory of batond, idle, with N nodes, and with S open sessions.
public struct FootprintResult: Sendable {
    public var nodes: Int
    public var sessions: Int
    public var baselineBytes: UInt64
    public var withNodesBytes: UInt64
    public var withSessionsBytes: UInt64
}

public func runBatonFootprint(endpoint: Endpoint, serverProcessID: Int32, nodes: Int, sessions: Int,
                              options: ClientOptions, directory: String, nodesPerSession: Int = 50_000) throws(BenchError) -> FootprintResult {
    precondition(nodesPerSession > 512, "a session creates nodes 257 at a time")
    guard let baseline = residentBytes(serverProcessID) else { throw BenchError("footprint: no /proc/\(serverProcessID)/status") }
    var client = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: options.batonSessionTimeoutMilliseconds,
                                     clientName: "footprint")
    _ = try? client.call(.create(path: "/bench", data: [], mode: .persistent))
    _ = try client.call(.create(path: directory, data: [], mode: .persistent))
    // 1,000 directories of up to 1,000 nodes each, 16 bytes of data per node, created 256 at a time,
    // each session creating at most `nodesPerSession` (batond's quota, --nodes-per-session-max: 100,000 by default).
    let data = [UInt8](repeating: 0x62, count: 16)
    let perDirectory = 1_000
    var created = 0
    var createdBySession = 0
    var batch: [Request] = []
    while created < nodes {
        if createdBySession + 512 > nodesPerSession {
            client = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: options.batonSessionTimeoutMilliseconds,
                                         clientName: "footprint-\(created)")
            createdBySession = 0
        }
        batch.removeAll(keepingCapacity: true)
        while batch.count < 256 && created < nodes {
            let parent = "\(directory)/d\(created / perDirectory)"
            if created % perDirectory == 0 { batch.append(.create(path: parent, data: [], mode: .persistent)) }
            batch.append(.create(path: "\(parent)/n\(created % perDirectory)", data: data, mode: .persistent))
            created += 1
        }
        _ = try client.sendBatch(batch)
        for _ in 0..<batch.count {
            let reply = try client.receiveReply()
            if case .failure(let error) = reply.result { throw BenchError("footprint create: \(error)") }
        }
        createdBySession += batch.count
    }
    MonotonicClock.sleep(microseconds: 200_000)
    let withNodes = residentBytes(serverProcessID) ?? 0
    var open: [BatonLockClient] = []
    open.reserveCapacity(sessions)
    for index in 0..<sessions {
        open.append(try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: options.batonSessionTimeoutMilliseconds,
                                        clientName: "footprint-\(index)", bufferBytes: 256))
    }
    MonotonicClock.sleep(microseconds: 200_000)
    let withSessions = residentBytes(serverProcessID) ?? 0
    open.removeAll()
    return FootprintResult(nodes: nodes, sessions: sessions, baselineBytes: baseline, withNodesBytes: withNodes,
                           withSessionsBytes: withSessions)
}
