import Foundation

/// etcd 3.4's own lock service through its JSON gateway on one keep-alive HTTP connection: a lease
/// is granted once per client (as `concurrency.NewSession` does), then `lock` (replied when held:
/// the server waits on the key just before ours) and `unlock` with the returned key.
public final class EtcdLockClient: LockClient {
    let connection: HTTPConnection
    public let leaseID: String
    /// The TTL etcd granted (it raises requests below its minimum).
    public let grantedTTLSeconds: Int
    public var wakeups: Int { 0 }

    public init(host: String, port: UInt16, leaseTTLSeconds: Int) throws(BenchError) {
        connection = try HTTPConnection(host: host, port: port)
        let grant = try Self.call(connection, "/v3/lease/grant", ["TTL": leaseTTLSeconds])
        guard let id = grant["ID"] as? String ?? (grant["ID"] as? NSNumber)?.stringValue else {
            throw BenchError("etcd: lease grant without an ID: \(grant)")
        }
        leaseID = id
        grantedTTLSeconds = Int(grant["TTL"] as? String ?? "") ?? (grant["TTL"] as? Int ?? leaseTTLSeconds)
    }

    static func call(_ connection: HTTPConnection, _ path: String, _ body: [String: Any]) throws(BenchError) -> [String: Any] {
        let json: String
        do {
            json = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
        } catch {
            throw BenchError("etcd: cannot encode \(body)")
        }
        let (status, reply) = try connection.post(path, json: json)
        guard status == 200 else { throw BenchError("etcd \(path): HTTP \(status): \(String(decoding: reply, as: UTF8.self))") }
        guard let object = try? JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any] else {
            throw BenchError("etcd \(path): reply is not a JSON object")
        }
        return object
    }

    public func acquire(_ lock: String) throws(BenchError) -> String {
        let name = Data(lock.utf8).base64EncodedString()
        let reply = try Self.call(connection, "/v3/lock/lock", ["name": name, "lease": leaseID])
        guard let key = reply["key"] as? String else { throw BenchError("etcd: lock reply without a key: \(reply)") }
        return key
    }

    public func release(_ lock: String, hold: String) throws(BenchError) {
        _ = try Self.call(connection, "/v3/lock/unlock", ["key": hold])
    }

    /// Lets the lease go at once (end of a run), so later runs do not queue behind stale keys.
    public func finish() {
        _ = try? Self.call(connection, "/v3/lease/revoke", ["ID": leaseID])
    }
}
