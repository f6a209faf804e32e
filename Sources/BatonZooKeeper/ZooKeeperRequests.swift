import BatonProtocol

/// The requests of one ZooKeeper session that the lock recipe's adapter (`ZooKeeperLockNamespace`)
/// makes: the seam between it and the C client (`ZooKeeperClient`), so that a seeded simulation can put
/// a fake ZooKeeper behind the same adapter and recipe. The contract is the client's: completions run
/// exactly once on the owner's thread, in request order; a watch fires at most once, after the reply
/// that set it and before the reply of any later request that saw the change; connection loss and a
/// dead session fail requests with `.storageFailure`.
public protocol ZooKeeperRequests: AnyObject {
    /// The ZooKeeper session (the `ephemeralOwner` of the ephemerals it creates); 0 before it has one.
    var sessionID: UInt64 { get }
    func create(path: String, data: [UInt8], mode: CreateMode,
                completion: @escaping (Result<(path: String, stat: BatonProtocol.Stat), ReplyError>) -> Void)
    func delete(path: String, expectedVersion: Int32, completion: @escaping (Result<Void, ReplyError>) -> Void)
    /// `watchesCreation` false: a watch set on a missing node is dropped rather than kept for a creation.
    func exists(path: String, watch: ((WatchEventType) -> Void)?, watchesCreation: Bool,
                completion: @escaping (Result<BatonProtocol.Stat?, ReplyError>) -> Void)
    func getData(path: String, watch: ((WatchEventType) -> Void)?,
                 completion: @escaping (Result<(data: [UInt8], stat: BatonProtocol.Stat), ReplyError>) -> Void)
    func children(path: String, watch: ((WatchEventType) -> Void)?,
                  completion: @escaping (Result<(names: [String], stat: BatonProtocol.Stat), ReplyError>) -> Void)
}

extension ZooKeeperClient: ZooKeeperRequests {}
