import BatonLocks
import BatonProtocol

/// An in-memory tree implementing `LockNamespace` for the recipe's tests. Operations take effect when
/// called; their answers and watch events go out in order, either at once (`.immediate`) or into a
/// queue the test drains (`.deferred`), as a remote store would deliver them.
final class MemoryLockNamespace: LockNamespace {
    enum Delivery {
        case immediate
        case deferred
    }

    /// A failure to inject into the next matching operation.
    enum Fault {
        /// The store is unreachable: nothing happens, the answer is `storageFailure`.
        case unreachable
        /// The operation happens, but its answer is lost: `storageFailure`.
        case replyLost
    }

    enum Operation: Equatable {
        case create, children, exists, getData, delete
    }

    struct Node {
        var data: [UInt8]
        var stat: Stat
        var children: Set<String> = []
        var nextSequence: UInt64 = 0
    }

    var delivery: Delivery
    private(set) var nodes: [String: Node]
    private var transaction: UInt64 = 0
    private var existsWatches: [String: [LockWatch]] = [:]
    private var childWatches: [String: [LockWatch]] = [:]
    private var queue: [() -> Void] = []
    private var queueStart = 0
    /// Watch callbacks delivered so far.
    private(set) var watchNotifications = 0
    /// Sessions whose ephemerals may not be created any more.
    var deadSessions: Set<UInt64> = []
    /// Whether creates report the parent's identity (a store that cannot tell leaves it nil).
    var reportsParent = true
    /// Promises the manager that its nodes are deleted only by it, by session ends, or with a
    /// `nodeDeleted` input (as the embedded namespace does); read by the manager once, when made.
    var reportsDeletions = false
    /// Exists-watches set so far.
    private(set) var existsWatchesSet = 0
    /// Operations served so far, by kind (to check what a release costs).
    private(set) var operationCounts: [Operation: Int] = [:]
    /// Decides a fault for an operation on a path (nil: none).
    var faults: ((Operation, String) -> Fault?)?

    init(delivery: Delivery) {
        self.delivery = delivery
        var root = Stat()
        root.kind = .persistent
        nodes = ["/": Node(data: [], stat: root)]
    }

    // MARK: Delivery

    private func deliver(_ callback: @escaping () -> Void) {
        switch delivery {
        case .immediate: callback()
        case .deferred: queue.append(callback)
        }
    }

    var pendingCount: Int { queue.count - queueStart }

    /// Delivers one queued answer or event; false if none.
    @discardableResult
    func deliverOne() -> Bool {
        guard queueStart < queue.count else { return false }
        let callback = queue[queueStart]
        queueStart += 1
        if queueStart > 1024 && queueStart * 2 > queue.count {
            queue.removeFirst(queueStart)
            queueStart = 0
        }
        callback()
        return true
    }

    func deliverAll() {
        while deliverOne() {}
    }

    // MARK: Direct access for tests

    func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    private func name(of path: String) -> String {
        String(path[path.index(after: path.lastIndex(of: "/")!)...])
    }

    private func join(_ parent: String, _ name: String) -> String {
        parent == "/" ? "/" + name : parent + "/" + name
    }

    func childNames(_ path: String) -> [String] {
        (nodes[path]?.children ?? []).sorted()
    }

    /// Creates a node as any client would (used to stage nodes).
    @discardableResult
    func createNow(_ path: String, data: [UInt8] = [], mode: CreateMode, owner: UInt64) -> Result<LockCreatedNode, ReplyError> {
        let parentPath = parent(of: path)
        guard var parentNode = nodes[parentPath] else { return .failure(ReplyError(.noNode, parentPath)) }
        guard parentNode.stat.kind != .ephemeral else { return .failure(ReplyError(.ephemeralParent)) }
        if mode.kind == .ephemeral && deadSessions.contains(owner) { return .failure(ReplyError(.sessionExpired)) }
        var fullPath = path
        if mode.sequential {
            let digits = String(parentNode.nextSequence)
            fullPath += String(repeating: "0", count: max(0, 10 - digits.count)) + digits
            parentNode.nextSequence += 1
        }
        guard nodes[fullPath] == nil else { return .failure(ReplyError(.nodeExists, fullPath)) }
        transaction += 1
        var stat = Stat()
        stat.createdTransaction = transaction
        stat.modifiedTransaction = transaction
        stat.kind = mode.kind
        stat.ephemeralOwner = mode.kind == .ephemeral ? owner : 0
        stat.dataLength = UInt32(data.count)
        nodes[fullPath] = Node(data: data, stat: stat)
        parentNode.children.insert(name(of: fullPath))
        parentNode.stat.childrenCount = UInt32(parentNode.children.count)
        nodes[parentPath] = parentNode
        fire(.exists, fullPath, .created)
        fire(.children, parentPath, .childrenChanged)
        return .success(LockCreatedNode(path: fullPath, stat: stat,
                                         parentCreatedTransaction: reportsParent ? parentNode.stat.createdTransaction : nil))
    }

