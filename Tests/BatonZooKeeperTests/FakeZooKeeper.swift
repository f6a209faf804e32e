import BatonProtocol
import BatonZooKeeper

/// A ZooKeeper ensemble in memory, for the seeded simulation: one tree, sessions with ephemerals and
/// one-shot watches, sequence numbers from the parent's cversion, zxids. It keeps ZooKeeper's
/// guarantees and nothing more: each client's requests are served in order, and what the server sends
/// one client (replies, watch events) arrives in the order sent, a watch event before the reply of any
/// later request that saw the change. The simulation decides when a request reaches the server, when a
/// message reaches the client, when a connection drops and when a session expires.
final class FakeZooKeeper {
    struct Node {
        var data: [UInt8]
        var czxid: UInt64
        var mzxid: UInt64
        var pzxid: UInt64
        var ctime: UInt64
        var version: Int32 = 0
        var cversion: Int32 = 0
        /// The ZooKeeper session of an ephemeral, else 0.
        var owner: UInt64
        var children: Set<String> = []

        var stat: Stat {
            Stat(createdTransaction: czxid, modifiedTransaction: mzxid, childrenTransaction: pzxid,
                 createdMilliseconds: ctime, modifiedMilliseconds: ctime, version: version, childrenVersion: cversion,
                 ephemeralOwner: owner, dataLength: UInt32(data.count), childrenCount: UInt32(children.count),
                 kind: owner != 0 ? .ephemeral : .persistent)
        }
    }

    private(set) var nodes: [String: Node]
    private var zxid: UInt64 = 0x1_0000_0000
    var nowMilliseconds: UInt64 = 0
    /// Live sessions: the client connected to each (if any) and when the server last heard from it.
    private var sessions: [UInt64: (client: FakeZooKeeperClient?, lastHeard: UInt64?)] = [:]
    private var nextSession: UInt64 = 0x7200_0000_0000_0001
    /// One-shot watches by path: (session, the client's watch id).
    private var dataWatches: [String: [(session: UInt64, id: Int)]] = [:]
    private var childWatches: [String: [(session: UInt64, id: Int)]] = [:]
    var trace: ((String) -> Void)?
    /// Requests served (to count what a lock pair costs).
    private(set) var requestsServed = 0

    init() {
        nodes = ["/": Node(data: [], czxid: 0, mzxid: 0, pzxid: 0, ctime: 0, owner: 0)]
    }

    func isAlive(_ session: UInt64) -> Bool { sessions[session] != nil }

    func openSession(for client: FakeZooKeeperClient) -> UInt64 {
        let id = nextSession
        nextSession += 1
        sessions[id] = (client, nil)
        return id
    }

    /// The client's connection dropped: the session lives until `timeoutMilliseconds` without it.
    func disconnected(_ session: UInt64) {
        sessions[session]?.client = nil
        sessions[session]?.lastHeard = nowMilliseconds
    }

    func reconnected(_ session: UInt64, _ client: FakeZooKeeperClient) {
        sessions[session]?.client = client
        sessions[session]?.lastHeard = nil
    }

    /// Expires every session not heard from for `timeoutMilliseconds`; their ephemerals go.
    func expireSessions(timeoutMilliseconds: UInt64) {
        for (id, session) in sessions.sorted(by: { $0.key < $1.key }) {
            if let heard = session.lastHeard, nowMilliseconds - heard >= timeoutMilliseconds { close(id) }
        }
    }

    /// Ends a session (closed by its client, or expired): its ephemerals are deleted, its watches dropped.
    func close(_ session: UInt64) {
        guard sessions.removeValue(forKey: session) != nil else { return }
        for path in nodes.keys.sorted(by: >) where nodes[path]?.owner == session {
            _ = delete(path, version: -1)
        }
        for key in dataWatches.keys { dataWatches[key]?.removeAll { $0.session == session } }
        for key in childWatches.keys { childWatches[key]?.removeAll { $0.session == session } }
    }

    // MARK: Operations (applied when a request reaches the server)

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    private func fire(_ watches: inout [String: [(session: UInt64, id: Int)]], _ path: String, _ type: WatchEventType) {
        guard let list = watches.removeValue(forKey: path) else { return }
        for watch in list { sessions[watch.session]?.client?.receiveEvent(id: watch.id, type: type) }
        // A session that is disconnected gets the event after it reconnects (ZooKeeper's SetWatches).
        for watch in list where sessions[watch.session] != nil && sessions[watch.session]?.client == nil {
            pendingEvents[watch.session, default: []].append((watch.id, type))
        }
    }

    /// Events for disconnected sessions, delivered when they reconnect.
    var pendingEvents: [UInt64: [(id: Int, type: WatchEventType)]] = [:]

