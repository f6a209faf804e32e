import Foundation
import BatonProtocol

/// Scenario 6: namespace throughput, one request at a time and pipelined.
public struct NamespaceResult: Sendable {
    /// Operations per second by operation name ("get", "set", "create") and pipelining depth (1 = none).
    public var operationsPerSecond: [String: [Int: Double]]
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

/// Baton: get and set of one 16-byte node, create of fresh persistent nodes, each for `seconds`.
public func runBatonNamespace(endpoint: Endpoint, seconds: Double, depths: [Int], options: ClientOptions,
                              directory: String) throws(BenchError) -> NamespaceResult {
    let client = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: options.batonSessionTimeoutMilliseconds,
                                     clientName: "namespace")
    let data = [UInt8](repeating: 0x61, count: 16)
    _ = try? client.call(.create(path: "/bench", data: [], mode: .persistent))
    _ = try client.call(.create(path: directory, data: [], mode: .persistent))
    let key = directory + "/key"
    _ = try client.call(.create(path: key, data: data, mode: .persistent))
    var created = 0
    var results: [String: [Int: Double]] = [:]
    for operation in namespaceOperations {
        for depth in depths {
            results[operation, default: [:]][depth] = try operationsPerSecond(seconds: seconds) { () throws(BenchError) in
                var batch: [Request] = []
                batch.reserveCapacity(depth)
                for _ in 0..<depth {
                    switch operation {
                    case "get": batch.append(.get(path: key, watch: false))
                    case "set": batch.append(.set(path: key, data: data, expectedVersion: anyVersion))
                    default:
                        created += 1
                        batch.append(.create(path: "\(directory)/n\(created)", data: data, mode: .persistent))
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
    return NamespaceResult(operationsPerSecond: results)
}

/// Redis as the reference: GET and SET of one key, `SET NX` of fresh keys as "create".
public func runRedisNamespace(host: String, port: UInt16, seconds: Double, depths: [Int], options: ClientOptions,
                              prefix: String) throws(BenchError) -> NamespaceResult {
    let client = try RedisLockClient(host: host, port: port, ttlMilliseconds: options.redisTTLMilliseconds,
                                     backoffMicroseconds: options.redisBackoffMicroseconds)
    let value = String(repeating: "a", count: 16)
    let key = prefix + "/key"
    _ = try client.command(["SET", key, value])
    var created = 0
    var results: [String: [Int: Double]] = [:]
    for operation in namespaceOperations {
        for depth in depths {
            results[operation, default: [:]][depth] = try operationsPerSecond(seconds: seconds) { () throws(BenchError) in
                var batch: [[String]] = []
                for _ in 0..<depth {
                    switch operation {
                    case "get": batch.append(["GET", key])
                    case "set": batch.append(["SET", key, value])
                    default:
                        created += 1
                        batch.append(["SET", "\(prefix)/n\(created)", value, "NX"])
                    }
                }
                try client.pipeline(batch)
                return depth
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
                              options: ClientOptions, directory: String) throws(BenchError) -> FootprintResult {
    guard let baseline = residentBytes(serverProcessID) else { throw BenchError("footprint: no /proc/\(serverProcessID)/status") }
    let client = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: options.batonSessionTimeoutMilliseconds,
                                     clientName: "footprint")
    _ = try? client.call(.create(path: "/bench", data: [], mode: .persistent))
    _ = try client.call(.create(path: directory, data: [], mode: .persistent))
    // 1,000 directories of up to 1,000 nodes each, 16 bytes of data per node, created 256 at a time.
    let data = [UInt8](repeating: 0x62, count: 16)
    let perDirectory = 1_000
    var created = 0
    var batch: [Request] = []
    while created < nodes {
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
