import BatonLocks
import BatonProtocol

/// The lock recipe's namespace over ZooKeeper: one ZooKeeper session per sidecar, every local session
/// multiplexed onto it.
///
/// - A waiter node is an ephemeral of the sidecar's ZooKeeper session whose name carries the local
///   session (`WaiterName`); when the local session ends, the `LockManager` deletes it at once
///   (`sessionEnded`), so a client's death frees its locks on every host within a round trip. A
///   sidecar's own death frees them after its ZooKeeper session timeout.
/// - `Stat.ephemeralOwner` is reported as the local session named in the node's name when the node's
///   ZooKeeper owner is this sidecar's current ZooKeeper session, else 0: a node of another sidecar,
///   or of an earlier session of this one, is never taken for a local session's own.
/// - Errors are the client's: connection loss, timeouts and a dead session are `.storageFailure`
///   ("may or may not have happened"), which the recipe retries.
/// - Watches are ZooKeeper's one-shot watches. The recipe never waits for a creation, so a watch set
///   by `exists` on a missing node is dropped (ZooKeeper would keep it for a creation that, for a
///   sequence name, never comes).
///
/// The client may be replaced (after an expiry, the owner opens a new session and sets `client`):
/// requests go to the current one. Any `ZooKeeperRequests` will do (the simulation's fake ZooKeeper).
public final class ZooKeeperLockNamespace: LockNamespace {
    public var client: any ZooKeeperRequests

    public init(client: any ZooKeeperRequests) {
        self.client = client
    }

    /// The local session that owns a node, in the recipe's terms (see the type's comment).
    func localOwner(path: String, stat: Stat) -> UInt64 {
        guard stat.ephemeralOwner != 0, stat.ephemeralOwner == client.sessionID,
              let name = WaiterName(parsing: NodePath.name(of: path)) else { return 0 }
        return name.session
    }

    func translated(_ stat: Stat, path: String) -> Stat {
        var stat = stat
        stat.ephemeralOwner = localOwner(path: path, stat: stat)
        return stat
    }

    public func create(path: String, data: [UInt8], mode: CreateMode, owner: UInt64,
                       completion: @escaping (Result<LockCreatedNode, ReplyError>) -> Void) {
        client.create(path: path, data: data, mode: mode) { [weak self] result in
            guard let self else { return completion(.failure(ReplyError(.storageFailure, "ZooKeeper store closed"))) }
            completion(result.map { created in
                // ZooKeeper does not say which incarnation of the parent this is: nil, "cannot tell".
                LockCreatedNode(path: created.path, stat: translated(created.stat, path: created.path), parentCreatedTransaction: nil)
            })
        }
    }

    public func children(path: String, watch: LockWatch?, completion: @escaping (Result<[String], ReplyError>) -> Void) {
        client.children(path: path, watch: watch) { result in
            completion(result.map(\.names))
        }
    }

    public func exists(path: String, watch: LockWatch?, completion: @escaping (Result<BatonProtocol.Stat?, ReplyError>) -> Void) {
        client.exists(path: path, watch: watch, watchesCreation: false) { [weak self] result in
            completion(result.map { stat in stat.map { self?.translated($0, path: path) ?? $0 } })
        }
    }

    public func getData(path: String, completion: @escaping (Result<[UInt8], ReplyError>) -> Void) {
        client.getData(path: path, watch: nil) { result in
            completion(result.map(\.data))
        }
    }

    public func delete(path: String, expectedVersion: Int32, completion: @escaping (Result<Void, ReplyError>) -> Void) {
        client.delete(path: path, expectedVersion: expectedVersion, completion: completion)
    }
}