    func create(_ path: String, data: [UInt8], mode: CreateMode, session: UInt64) -> Result<(path: String, stat: Stat), ReplyError> {
        requestsServed += 1
        let parentPath = Self.parent(of: path)
        guard var parent = nodes[parentPath] else { return .failure(ReplyError(.noNode, path)) }
        guard parent.owner == 0 else { return .failure(ReplyError(.ephemeralParent, path)) }
        var created = path
        if mode.sequential {
            let digits = String(parent.cversion)
            created += String(repeating: "0", count: max(0, 10 - digits.count)) + digits
        }
        guard nodes[created] == nil else { return .failure(ReplyError(.nodeExists, created)) }
        zxid += 1
        let node = Node(data: data, czxid: zxid, mzxid: zxid, pzxid: zxid, ctime: nowMilliseconds,
                        owner: mode.kind == .ephemeral ? session : 0)
        nodes[created] = node
        trace?("server: \(created) created by session \(String(session, radix: 16))")
        parent.children.insert(String(created.split(separator: "/").last!))
        parent.cversion += 1
        parent.pzxid = zxid
        nodes[parentPath] = parent
        fire(&dataWatches, created, .created)
        fire(&childWatches, parentPath, .childrenChanged)
        return .success((created, node.stat))
    }

    func delete(_ path: String, version: Int32) -> Result<Void, ReplyError> {
        requestsServed += 1
        guard let node = nodes[path] else { return .failure(ReplyError(.noNode, path)) }
        guard version == -1 || version == node.version else { return .failure(ReplyError(.badVersion, path)) }
        guard node.children.isEmpty else { return .failure(ReplyError(.notEmpty, path)) }
        zxid += 1
        nodes[path] = nil
        trace?("server: \(path) deleted")
        let parentPath = Self.parent(of: path)
        nodes[parentPath]?.children.remove(String(path.split(separator: "/").last!))
        nodes[parentPath]?.cversion += 1
        nodes[parentPath]?.pzxid = zxid
        fire(&dataWatches, path, .deleted)
        fire(&childWatches, path, .deleted)
        fire(&childWatches, parentPath, .childrenChanged)
        return .success(())
    }

    func exists(_ path: String, watch: Int?, session: UInt64) -> Stat? {
        requestsServed += 1
        if let watch { dataWatches[path, default: []].append((session, watch)) }
        return nodes[path]?.stat
    }

    func getData(_ path: String, watch: Int?, session: UInt64) -> Result<(data: [UInt8], stat: Stat), ReplyError> {
        requestsServed += 1
        guard let node = nodes[path] else { return .failure(ReplyError(.noNode, path)) }
        if let watch { dataWatches[path, default: []].append((session, watch)) }
        return .success((node.data, node.stat))
    }

    func children(_ path: String, watch: Int?, session: UInt64) -> Result<(names: [String], stat: Stat), ReplyError> {
        requestsServed += 1
        guard let node = nodes[path] else { return .failure(ReplyError(.noNode, path)) }
        if let watch { childWatches[path, default: []].append((session, watch)) }
        // ZooKeeper promises no order: the recipe must not rely on one.
        return .success((node.children.sorted(by: >), node.stat))
    }
}

/// One sidecar's ZooKeeper client over `FakeZooKeeper`, behind the same seam as the C client
/// (`ZooKeeperRequests`). Requests wait in `outbox` until the simulation lets one reach the server;
/// what the server sends waits in `inbox` until the simulation delivers it. A dropped connection fails
/// every reply not yet delivered and every request not yet sent with `storageFailure` (ZooKeeper's
/// connection loss: the operation may or may not have happened); watch events survive it.
final class FakeZooKeeperClient: ZooKeeperRequests {
    enum State { case connecting, connected, suspended, closed }

    private enum Message {
        case reply(deliver: () -> Void, fail: () -> Void)
        case event(id: Int, type: WatchEventType)
    }

    private let server: FakeZooKeeper
    private(set) var state: State = .connecting
    private(set) var sessionID: UInt64 = 0
    private var outbox: [(apply: () -> Message, fail: () -> Void)] = []
    private var inbox: [Message] = []
    private var watches: [Int: (WatchEventType) -> Void] = [:]
    private var nextWatch = 1

    init(server: FakeZooKeeper) {
        self.server = server
    }

    var canSend: Bool { state == .connected && !outbox.isEmpty }
    var canDeliver: Bool { state == .connected && !inbox.isEmpty }

    // MARK: The connection, as the simulation drives it

    func connect() {
        precondition(state == .connecting)
        sessionID = server.openSession(for: self)
        state = .connected
    }

    func dropConnection() {
        guard state == .connected else { return }
        state = .suspended
        server.disconnected(sessionID)
        failPending()
    }

    /// Reconnected within the session: false if the session is gone (expired).
    func reconnect() -> Bool {
        precondition(state == .suspended)
        guard server.isAlive(sessionID) else { return false }
        state = .connected
        server.reconnected(sessionID, self)
        for event in server.pendingEvents.removeValue(forKey: sessionID) ?? [] { inbox.append(.event(id: event.id, type: event.type)) }
        return true
    }

