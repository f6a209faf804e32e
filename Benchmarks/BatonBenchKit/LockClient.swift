import BatonProtocol

/// One simulated client of a lock service: one connection, one session, blocking calls.
/// Every driver implements the recipe that service's users use; `acquire` returns once the lock is held.
public protocol LockClient: AnyObject {
    /// Blocks until `lock` is held; returns what `release` needs (a node, a token, a key).
    func acquire(_ lock: String) throws(BenchError) -> String
    func release(_ lock: String, hold: String) throws(BenchError)
    /// Contention signals seen so far: failed tries (Redis) or watch wake-ups (ZooKeeper); 0 where not observable.
    var wakeups: Int { get }
    /// Ends the client's session so nothing it held outlives the run.
    func finish()
}

extension LockClient {
    public func finish() {}
}

/// Which system a scenario runs against, and where it listens.
public enum Target: Sendable, Equatable, CustomStringConvertible {
    case baton(Endpoint)
    case redis(host: String, port: UInt16)
    /// A ZooKeeper connect string: one member or an ensemble, "h1:p1,h2:p2,h3:p3".
    case zookeeper(connect: String)
    case etcd(host: String, port: UInt16)

    public var description: String {
        switch self {
        case .baton(let endpoint): return "baton(\(endpoint))"
        case .redis(let host, let port): return "redis(\(host):\(port))"
        case .zookeeper(let connect): return "zookeeper(\(connect))"
        case .etcd(let host, let port): return "etcd(\(host):\(port))"
        }
    }

    /// `baton-unix:PATH`, `baton-tcp:HOST:PORT`, `redis:HOST:PORT`, `zookeeper:HOST:PORT`, `etcd:HOST:PORT`.
    public static func parse(_ text: String) -> Target? {
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let kind = text[..<colon], rest = String(text[text.index(after: colon)...])
        if kind == "baton-unix" { return .baton(.unix(path: rest)) }
        if kind == "zookeeper" {
            let members = rest.split(separator: ",")
            guard !members.isEmpty, members.allSatisfy({ Endpoint.parseTCP(String($0)) != nil }) else { return nil }
            return .zookeeper(connect: rest)
        }
        guard case .tcp(let host, let port)? = Endpoint.parseTCP(rest) else { return nil }
        switch kind {
        case "baton-tcp": return .baton(.tcp(host: host, port: port))
        case "redis": return .redis(host: host, port: port)
        case "etcd": return .etcd(host: host, port: port)
        default: return nil
        }
    }

    public var argument: String {
        switch self {
        case .baton(.unix(let path)): return "baton-unix:\(path)"
        case .baton(.tcp(let host, let port)): return "baton-tcp:\(host):\(port)"
        case .redis(let host, let port): return "redis:\(host):\(port)"
        case .zookeeper(let connect): return "zookeeper:\(connect)"
        case .etcd(let host, let port): return "etcd:\(host):\(port)"
        }
    }
}

/// Knobs of the peers' recipes; each is stated in BENCHMARKS.md.
public struct ClientOptions: Sendable {
    /// Redis: the lock's TTL (`PX`) and the sleep between failed `SET NX` tries.
    public var redisTTLMilliseconds: UInt32 = 500
    public var redisBackoffMicroseconds: UInt64 = 100
    /// ZooKeeper: requested session timeout (the server clamps it to [2, 20] x tickTime).
    public var zookeeperSessionTimeoutMilliseconds: Int32 = 4_000
    /// etcd: lease TTL in seconds (etcd raises it to its minimum, 2 s with default timing).
    public var etcdLeaseTTLSeconds: Int = 60
    /// Baton: session timeout.
    public var batonSessionTimeoutMilliseconds: UInt32 = 10_000
    public var clientName = "baton-bench"
    public init() {}
}

public func makeClient(_ target: Target, options: ClientOptions) throws(BenchError) -> LockClient {
    switch target {
    case .baton(let endpoint):
        return try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: options.batonSessionTimeoutMilliseconds,
                                   clientName: options.clientName)
    case .redis(let host, let port):
        return try RedisLockClient(host: host, port: port, ttlMilliseconds: options.redisTTLMilliseconds,
                                   backoffMicroseconds: options.redisBackoffMicroseconds)
    case .zookeeper(let connect):
        return try ZooKeeperLockClient(connect: connect, sessionTimeoutMilliseconds: options.zookeeperSessionTimeoutMilliseconds)
    case .etcd(let host, let port):
        return try EtcdLockClient(host: host, port: port, leaseTTLSeconds: options.etcdLeaseTTLSeconds)
    }
}
