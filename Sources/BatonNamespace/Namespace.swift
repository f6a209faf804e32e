import BatonProtocol
import Collections

/// A ZooKeeper-style data tree with sessions, ephemerals and one-shot watches (cf. ZooKeeper's
/// DataTree). Pure: time is an input, randomness is injected, and everything it has to say (log
/// records, fired watches) goes to an ordered outbox that its owner drains with `takeOutputs()`.
/// Single-threaded; `snapshot()` hands a Sendable copy to other threads.
public final class Namespace {
    public let configuration: NamespaceConfiguration
    var limits: Limits { configuration.limits }

    // The tree (by parent path and name: `NodeTree`). Copies share structure, so a snapshot and a
    // multi's rollback point are cheap and later writes copy only the touched parents' chunks.
    var nodes: NodeTree
    /// Per open session (from `openSession` until `closeSession` has deleted its ephemerals), what it
    /// created and still exists and its ephemeral nodes (`SessionNodes`): one table, so that a create
    /// or delete of an ephemeral node changes both with one access.
    var sessionNodes: TreeDictionary<UInt64, SessionNodes> = [:]

    /// The last transaction id (zxid) handed out. Only grows, across restarts too.
    public internal(set) var transactionCurrent: UInt64 = 0
    /// Ids below this may be in use: a log record says so (see `allocateTransaction`).
    var transactionReserved: UInt64 = 0
    /// The highest sequence mark any parent ever logged (see `counterMarks`).
    var sequenceHighWater: UInt64 = 0
    /// While set, changes that would log a record are refused with it (see `refuseIfLogged`).
    public var writeRefusal: ReplyError?

    // One-shot watches: the registration tables (per path, each watcher with the path as it spelled
    // it: events name the path that way) and, per watcher, what it has registered.
    var dataWatches: [String: OrderedDictionary<Watcher, String>] = [:]
    var childWatches: [String: OrderedDictionary<Watcher, String>] = [:]
    var watchesByWatcher: [Watcher: Set<WatchKey>] = [:]
    /// Persistent and recursive watches (Namespace+PersistentWatches.swift).
    var persistentWatches = PersistentWatches()

    var sessions: [UInt64: SessionInfo] = [:]
    var sessionDeadlines = Heap<SessionDeadline>()
    var nextSessionID: UInt64
    var random: any RandomNumberGenerator

    // Emptied containers waiting for their grace period, in deadline order (the grace is constant
    // and time is monotonic, so appending keeps the queue sorted). The dictionary is the truth;
    // queue entries that disagree with it are stale and skipped.
    var containerSweepDeadlines: [String: UInt64] = [:]
    var containerSweepQueue: Deque<ContainerDeadline> = []
    /// The container scheduled last, with its latest deadline (newer than its entry's in
    /// `containerSweepDeadlines`, which `flushSweepDeadline` brings up to date).
    var lastSweepDeadline: ContainerDeadline?

    var outbox: [NamespaceOutput] = []
    /// `parentPath(of:)`'s last answer.
    private var lastParentPath = NamespacePath.root
    /// Its parent (nil: it is the root), made with it: a create's access to its parent needs it.
    private var lastGrandparentPath: String? = nil

    public init(configuration: NamespaceConfiguration, now: Time,
                random: some RandomNumberGenerator = SystemRandomNumberGenerator()) {
        self.configuration = configuration
        var random: any RandomNumberGenerator = random
        // Session ids start at a random point so that ids of one run are not reused by the next.
        self.nextSessionID = random.next()
        self.random = random
        var rootStat = Stat()
        rootStat.kind = .persistent
        self.nodes = NodeTree(root: Node(data: [], stat: rootStat))
    }

    // MARK: Outbox

    /// Log records and fired watches produced since the last call, in order.
    public func takeOutputs() -> [NamespaceOutput] {
        defer { outbox.removeAll(keepingCapacity: true) }
        return outbox
    }

    public var hasOutputs: Bool { !outbox.isEmpty }

    // MARK: Reading without side effects

    /// The node at `path` (no watch, no validation beyond lookup).
    public func node(at path: String) -> Node? { nodes[path] }

    /// The names of the children of the node at `path` in listing order, nil without that node (no
    /// watch, no validation beyond lookup).
    public func childNames(of path: String) -> [String]? {
        nodes.contains(path) ? nodes.childNames(of: path, after: nil, limit: .max).names : nil
    }

    /// Whether a node is at `path` (no validation beyond lookup; no copy of the node).
    public func contains(_ path: String) -> Bool { nodes.contains(path) }

    public var nodeCount: Int { nodes.count }

    /// Paths of the ephemeral nodes a session owns (an open session's set may be kept empty).
    public func ephemeralNodes(of sessionID: UInt64) -> Set<String> { Set(sessionNodes[sessionID]?.ephemerals.values ?? [:].values) }

    // MARK: Operations

