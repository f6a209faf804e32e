import BatonEngine
import BatonLocks
import BatonNamespace
import BatonProtocol

/// The namespace of `batond --store zookeeper://...`: every namespace request and the lock recipe go
/// to a ZooKeeper ensemble through one ZooKeeper session per sidecar, local sessions multiplexed onto it.
///
/// - A local session's ephemeral nodes are ZooKeeper ephemerals of the sidecar's session, remembered
///   here and deleted the moment the local session ends (`sessionEnded`): other hosts see them go within
///   a round trip. If the sidecar dies, ZooKeeper deletes them after the sidecar's session timeout.
/// - `Stat.ephemeralOwner` is the local session for nodes this sidecar created for one (and for the
///   recipe's waiter nodes, the session in their name), 0 for every other node, another sidecar's
///   ephemerals included (their `kind` still says ephemeral).
/// - Paths and data are checked against Baton's limits first, so errors read as with the embedded store.
///
/// The owner drives `client` (interest/process) and, when the session expires, calls `reopen()`.
public final class ZooKeeperBackend: NamespaceBackend {
    public let configuration: ZooKeeperConfiguration
    public private(set) var client: ZooKeeperClient
    let limits: Limits
    let locks: ZooKeeperLockNamespace
    /// Ephemeral nodes created for local sessions: owner by path, paths by owner.
    private var ephemeralOwners: [String: UInt64] = [:]
    private var ephemeralsOf: [UInt64: Set<String>] = [:]

    public init(configuration: ZooKeeperConfiguration, limits: Limits) throws(ReplyError) {
        self.configuration = configuration
        self.limits = limits
        client = try ZooKeeperClient(configuration)
        locks = ZooKeeperLockNamespace(client: client)
    }

    public var storeDescription: String { configuration.address.description }
    public var lockNamespace: LockNamespace { locks }

    /// After an expiry: a new ZooKeeper session (the old one's ephemerals are gone with it).
    /// The new client serves before the old one closes: closing answers the old one's pending requests
    /// (`storageFailure`), and what the recipe asks again from those answers must go to the new one.
    public func reopen() throws(ReplyError) {
        let old = client
        client = try ZooKeeperClient(configuration)
        locks.client = client
        old.close()
        ephemeralOwners.removeAll()
        ephemeralsOf.removeAll()
    }

    /// Ephemerals held for local sessions (for tests and metrics).
    public var ephemeralCount: Int { ephemeralOwners.count }

    // MARK: Ephemerals of local sessions

    private func remember(_ path: String, session: UInt64) {
        ephemeralOwners[path] = session
        ephemeralsOf[session, default: []].insert(path)
    }

    private func forget(_ path: String) {
        guard let session = ephemeralOwners.removeValue(forKey: path) else { return }
        ephemeralsOf[session]?.remove(path)
        if ephemeralsOf[session]?.isEmpty == true { ephemeralsOf[session] = nil }
    }

    public func sessionEnded(_ session: UInt64) {
        guard let paths = ephemeralsOf.removeValue(forKey: session) else { return }
        for path in paths.sorted() {
            ephemeralOwners[path] = nil
            // Lost replies are harmless: if the delete did not happen, ZooKeeper removes the node when
            // the sidecar's session ends. A node already gone (deleted by someone) is fine too.
            client.delete(path: path, expectedVersion: -1) { _ in }
        }
    }

    /// A stat in Baton's terms (see the type's comment).
    func translated(_ stat: Stat, path: String) -> Stat {
        var stat = stat
        if stat.ephemeralOwner != 0 {
            stat.ephemeralOwner = stat.ephemeralOwner == client.sessionID
                ? (ephemeralOwners[path] ?? locks.localOwner(path: path, stat: stat)) : 0
        }
        return stat
    }

    // MARK: Requests