    /// A connection attempt failed: requests queued meanwhile fail.
    func attemptFailed() {
        guard state == .suspended || state == .connecting else { return }
        let failed = outbox
        outbox.removeAll()
        for request in failed { request.fail() }
    }

    /// Closed by its owner: the server ends the session at once if it can be told, else it expires.
    func close(serverReachable: Bool) {
        guard state != .closed else { return }
        if serverReachable && state == .connected { server.close(sessionID) }
        state = .closed
        failPending()
        watches.removeAll()
    }

    private func failPending() {
        let replies = inbox
        inbox = replies.filter { if case .event = $0 { true } else { false } }
        let requests = outbox
        outbox.removeAll()
        for message in replies { if case .reply(_, let fail) = message { fail() } }
        for request in requests { request.fail() }
    }

    func sendOne() {
        guard canSend else { return }
        inbox.append(outbox.removeFirst().apply())
    }

    func deliverOne() {
        guard canDeliver else { return }
        switch inbox.removeFirst() {
        case .reply(let deliver, _): deliver()
        case .event(let id, let type): watches.removeValue(forKey: id)?(type)
        }
    }

    func receiveEvent(id: Int, type: WatchEventType) {
        guard state == .connected else { return }
        inbox.append(.event(id: id, type: type))
    }

    // MARK: ZooKeeperRequests

    var trace: ((String) -> Void)?

    private func enqueue<Value>(_ what: String, _ serve: @escaping () -> Result<Value, ReplyError>, watchID: Int? = nil, registering watch: ((WatchEventType) -> Void)?,
                                keepsWatch: @escaping (Result<Value, ReplyError>) -> Bool,
                                completion: @escaping (Result<Value, ReplyError>) -> Void) {
        let failure = { [weak self] in
            self?.trace?("client \(String(self?.sessionID ?? 0, radix: 16)): \(what) failed: connection lost")
            completion(.failure(ReplyError(.storageFailure, "ZooKeeper connection lost")))
        }
        // A closed client refuses at once, as the C client does.
        guard state != .closed else { return failure() }
        outbox.append((apply: { [unowned self] in
            let result = serve()
            // The client knows the watch once the reply arrives (as the C client does).
            return .reply(deliver: { [unowned self] in
                if let watchID, let watch, keepsWatch(result) { watches[watchID] = watch }
                trace?("client \(String(sessionID, radix: 16)): \(what) -> \(result)")
                completion(result)
            }, fail: failure)
        }, fail: failure))
    }

    private func id(_ watch: ((WatchEventType) -> Void)?) -> Int? {
        guard watch != nil else { return nil }
        defer { nextWatch += 1 }
        return nextWatch
    }

    func create(path: String, data: [UInt8], mode: CreateMode,
                completion: @escaping (Result<(path: String, stat: Stat), ReplyError>) -> Void) {
        enqueue("create \(path)", { [unowned self] in server.create(path, data: data, mode: mode, session: sessionID) },
                registering: nil, keepsWatch: { _ in false }, completion: completion)
    }

    func delete(path: String, expectedVersion: Int32, completion: @escaping (Result<Void, ReplyError>) -> Void) {
        enqueue("delete \(path)", { [unowned self] in server.delete(path, version: expectedVersion) }, registering: nil,
                keepsWatch: { _ in false }, completion: completion)
    }

    func exists(path: String, watch: ((WatchEventType) -> Void)?, watchesCreation: Bool,
                completion: @escaping (Result<Stat?, ReplyError>) -> Void) {
        let watchID = id(watch)
        enqueue("exists \(path)", { [unowned self] in .success(server.exists(path, watch: watchID, session: sessionID)) }, watchID: watchID, registering: watch,
                keepsWatch: { result in watchesCreation || ((try? result.get()) ?? nil) != nil }, completion: completion)
    }

    func getData(path: String, watch: ((WatchEventType) -> Void)?,
                 completion: @escaping (Result<(data: [UInt8], stat: Stat), ReplyError>) -> Void) {
        let watchID = id(watch)
        enqueue("getData \(path)", { [unowned self] in server.getData(path, watch: watchID, session: sessionID) }, watchID: watchID, registering: watch,
                keepsWatch: { result in (try? result.get()) != nil }, completion: completion)
    }

    func children(path: String, watch: ((WatchEventType) -> Void)?,
                  completion: @escaping (Result<(names: [String], stat: Stat), ReplyError>) -> Void) {
        let watchID = id(watch)
        enqueue("children \(path)", { [unowned self] in server.children(path, watch: watchID, session: sessionID) }, watchID: watchID, registering: watch,
                keepsWatch: { result in (try? result.get()) != nil }, completion: completion)
    }
}