    /// Creates a node; returns its actual path (with the sequence suffix, if sequential) and stat.
    /// `session` owns the node if it is ephemeral.
    @discardableResult
    public func create(_ path: String, data: [UInt8], mode: CreateMode, session: UInt64,
                       now: Time) throws(ReplyError) -> (path: String, stat: Stat) {
        let created = try createReportingParent(path, data: data, mode: mode, session: session, now: now)
        return (created.path, created.stat)
    }

    /// `create`, also returning the parent's creation transaction (its identity: a parent deleted and
    /// created again restarts its sequence numbers), read while the parent is at hand.
    public func createReportingParent(_ path: String, data: [UInt8], mode: CreateMode, session: UInt64,
                                      now: Time) throws(ReplyError) -> (path: String, stat: Stat, parentCreatedTransaction: UInt64) {
        try change(now: now) { changes throws(ReplyError) in
            try createOperation(path, data: data, mode: mode, session: session, now: now, &changes)
        }
    }

    /// Deletes a node; `expectedVersion` -1 matches any version.
    public func delete(_ path: String, expectedVersion: Int32, now: Time) throws(ReplyError) {
        try change(now: now) { changes throws(ReplyError) in try deleteOperation(path, expectedVersion: expectedVersion, &changes) }
    }

    // The lock layer's nodes (`EngineLockNamespace`): the same operations and outcomes, for paths it has
    // proven valid but for their length (`NamespacePath.validateLength(ofProven:)`): a lock path checked
    // when the acquire came in, a waiter's name under it, and the paths this namespace handed back for
    // them. Each request of a lock pair makes one of these: the path is not walked again.

    /// `createReportingParent` of a proven path.
    public func createLockNode(_ path: String, data: [UInt8], mode: CreateMode, session: UInt64,
                               now: Time) throws(ReplyError) -> (path: String, stat: Stat, parentCreatedTransaction: UInt64) {
        try change(now: now) { changes throws(ReplyError) in
            try createOperation(path, data: data, mode: mode, session: session, now: now, pathProven: true, &changes)
        }
    }

    /// `delete` of a proven path.
    public func deleteLockNode(_ path: String, expectedVersion: Int32, now: Time) throws(ReplyError) {
        try change(now: now) { changes throws(ReplyError) in
            try deleteOperation(path, expectedVersion: expectedVersion, pathProven: true, &changes)
        }
    }

    /// The node's stat, or nil. With a watcher: a data watch if the node exists, else an exists
    /// watch that fires `created`.
    public func exists(_ path: String, watcher: Watcher? = nil) throws(ReplyError) -> Stat? {
        try NamespacePath.validate(path, limits: limits)
        if let watcher { try addWatch(watcher, path: path, kind: .data) }
        return nodes.withNode(at: path) { $0?.stat }
    }

    public func get(_ path: String, watcher: Watcher? = nil) throws(ReplyError) -> (stat: Stat, data: [UInt8]) {
        try NamespacePath.validate(path, limits: limits)
        guard let (stat, data) = nodes.withNode(at: path, { node in node.map { ($0.stat, $0.data) } }) else {
            throw ReplyError(.noNode, path)
        }
        if let watcher { try addWatch(watcher, path: path, kind: .data) }
        return (stat, data)
    }

    /// Replaces the data; `expectedVersion` -1 matches any version. The version goes up by one.
    @discardableResult
    public func set(_ path: String, data: [UInt8], expectedVersion: Int32, now: Time) throws(ReplyError) -> Stat {
        try change(now: now) { changes throws(ReplyError) in
            try setOperation(path, data: data, expectedVersion: expectedVersion, now: now, &changes)
        }
    }

    /// The node's stat and its children's names, in the order of their UTF-8 bytes (kept so: no sort).
    public func children(_ path: String, watcher: Watcher? = nil) throws(ReplyError) -> (stat: Stat, names: [String]) {
        let page = try children(path, after: nil, limit: .max, watcher: watcher)
        return (page.stat, page.names)
    }

    /// One page of a listing (PROTOCOL.md §5.2): up to `limit` names after `cursor` (from the first
    /// when nil), and whether more follow.
    public func children(_ path: String, after cursor: String?, limit: Int,
                         watcher: Watcher? = nil) throws(ReplyError) -> (stat: Stat, names: [String], more: Bool) {
        try NamespacePath.validate(path, limits: limits)
        guard let stat = nodes.withNode(at: path, { $0?.stat }) else { throw ReplyError(.noNode, path) }
        if let watcher { try addWatch(watcher, path: path, kind: .children) }
        let page = nodes.childNames(of: path, after: cursor, limit: limit)
        return (stat, page.names, page.more)
    }

    /// Succeeds if the node exists with the expected version (-1: any).
    @discardableResult
    public func check(_ path: String, expectedVersion: Int32) throws(ReplyError) -> Stat {
        try NamespacePath.validate(path, limits: limits)
        guard let stat = nodes.withNode(at: path, { $0?.stat }) else { throw ReplyError(.noNode, path) }
        guard expectedVersion == anyVersion || expectedVersion == stat.version else {
            throw ReplyError(.badVersion, "\(path) is at version \(stat.version), expected \(expectedVersion)")
        }
        return stat
    }