    /// Deletes a node as any client would ("someone else").
    @discardableResult
    func deleteNow(_ path: String) -> Result<Void, ReplyError> {
        guard let node = nodes[path], path != "/" else { return .failure(ReplyError(.noNode, path)) }
        guard node.children.isEmpty else { return .failure(ReplyError(.notEmpty, path)) }
        transaction += 1
        nodes[path] = nil
        let parentPath = parent(of: path)
        nodes[parentPath]!.children.remove(name(of: path))
        nodes[parentPath]!.stat.childrenCount = UInt32(nodes[parentPath]!.children.count)
        fire(.exists, path, .deleted)
        fire(.children, path, .deleted)
        fire(.children, parentPath, .childrenChanged)
        // A container goes once its last child goes (the embedded store sweeps after a grace period).
        if let parentNode = nodes[parentPath], parentNode.stat.kind == .container, parentNode.children.isEmpty {
            deleteNow(parentPath)
        }
        return .success(())
    }

    /// Ends a session: its ephemerals go, as the store does on expiry.
    func endSession(_ session: UInt64) {
        deadSessions.insert(session)
        let owned = nodes.filter { $0.value.stat.kind == .ephemeral && $0.value.stat.ephemeralOwner == session }.keys
        for path in owned.sorted() { deleteNow(path) }
    }

    private enum WatchTable {
        case exists, children
    }

    private func fire(_ table: WatchTable, _ path: String, _ type: WatchEventType) {
        // Taken out of the table first: an immediate callback may set new watches.
        let taken = table == .exists ? existsWatches.removeValue(forKey: path) : childWatches.removeValue(forKey: path)
        guard let watches = taken else { return }
        for watch in watches {
            deliver { [weak self] in
                self?.watchNotifications += 1
                watch(type)
            }
        }
    }

    // MARK: LockNamespace

    func create(path: String, data: [UInt8], mode: CreateMode, owner: UInt64,
                completion: @escaping (Result<LockCreatedNode, ReplyError>) -> Void) {
        operationCounts[.create, default: 0] += 1
        let fault = faults?(.create, path)
        if fault == .unreachable { return deliver { completion(.failure(ReplyError(.storageFailure))) } }
        let result = createNow(path, data: data, mode: mode, owner: owner)
        deliver { completion(fault == .replyLost ? .failure(ReplyError(.storageFailure)) : result) }
    }

    func children(path: String, watch: LockWatch?, completion: @escaping (Result<[String], ReplyError>) -> Void) {
        operationCounts[.children, default: 0] += 1
        if faults?(.children, path) != nil { return deliver { completion(.failure(ReplyError(.storageFailure))) } }
        guard let node = nodes[path] else { return deliver { completion(.failure(ReplyError(.noNode, path))) } }
        if let watch { childWatches[path, default: []].append(watch) }
        let names = Array(node.children)
        deliver { completion(.success(names)) }
    }

    func exists(path: String, watch: LockWatch?, completion: @escaping (Result<Stat?, ReplyError>) -> Void) {
        operationCounts[.exists, default: 0] += 1
        if faults?(.exists, path) != nil { return deliver { completion(.failure(ReplyError(.storageFailure))) } }
        if let watch {
            existsWatchesSet += 1
            existsWatches[path, default: []].append(watch)
        }
        let stat = nodes[path]?.stat
        deliver { completion(.success(stat)) }
    }

    func getData(path: String, completion: @escaping (Result<[UInt8], ReplyError>) -> Void) {
        operationCounts[.getData, default: 0] += 1
        if faults?(.getData, path) != nil { return deliver { completion(.failure(ReplyError(.storageFailure))) } }
        guard let node = nodes[path] else { return deliver { completion(.failure(ReplyError(.noNode, path))) } }
        let data = node.data
        deliver { completion(.success(data)) }
    }

    func delete(path: String, expectedVersion: Int32, completion: @escaping (Result<Void, ReplyError>) -> Void) {
        operationCounts[.delete, default: 0] += 1
        let fault = faults?(.delete, path)
        if fault == .unreachable { return deliver { completion(.failure(ReplyError(.storageFailure))) } }
        let result = deleteNow(path)
        deliver { completion(fault == .replyLost ? .failure(ReplyError(.storageFailure)) : result) }
    }
}
