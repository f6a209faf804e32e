import Foundation
import BatonProtocol

/// Scenario 9: the cheapest requests, one at a time from one client, with the server's CPU per
/// request from /proc — what a request costs the server when there is no lock recipe behind it.
public enum RequestKind: String, Sendable, CaseIterable {
    /// Baton `ping`, Redis `PING` (ZooKeeper and etcd have no user-level ping).
    case ping
    /// A read of one 16-byte value: Baton `get`, Redis `GET`, ZooKeeper `getData`, etcd range
    /// (linearizable, etcd's default).
    case get
}

public struct RequestResult: Sendable {
    public var requests: Int
    public var elapsedSeconds: Double
    public var latency: LatencySummary
    public var serverCPUNanoseconds: UInt64?
    public var requestsPerSecond: Double { Double(requests) / elapsedSeconds }
    public var serverCPUNanosecondsPerRequest: Double? {
        guard let serverCPUNanoseconds, requests > 0 else { return nil }
        return Double(serverCPUNanoseconds) / Double(requests)
    }
}

/// Whether `target` has a request of this kind (nil from `runRequests` otherwise).
public func supports(_ kind: RequestKind, _ target: Target) -> Bool {
    switch (kind, target) {
    case (.get, _), (.ping, .baton), (.ping, .redis): return true
    default: return false
    }
}

/// Sends `kind` requests one at a time for `seconds` (after 200 to warm up) and reads the server's
/// CPU before and after.
public func runRequests(_ kind: RequestKind, target: Target, seconds: Double, options: ClientOptions, key: String,
                        serverProcessIDs: [Int32]) throws(BenchError) -> RequestResult {
    precondition(supports(kind, target), "\(target) has no \(kind)")
    let value = [UInt8](repeating: 0x61, count: 16)
    let request: () throws(BenchError) -> Void
    switch target {
    case .baton(let endpoint):
        let client = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: options.batonSessionTimeoutMilliseconds,
                                         clientName: "requests")
        if kind == .get {
            // The key and any missing ancestor; one left from an earlier run is kept (the warm-up reads it).
            var path = ""
            for component in key.split(separator: "/") {
                path += "/" + component
                _ = try? client.call(.create(path: path, data: path == key ? value : [], mode: .persistent))
            }
        }
        let message: Request = kind == .ping ? .ping : .get(path: key, watch: false)
        request = { () throws(BenchError) in _ = try client.call(message) }
    case .redis(let host, let port):
        let client = try RedisLockClient(host: host, port: port, ttlMilliseconds: options.redisTTLMilliseconds,
                                         backoffMicroseconds: options.redisBackoffMicroseconds)
        if kind == .get { _ = try client.command(["SET", key, String(decoding: value, as: UTF8.self)]) }
        let command = kind == .ping ? ["PING"] : ["GET", key]
        request = { () throws(BenchError) in _ = try client.command(command) }
    case .zookeeper(let connect):
        let client = try ZooKeeperLockClient(connect: connect, sessionTimeoutMilliseconds: options.zookeeperSessionTimeoutMilliseconds)
        try client.createNode(key, data: value)
        request = { () throws(BenchError) in try client.get(key) }
    case .etcd(let host, let port):
        let client = try EtcdLockClient(host: host, port: port, leaseTTLSeconds: options.etcdLeaseTTLSeconds)
        let encodedKey = Data(key.utf8).base64EncodedString()
        _ = try EtcdLockClient.call(client.connection, "/v3/kv/put", ["key": encodedKey, "value": Data(value).base64EncodedString()])
        request = { () throws(BenchError) in _ = try EtcdLockClient.call(client.connection, "/v3/kv/range", ["key": encodedKey]) }
    }
    for _ in 0..<200 { try request() }
    var histogram = makeLatencyHistogram()
    let meter = CPUMeter(serverProcessIDs)
    let start = MonotonicClock.nanoseconds()
    let deadline = start + UInt64(seconds * 1e9)
    var count = 0
    var now = start
    while now < deadline {
        try request()
        let after = MonotonicClock.nanoseconds()
        histogram.recordNanoseconds(after - now)
        now = after
        count += 1
    }
    return RequestResult(requests: count, elapsedSeconds: Double(now - start) / 1e9, latency: LatencySummary(histogram),
                         serverCPUNanoseconds: meter.elapsed())
}