    /// Applies all operations or none. On failure nothing changed: no node, no counter, no watch
    /// fired and no log record. A multi that logs anything logs it as one record, so a torn log
    /// tail cannot keep half of it.
    public func multi(_ operations: [MultiOperation], session: UInt64, now: Time) throws(MultiFailure) -> [MultiResult] {
        guard operations.count <= limits.multiOperationsMax else {
            throw MultiFailure(index: nil, error: ReplyError(
                .tooManyOperations, "\(operations.count) operations, at most \(limits.multiOperationsMax)"))
        }
        // Rollback point: O(1) copies (see `nodes`). Watches and container schedules are only
        // touched by `commit`, after every operation succeeded.
        let saved = rollbackPoint()
        var changes = makeChanges(multi: true)
        var results: [MultiResult] = []
        results.reserveCapacity(operations.count)
        for (index, operation) in operations.enumerated() {
            do throws(ReplyError) {
                switch operation {
                case .create(let path, let data, let mode):
                    let created = try createOperation(path, data: data, mode: mode, session: session, now: now, &changes)
                    results.append(.created(path: created.path, stat: created.stat))
                case .delete(let path, let expectedVersion):
                    try deleteOperation(path, expectedVersion: expectedVersion, &changes)
                    results.append(.deleted)
                case .set(let path, let data, let expectedVersion):
                    results.append(.set(try setOperation(path, data: data, expectedVersion: expectedVersion, now: now, &changes)))
                case .check(let path, let expectedVersion):
                    try check(path, expectedVersion: expectedVersion)
                    results.append(.checked)
                }
            } catch {
                roll(back: saved)
                throw MultiFailure(index: index, error: error)
            }
        }
        do throws(ReplyError) {
            try refuseIfLogged(changes, saved)
        } catch {
            throw MultiFailure(index: nil, error: error)
        }
        commit(changes, asOneRecord: true, now: now)
        return results
    }

    // MARK: Operation bodies: validate everything first, then change state (no throw after a change)

    struct Changes {
        /// The log records of the change, in order; none are made where nothing keeps them
        /// (`NamespaceConfiguration.logsRecords` false: `batond --in-memory`).
        private(set) var records: [NamespaceRecord] = []
        typealias Trigger = (type: WatchEventType, path: String, container: ContainerCheck)
        /// Watch triggers, in the order the changes happened (`forEachTrigger`); fired by `commit`,
        /// which also hands a `childrenChanged` parent to the container schedule as `container` says.
        /// The first two inline: a create or delete has two and a set one, so a single change
        /// allocates no array for them (a multi's further ones go to `more`).
        private var first: Trigger?
        private var second: Trigger?
        private var more: [Trigger] = []
        private let logs: Bool
        /// Whether any watch is set (none can be added during a change): without one, a trigger
        /// matters only to the container schedule.
        private let watched: Bool
        /// A multi's commit judges every `childrenChanged` parent as the multi left it (`commit`).
        private let multi: Bool

        init(logs: Bool, watched: Bool, multi: Bool) {
            self.logs = logs
            self.watched = watched
            self.multi = multi
        }

        mutating func trigger(_ type: WatchEventType, _ path: String, _ container: ContainerCheck = .none) {
            // Unwatched (a lock's nodes, say), a create's triggers and a delete's `deleted` do nothing:
            // not kept (each held its path until the commit).
            guard watched || (type == .childrenChanged && (multi || container != .none)) else { return }
            if case .none = first {
                first = (type, path, container)
            } else if case .none = second {
                second = (type, path, container)
            } else {
                more.append((type, path, container))
            }
        }

        func forEachTrigger(_ body: (Trigger) -> Void) {
            if let first { body(first) }
            if let second { body(second) }
            for trigger in more { body(trigger) }
        }

        /// Adds a record, made only if a log keeps it.
        mutating func log(_ record: @autoclosure () -> NamespaceRecord) {
            if logs { records.append(record()) }
        }
    }

    /// The parent of a valid non-root path: the last one made if it is the same (a lock's creates and
    /// deletes all have its directory as their parent: no string made for it per request, ~0.4 % of a
    /// lock pair), else made and kept.
    func parentPath(of path: String) -> String { parentPaths(of: path).parent }

