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
/// Watches set through the old client can never fire (ZooKeeper drops a dead session's watches), yet
/// the recipe waits on them (a semaphore lock's children watch outlives the local sessions that armed
/// it): on replacement each is fired once with `.dataChanged`, which the recipe takes as "look
/// again" (it lists or watches anew through the new client; it never takes it for a deletion).
public final class ZooKeeperLockNamespace: LockNamespace {
    public var client: any ZooKeeperRequests {
        didSet {
            guard client !== oldValue else { return }
            let orphaned = outstandingWatches.sorted { $0.key < $1.key }.map(\.value)
            outstandingWatches.removeAll()
            for watch in orphaned { watch(.dataChanged) }
        }
    }
    /// Watches handed to the current client that have not fired (nor been dropped with a failure).
    private var outstandingWatches: [UInt64: LockWatch] = [:]
    private var nextWatch: UInt64 = 0

    public init(client: any ZooKeeperRequests) {
        self.client = client
    }

    /// Watches set and not yet fired (for tests).
    public var outstandingWatchCount: Int { outstandingWatches.count }

    /// `watch` wrapped so that it is tracked until it fires; `done(kept)` forgets it if the request
    /// did not keep it.
    private func tracked(_ watch: LockWatch?) -> (watch: LockWatch?, done: (Bool) -> Void) {
        guard let watch else { return (nil, { _ in }) }
        nextWatch += 1
        let id = nextWatch
        outstandingWatches[id] = watch
        return ({ [weak self] type in
            guard let self, outstandingWatches.removeValue(forKey: id) != nil else { return }
            watch(type)
        }, { [weak self] kept in
            if !kept { self?.outstandingWatches[id] = nil }
        })
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
        let (watch, done) = tracked(watch)
        client.children(path: path, watch: watch) { result in
            done((try? result.get()) != nil)
            completion(result.map(\.names))
        }
    }

    public func exists(path: String, watch: LockWatch?, completion: @escaping (Result<BatonProtocol.Stat?, ReplyError>) -> Void) {
        let (watch, done) = tracked(watch)
        client.exists(path: path, watch: watch, watchesCreation: false) { [weak self] result in
            // A watch on a missing node is dropped (see the type's comment).
            done(((try? result.get()) ?? nil) != nil)
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