    public func perform(_ request: Request, session: UInt64, watch: ((WatchEventType, String) -> Void)?,
                        completion: @escaping (Result<ReplyBody, ReplyError>) -> Void) {
        do throws(ReplyError) {
            try validate(request)
        } catch {
            return completion(.failure(error))
        }
        switch request {
        case .create(let path, let data, let mode):
            client.create(path: path, data: data, mode: mode) { [weak self] result in
                guard let self else { return completion(.failure(ReplyError(.storageFailure, "store closed"))) }
                completion(result.map { created in
                    if mode.kind == .ephemeral { remember(created.path, session: session) }
                    return .created(path: created.path, stat: translated(created.stat, path: created.path))
                })
            }
        case .delete(let path, let expectedVersion):
            client.delete(path: path, expectedVersion: expectedVersion) { [weak self] result in
                if case .success = result { self?.forget(path) }
                completion(result.map { .empty })
            }
        case .exists(let path, let watches):
            client.exists(path: path, watch: watches ? watch.map { watch in { watch($0, path) } } : nil) { [weak self] result in
                completion(result.map { stat in .exists(stat.map { self?.translated($0, path: path) ?? $0 }) })
            }
        case .get(let path, let watches):
            client.getData(path: path, watch: watches ? watch.map { watch in { watch($0, path) } } : nil) { [weak self] result in
                completion(result.map { read in .data(stat: self?.translated(read.stat, path: path) ?? read.stat, data: read.data) })
            }
        case .set(let path, let data, let expectedVersion):
            client.setData(path: path, data: data, expectedVersion: expectedVersion) { [weak self] result in
                completion(result.map { stat in .stat(self?.translated(stat, path: path) ?? stat) })
            }
        case .children(let path, let watches, let after, let limit):
            let pageMax = limit == 0 || Int(limit) > limits.childrenPageMax ? limits.childrenPageMax : Int(limit)
            client.children(path: path, watch: watches ? watch.map { watch in { watch($0, path) } } : nil) { [weak self] result in
                // ZooKeeper lists in no promised order: sorted by UTF-8 bytes and paged, as the embedded
                // store lists (PROTOCOL.md §5.2). ZooKeeper still sends the whole list each time.
                completion(result.map { listing in
                    let sorted = listing.names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
                    let rest = after.isEmpty ? sorted[...] : sorted.drop { !after.utf8.lexicographicallyPrecedes($0.utf8) }
                    return .children(stat: self?.translated(listing.stat, path: path) ?? listing.stat,
                                     names: Array(rest.prefix(pageMax)), more: rest.count > pageMax)
                })
            }
        case .check(let path, let expectedVersion):
            // ZooKeeper has no stand-alone check: a one-operation multi is one.
            client.multi([.check(path: path, expectedVersion: expectedVersion)]) { result in
                switch result {
                case .success: completion(.success(.empty))
                case .failure(let failure): completion(.failure(failure.error))
                }
            }
        case .multi(let operations):
            client.multi(operations) { [weak self] result in
                switch result {
                case .success(let results):
                    for (operation, outcome) in zip(operations, results) {
                        if case .create(_, _, let mode) = operation, mode.kind == .ephemeral, case .created(let path, _) = outcome {
                            self?.remember(path, session: session)
                        }
                        if case .delete(let path, _) = operation { self?.forget(path) }
                    }
                    completion(.success(.multi(results)))
                case .failure(let failure):
                    completion(.failure(failure.replyError))
                }
            }
        default:
            completion(.failure(ReplyError(.internalError, "not a namespace request: \(request.opcode)")))
        }
    }

    /// The largest packet a ZooKeeper server takes (`jute.maxbuffer`, 0xfffff by default). A server that
    /// receives a bigger one drops the connection, which would suspend every local holder: requests
    /// that could come near it are refused here, `dataTooLarge` (PROTOCOL.md §16).
    static let packetBytesMax = 0xfffff
    /// What a packet carries besides paths and data, per operation, bounded from above (header, ACL
    /// with a digest identity, flags, versions).
    static let operationOverheadBytes = 512

    /// The packet a create or set of `data` at `path` makes, bounded from above.
    private func packetBytes(path: String, data: [UInt8]) -> Int {
        data.count + path.utf8.count + configuration.address.chroot.utf8.count + Self.operationOverheadBytes
    }

    private func checkPacket(_ bytes: Int) throws(ReplyError) {
        guard bytes <= Self.packetBytesMax else {
            throw ReplyError(.dataTooLarge, "ZooKeeper takes requests of at most \(Self.packetBytesMax) bytes (jute.maxbuffer); "
                + "this one makes about \(bytes)")
        }
    }

    /// Baton's limits, so that a bad path or oversized data fails as with the embedded store; then
    /// ZooKeeper's packet limit.
    private func validate(_ request: Request) throws(ReplyError) {
        switch request {
        case .create(let path, let data, _), .set(let path, let data, _):
            try NamespacePath.validate(path, limits: limits)
            if path == "/" { throw ReplyError(.invalidPath, "the root cannot be created or set") }
            guard data.count <= limits.dataBytesMax else { throw ReplyError(.dataTooLarge, "at most \(limits.dataBytesMax) bytes") }
            try checkPacket(packetBytes(path: path, data: data))
        case .delete(let path, _), .exists(let path, _), .get(let path, _), .children(let path, _, _, _), .check(let path, _):
            try NamespacePath.validate(path, limits: limits)
        case .multi(let operations):
            guard operations.count <= limits.multiOperationsMax else {
                throw ReplyError(.tooManyOperations, "at most \(limits.multiOperationsMax) operations")
            }
            var bytes = 0
            for (index, operation) in operations.enumerated() {
                do throws(ReplyError) {
                    switch operation {
                    case .create(let path, let data, _), .set(let path, let data, _):
                        try NamespacePath.validate(path, limits: limits)
                        guard data.count <= limits.dataBytesMax else { throw ReplyError(.dataTooLarge) }
                        bytes += packetBytes(path: path, data: data)
                    case .delete(let path, _), .check(let path, _):
                        try NamespacePath.validate(path, limits: limits)
                        bytes += packetBytes(path: path, data: [])
                    }
                    // The whole multi is one packet: the operation that takes it over the limit fails.
                    try checkPacket(bytes)
                } catch {
                    throw MultiFailure(index: index, error: error).replyError
                }
            }
        default:
            break
        }
    }
}