    /// `parentPath(of:)` and that parent's own parent (nil if the parent is the root): a lock's
    /// creates need both, and the second made per create was ~1 % of a lock pair.
    func parentPaths(of path: String) -> (parent: String, grandparent: String?) {
        // Over the strings' own bytes (`withUTF8` on a copy retains and releases it); a path that is
        // not contiguous UTF-8 takes `NodePath.parent`.
        let slash = path.utf8.withContiguousStorageIfAvailable { bytes in
            // The last parent, a slash and a name without one, each checked eight bytes at a time
            // (byte loops from the end and over the prefix were ~1.8 % of a lock pair).
            let length = lastParentPath.utf8.count
            if length > 1, bytes.count > length, bytes[length] == UInt8(ascii: "/"),
               !Self.containsSlash(UnsafeBufferPointer(rebasing: bytes[(length + 1)...])),
               lastParentPath.utf8.withContiguousStorageIfAvailable({ NameOrder.order($0, UnsafeBufferPointer(rebasing: bytes[..<length])) == 0 }) == true {
                return length
            }
            // Another parent (the root's children included): made below.
            var slash = bytes.count - 1
            while slash > 0 && bytes[slash] != UInt8(ascii: "/") { slash -= 1 }
            return -slash
        }
        guard let slash else {
            let parent = NodePath.parent(of: path)
            return (parent, parent.utf8.count == 1 ? nil : NodePath.parent(of: parent))
        }
        if slash > 0 { return (lastParentPath, lastGrandparentPath) }
        if slash == 0 { return (NamespacePath.root, nil) }
        lastParentPath = NodePath.parent(of: path)
        lastGrandparentPath = lastParentPath.utf8.count == 1 ? nil : NodePath.parent(of: lastParentPath)
        return (lastParentPath, lastGrandparentPath)
    }

    /// Whether `bytes` has a slash: eight at a time (a word's bytes equal to "/" become zero bytes,
    /// found by the borrow they cause), then one by one.
    static func containsSlash(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = bytes.baseAddress else { return false }
        let raw = UnsafeRawPointer(base)
        let ones: UInt64 = 0x0101_0101_0101_0101, slashes = ones &* UInt64(UInt8(ascii: "/")), highs = ones &* 0x80
        var index = 0
        while index + 8 <= bytes.count {
            let word = raw.loadUnaligned(fromByteOffset: index, as: UInt64.self) ^ slashes
            if (word &- ones) & ~word & highs != 0 { return true }
            index += 8
        }
        while index < bytes.count {
            if base[index] == UInt8(ascii: "/") { return true }
            index += 1
        }
        return false
    }

    /// A change's collector, logging as this namespace's configuration says.
    func makeChanges(multi: Bool = false) -> Changes {
        Changes(logs: configuration.logsRecords,
                watched: !dataWatches.isEmpty || !childWatches.isEmpty || !persistentWatches.isEmpty, multi: multi)
    }

    /// One client change outside a multi (`operation` checks everything before it changes anything),
    /// then committed. While writes are refused, a change that would log is undone and refused
    /// (`refuseIfLogged`); otherwise no rollback point is taken (nor an optional one made and
    /// destroyed: seen in a profile of pipelined sets).
    private func change<Result>(now: Time, _ operation: (inout Changes) throws(ReplyError) -> Result) throws(ReplyError) -> Result {
        var changes = makeChanges()
        let result: Result
        if writeRefusal == nil {
            result = try operation(&changes)
        } else {
            let saved = rollbackPoint()
            result = try operation(&changes)
            try refuseIfLogged(changes, saved)
        }
        commit(changes, asOneRecord: false, now: now)
        return result
    }

    func createOperation(_ requestedPath: String, data: [UInt8], mode: CreateMode, session: UInt64, now: Time,
                         pathProven: Bool = false,
                         _ changes: inout Changes) throws(ReplyError) -> (path: String, stat: Stat, parentCreatedTransaction: UInt64) {
        // A sequential name gets 10 digits appended: validate the path as it will be (without making
        // it twice). As in ZooKeeper this allows "/dir/" as the prefix of a sequential child of "/dir".
        if pathProven {
            try NamespacePath.validateLength(ofProven: requestedPath, sequential: mode.sequential, limits: limits)
        } else {
            try NamespacePath.validate(requestedPath, sequential: mode.sequential, limits: limits)
        }
        // A valid path of one byte is the root.
        guard mode.sequential || requestedPath.utf8.count != 1 else { throw ReplyError(.nodeExists, "the root always exists") }
        guard data.count <= limits.dataBytesMax else {
            throw ReplyError(.dataTooLarge, "\(data.count) bytes, at most \(limits.dataBytesMax)")
        }
        // The suffix has no slash: the parent is the requested path's ("/dir/" for "/dir/0000000001").
        // The grandparent: for the parent's access below and its undo (each access to it needs it).
        let (parentPath, grandparentPath) = self.parentPaths(of: requestedPath)
        // Read before the parent's access (the tree is being changed during it).
        let nodeCount = nodes.count
        // The node's transaction is the one `allocateTransaction` hands out next.
        let transaction = transactionCurrent + 1
        // One access to the parent (a tree access hashes its parent's path and searches its directory):
        // every check, then its stat as the create leaves it (children count and version, pzxid, sequence
        // counters), undone below if the name is taken. Only scalars come out: a copy of the whole node
        // would share its sequence counters, and their update would then copy them.
        let parent = try nodes.update(parentPath, parent: grandparentPath ?? NamespacePath.root) { node throws(ReplyError) in
            guard node.isSome else { throw ReplyError(.noNode, "parent \(parentPath) does not exist") }
            return try linkChild(to: &node!, parentPath, data: data, mode: mode, session: session,
                                 nodeCount: nodeCount, transaction: transaction)
        }
        let path = mode.sequential ? NamespacePath.sequential(prefix: requestedPath, parent.before.sequenceNext) : requestedPath
        // The last check is the insert itself: one search of the parent's entries instead of a
        // `contains` and then an insert. Nothing else has changed before it.
        let counted = parent.usage != nil
        let stat = Self.createdStat(kind: mode.kind, owner: session, dataCount: data.count, transaction: transaction,
                                    wallMilliseconds: now.wallMilliseconds)
        guard nodes.insertIfAbsent(path, parent: parentPath, { Node(data: data, stat: stat, creator: counted ? session : 0) }) else {
            nodes.update(parentPath, parent: grandparentPath ?? NamespacePath.root) { node in parent.before.restore(into: &node!) }
            throw ReplyError(.nodeExists, path)
        }
        if mode.sequential {
            logSequence(parentPath, next: parent.before.sequenceNext, reserved: parent.before.sequenceReserved, &changes)
        }
        let allocated = allocateTransaction(&changes)
        precondition(allocated == transaction, "the created node's transaction was not the next one")
        // An ephemeral node's session is open (checked above), so it is counted.
        precondition(counted || mode.kind != .ephemeral, "an ephemeral node without its session's table")
        if counted {
            sessionNodes.updatePresent(session) { owned in
                owned.usage.count(nodes: 1, dataBytes: data.count)
                if mode.kind == .ephemeral { owned.ephemerals[transaction] = path }
            }
        }
        if mode.kind != .ephemeral {
            changes.log(.create(transaction: transaction, wallMilliseconds: now.wallMilliseconds, path: path,
                                           data: data, kind: mode.kind,
                                           parentChildrenVersion: parent.childrenVersion))
        }
        changes.trigger(.created, path)
        changes.trigger(.childrenChanged, parentPath)
        return (path, stat, parent.before.createdTransaction)
    }

    /// A create's checks that need its parent, in their order, then the parent's stat as the create
    /// leaves it. Returns what it was (for an undo, and its sequence number and identity), the children
    /// version and the creating session's usage (nil: not counted).
    private func linkChild(to parent: inout Node, _ parentPath: String, data: [UInt8], mode: CreateMode, session: UInt64,
                           nodeCount: Int, transaction: UInt64) throws(ReplyError)
        -> (before: ParentLink, childrenVersion: Int32, usage: SessionUsage?) {
        guard parent.kind != .ephemeral else {
            throw ReplyError(.ephemeralParent, "\(parentPath) is ephemeral and cannot have children")
        }
        // A session's table is there from `openSession` until `closeSession` has deleted its ephemerals
        // (after taking it out of `sessions`; nothing creates in between): it says whether it is open.
        let usage = sessionNodes[session]?.usage
        if mode.kind == .ephemeral {
            guard session != 0 else { throw ReplyError(.sessionRequired, "an ephemeral node needs a session") }
            guard usage != nil else { throw ReplyError(.sessionExpired, "session \(session) is not open") }
            assert(sessions[session] != nil, "session \(session) has a table but is not open")
        }
        guard nodeCount < limits.nodesMax else { throw ReplyError(.tooManyNodes, "at most \(limits.nodesMax) nodes") }
        if let usage {
            guard usage.nodes < limits.nodesPerSessionMax else {
                throw ReplyError(.quotaExceeded, "nodesPerSessionMax: session \(session) created \(usage.nodes) nodes that exist, at most \(limits.nodesPerSessionMax)")
            }
            guard usage.dataBytes + data.count <= limits.dataBytesPerSessionMax else {
                throw ReplyError(.quotaExceeded, "dataBytesPerSessionMax: the nodes of session \(session) hold \(usage.dataBytes) bytes, \(data.count) more would exceed \(limits.dataBytesPerSessionMax)")
            }
        }
        let before = ParentLink(of: parent)
        if mode.sequential {
            guard before.sequenceNext <= NamespacePath.sequenceMax else {
                throw ReplyError(.invalidArgument, "sequence numbers of \(parentPath) are exhausted")
            }
        }
        let sequence = mode.sequential ? sequenceAfter(next: before.sequenceNext, reserved: before.sequenceReserved) : nil
        let childrenVersion = Self.childAdded(to: &parent, transaction: transaction, childrenVersion: nil, sequence: sequence)
        return (before, childrenVersion, usage)
    }

    func deleteOperation(_ path: String, expectedVersion: Int32, pathProven: Bool = false,
                         _ changes: inout Changes) throws(ReplyError) {
        if pathProven {
            try NamespacePath.validateLength(ofProven: path, limits: limits)
        } else {
            try NamespacePath.validate(path, limits: limits)
        }
        // A valid path of one byte is the root.
        guard path.utf8.count != 1 else { throw ReplyError(.invalidArgument, "the root cannot be deleted") }
        // Checked where it lies and removed with one access to the parent's directory (a read and
        // then a removal would take two).
        // The grandparent too: the parent's stat is changed in its own parent's directory (made from
        // the path there: a string per delete, ~0.5 % of a lock pair).
        let (parentPath, grandparentPath) = self.parentPaths(of: path)
        let removed = try nodes.removeValue(forKey: path, parent: parentPath) { version, childrenCount throws(ReplyError) in
            guard expectedVersion == anyVersion || expectedVersion == version else {
                throw ReplyError(.badVersion, "\(path) is at version \(version), expected \(expectedVersion)")
            }
            guard childrenCount == 0 else { throw ReplyError(.notEmpty, "\(path) has \(childrenCount) children") }
        }
        guard let removed else { throw ReplyError(.noNode, path) }
        finishRemoval(removed, path, parentPath: parentPath, grandparentPath: grandparentPath, sweep: false, parentKnown: true, &changes)
    }

    /// Deletes a node known to exist and to have no children, and records it if it was persistent.
    func removeNode(_ path: String, sweep: Bool, _ changes: inout Changes) {
        let parentPath = NamespacePath.parent(of: path)
        guard let node = nodes.removeValue(forKey: path, parent: parentPath) else { preconditionFailure("deleting a missing node") }
        finishRemoval(node, path, parentPath: parentPath, grandparentPath: nil, sweep: sweep, parentKnown: false, &changes)
    }

    /// A node just taken out of the tree: its parent's stat, its owner's tables, its record (if it
    /// was persistent) and its triggers. `parentKnown`: no later part of the change can fill or
    /// delete the parent, so whether this removal emptied a container is settled here (see `commit`).
    /// `grandparentPath`: the parent's parent if the caller has it (nil: made from the parent's path).
    private func finishRemoval(_ node: Node, _ path: String, parentPath: String, grandparentPath: String?, sweep: Bool,
                               parentKnown: Bool, _ changes: inout Changes) {
        let transaction = allocateTransaction(&changes)
        let (parentChildrenVersion, emptiedContainer) = unlinkRemoved(node, path, parentPath: parentPath, grandparentPath: grandparentPath,
                                                                      transaction: transaction, parentChildrenVersion: nil)
        if node.kind != .ephemeral {
            changes.log(sweep
                ? .sweepContainer(transaction: transaction, path: path, parentChildrenVersion: parentChildrenVersion)
                : .delete(transaction: transaction, path: path, parentChildrenVersion: parentChildrenVersion))
        }
        changes.trigger(.deleted, path)
        changes.trigger(.childrenChanged, parentPath, parentKnown ? (emptiedContainer ? .emptiedContainer : .none) : .lookUp)
    }

    func setOperation(_ path: String, data: [UInt8], expectedVersion: Int32, now: Time,
                      _ changes: inout Changes) throws(ReplyError) -> Stat {
        try NamespacePath.validate(path, limits: limits)
        guard data.count <= limits.dataBytesMax else {
            throw ReplyError(.dataTooLarge, "\(data.count) bytes, at most \(limits.dataBytesMax)")
        }
        // One tree access: checked and changed in place (a read and then a change would look the
        // path up twice, and binding the node would copy it).
        return try nodes.update(path) { node throws(ReplyError) in
            try setInPlace(&node, path, data: data, expectedVersion: expectedVersion, now: now, &changes)
        }
    }

    private func setInPlace(_ node: inout Node?, _ path: String, data: [UInt8], expectedVersion: Int32, now: Time,
                            _ changes: inout Changes) throws(ReplyError) -> Stat {
        guard node.isSome else { throw ReplyError(.noNode, path) }
        guard expectedVersion == anyVersion || expectedVersion == node!.version else {
            throw ReplyError(.badVersion, "\(path) is at version \(node!.version), expected \(expectedVersion)")
        }
        let bytesBefore = node!.dataLength  // without building the data array
        let creator = node!.creator
        if data.count > bytesBefore, creator != 0, let usage = sessionNodes[creator]?.usage,
           usage.dataBytes - bytesBefore + data.count > limits.dataBytesPerSessionMax {
            throw ReplyError(.quotaExceeded, "dataBytesPerSessionMax: the nodes of session \(creator) hold \(usage.dataBytes) bytes, \(data.count - bytesBefore) more would exceed \(limits.dataBytesPerSessionMax)")
        }
        let transaction = allocateTransaction(&changes)
        let version = node!.version &+ 1
        let stat = Self.replaceData(of: &node!, with: data, version: version, transaction: transaction,
                                    wallMilliseconds: now.wallMilliseconds).stat
        countDataChange(of: creator, from: bytesBefore, to: data.count)
        if stat.kind != .ephemeral {
            changes.log(.set(transaction: transaction, wallMilliseconds: now.wallMilliseconds, path: path,
                                        data: data, version: version))
        }
        changes.trigger(.dataChanged, path)
        return stat
    }

    // MARK: State changes shared by live operations and log replay

    /// Log replay's create (a live one is `createOperation`): `parentChildrenVersion` is the logged value.
    func applyCreate(_ path: String, parentPath: String, data: [UInt8], kind: NodeKind, owner: UInt64,
                     transaction: UInt64, wallMilliseconds: UInt64, parentChildrenVersion: Int32) {
        let stat = Self.createdStat(kind: kind, owner: owner, dataCount: data.count, transaction: transaction,
                                    wallMilliseconds: wallMilliseconds)
        nodes[path] = Node(data: data, stat: stat)
        nodes.update(parentPath) { parent in
            Self.childAdded(to: &parent!, transaction: transaction, childrenVersion: parentChildrenVersion, sequence: nil)
        }
    }

    private static func createdStat(kind: NodeKind, owner: UInt64, dataCount: Int, transaction: UInt64,
                                    wallMilliseconds: UInt64) -> Stat {
        var stat = Stat()
        stat.createdTransaction = transaction
        stat.modifiedTransaction = transaction
        stat.childrenTransaction = transaction
        stat.createdMilliseconds = wallMilliseconds
        stat.modifiedMilliseconds = wallMilliseconds
        stat.kind = kind
        stat.ephemeralOwner = kind == .ephemeral ? owner : 0
        stat.dataLength = UInt32(dataCount)
        return stat
    }

    /// Returns the parent's children version.
    @discardableResult
    func applyDelete(_ path: String, parentPath: String, transaction: UInt64, parentChildrenVersion: Int32?) -> Int32 {
        guard let node = nodes.removeValue(forKey: path, parent: parentPath) else { preconditionFailure("deleting a missing node") }
        return unlinkRemoved(node, path, parentPath: parentPath, transaction: transaction,
                             parentChildrenVersion: parentChildrenVersion).childrenVersion
    }

    /// A node removed from the tree out of its parent's stat, its creator's quota and its owner's
    /// ephemerals; returns the parent's children version and whether the parent is now an empty
    /// container (read during the same access).
    private func unlinkRemoved(_ node: Node, _ path: String, parentPath: String, grandparentPath: String? = nil, transaction: UInt64,
                               parentChildrenVersion: Int32?) -> (childrenVersion: Int32, emptiedContainer: Bool) {
        let parentAfter = nodes.update(parentPath, parent: grandparentPath) { parent in
            Self.childRemoved(from: &parent!, transaction: transaction, childrenVersion: parentChildrenVersion)
        }
        if node.kind == .ephemeral {
            // Its owner created it (and was counted) and keeps its table until its nodes are gone
            // (`closeSession`). An emptied set of ephemerals stays (with its storage) until then: a
            // session that creates and deletes one node at a time (a lock's acquire and release)
            // would otherwise make and drop it each time.
            assert(node.creator == node.ephemeralOwner, "an ephemeral node created by another session")
            sessionNodes.updatePresent(node.ephemeralOwner) { owned in
                owned.usage.count(nodes: -1, dataBytes: -node.dataLength)
                owned.ephemerals.removeValue(forKey: node.createdTransaction)
            }
        } else if node.creator != 0 {
            // A persistent node's creator may have ended.
            sessionNodes[node.creator]?.usage.count(nodes: -1, dataBytes: -node.dataLength)
        }
        return parentAfter
    }

    // One access to the parent each (a tree lookup hashes the parent's path). The child's entry in
    // the parent's directory is the tree's own (`NodeTree`): here only the parent's stat.
    @discardableResult
    private static func childAdded(to parent: inout Node, transaction: UInt64, childrenVersion: Int32?,
                                   sequence: (next: UInt64, reserved: UInt64)?) -> Int32 {
        if let sequence {
            parent.sequenceNext = sequence.next
            parent.sequenceReserved = sequence.reserved
        }
        parent.childrenCount += 1
        parent.childrenVersion = childrenVersion ?? (parent.childrenVersion &+ 1)
        parent.childrenTransaction = transaction
        return parent.childrenVersion
    }

    private static func childRemoved(from parent: inout Node, transaction: UInt64,
                                     childrenVersion: Int32?) -> (childrenVersion: Int32, emptiedContainer: Bool) {
        parent.childrenCount -= 1
        parent.childrenVersion = childrenVersion ?? (parent.childrenVersion &+ 1)
        parent.childrenTransaction = transaction
        return (parent.childrenVersion, parent.kind == .container && parent.childrenCount == 0)
    }

    @discardableResult
    func applySet(_ path: String, data: [UInt8], version: Int32, transaction: UInt64, wallMilliseconds: UInt64) -> Stat {
        let (creator, bytesBefore, stat) = nodes.update(path) { node in
            Self.replaceData(of: &node!, with: data, version: version, transaction: transaction, wallMilliseconds: wallMilliseconds)
        }
        countDataChange(of: creator, from: bytesBefore, to: data.count)
        return stat
    }

    /// A set's change of its creator's data bytes: nothing to do (no access to the table) when the
    /// size stays, nor for a creator whose session has ended.
    private func countDataChange(of creator: UInt64, from bytesBefore: Int, to bytesAfter: Int) {
        guard creator != 0, bytesAfter != bytesBefore else { return }
        sessionNodes[creator]?.usage.dataBytes += bytesAfter - bytesBefore
    }

    // One access to the node (a tree lookup hashes the whole path).
    private static func replaceData(of node: inout Node, with data: [UInt8], version: Int32, transaction: UInt64,
                                    wallMilliseconds: UInt64) -> (creator: UInt64, bytesBefore: Int, stat: Stat) {
        let bytesBefore = node.dataLength
        node.data = data
        node.version = version
        node.modifiedTransaction = transaction
        node.modifiedMilliseconds = wallMilliseconds
        return (node.creator, bytesBefore, node.stat)
    }

    /// Publishes a successful change: its records (one record for a multi), then its watch
    /// notifications, then the container schedule it affects.
    func commit(_ changes: Changes, asOneRecord: Bool, now: Time) {
        if asOneRecord && changes.records.count > 1 {
            outbox.append(.persist(NamespaceRecord.multi(changes.records).encode()))
        } else {
            for record in changes.records { outbox.append(.persist(record.encode())) }
        }
        changes.forEachTrigger { trigger in
            fireWatches(trigger.type, path: trigger.path)
            guard trigger.type == .childrenChanged else { return }
            // In a multi every parent is judged as the multi left it, in trigger order. Outside one a
            // create leaves its parent with a child, and a single delete knows whether it emptied a
            // container: no lookup of the parent.
            switch asOneRecord ? .lookUp : trigger.container {
            case .none: break
            case .emptiedContainer: scheduleSweep(trigger.path, now: now)
            case .lookUp: containerChildrenChanged(trigger.path, now: now)
            }
        }
    }
}

extension TreeDictionary {
    /// `self[key]!` changed in place, for a key known to be there: in the trie's leaf, where the
    /// `subscript`'s `_modify` (`table[key]?.…`) moves the key and the value out into a state that it
    /// copies and moves back (`_HashNode.ValueUpdateState` in profiles).
    @discardableResult
    mutating func updatePresent<Result>(_ key: Key, _ body: (inout Value) -> Result) -> Result {
        updateValue(forKey: key, default: Self.absent(key)) { body(&$0) }
    }

    private static func absent(_ key: Key) -> Value { preconditionFailure("\(key) is not in the table") }
}

/// What a create changes of its parent's stat, as it was before (`restore` undoes the change).
struct ParentLink {
    var childrenCount: UInt32
    var childrenVersion: Int32
    var childrenTransaction: UInt64
    var sequenceNext: UInt64
    var sequenceReserved: UInt64
    /// Not changed: the parent's identity (a parent deleted and created again restarts its sequence).
    var createdTransaction: UInt64

    init(of node: Node) {
        childrenCount = node.childrenCount
        childrenVersion = node.childrenVersion
        childrenTransaction = node.childrenTransaction
        sequenceNext = node.sequenceNext
        sequenceReserved = node.sequenceReserved
        createdTransaction = node.createdTransaction
    }

    func restore(into node: inout Node) {
        node.childrenCount = childrenCount
        node.childrenVersion = childrenVersion
        node.childrenTransaction = childrenTransaction
        if node.sequenceNext != sequenceNext || node.sequenceReserved != sequenceReserved {
            node.sequenceNext = sequenceNext
            node.sequenceReserved = sequenceReserved
        }
    }
}

/// An open session's entry in `Namespace.sessionNodes`.
struct SessionNodes {
    /// Quotas (PROTOCOL.md §8, "Quotas"): what it created and still exists (who created a node is
    /// `Node.creator`).
    var usage = SessionUsage()
    /// Its ephemeral nodes by creation transaction (a node's identity while it exists: hashing it is
    /// cheaper than hashing the path, and it orders a session's end).
    var ephemerals: [UInt64: String] = [:]
}

/// What one open session created and still exists (quotas).
struct SessionUsage: Equatable {
    var nodes = 0
    var dataBytes = 0

    /// One change of both counts: one access to the usage table instead of one per field.
    mutating func count(nodes: Int, dataBytes: Int) {
        self.nodes += nodes
        self.dataBytes += dataBytes
    }
}

struct SessionDeadline: Comparable {
    var deadlineMilliseconds: UInt64
    var sessionID: UInt64
    static func < (left: SessionDeadline, right: SessionDeadline) -> Bool {
        (left.deadlineMilliseconds, left.sessionID) < (right.deadlineMilliseconds, right.sessionID)
    }
}

/// What `commit` does with a `childrenChanged` parent for the container schedule.
enum ContainerCheck {
    /// Nothing: the parent gained a child.
    case none
    /// Schedule its sweep: a removal left this container empty, and nothing after it in the change could touch it.
    case emptiedContainer
    /// Look the parent up as the change left it.
    case lookUp
}

struct ContainerDeadline {
    var deadlineMilliseconds: UInt64
    var path: String
}
