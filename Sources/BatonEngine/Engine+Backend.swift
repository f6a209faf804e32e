import BatonLocks
import BatonNamespace
import BatonProtocol
import DequeModule

/// Where the namespace lives when it is not the embedded tree: a replicated store shared by many
/// sidecars (ZooKeeper, BatonZooKeeper.ZooKeeperBackend). The engine stays synchronous: it hands
/// namespace requests to the backend, which answers later through completions run on the loop
/// thread; the shell then calls `backendProgressed(now:)` so the engine routes what they produced.
///
/// Local sessions stay the engine's (the embedded `Namespace` keeps their table and timeouts); the
/// backend multiplexes them onto its own session and deletes a local session's ephemerals when told
/// (`sessionEnded`). The lock recipe runs over `lockNamespace`.
public protocol NamespaceBackend: AnyObject {
    /// What `hello` reports after the server name, e.g. "zookeeper://10.0.0.1:2181/baton".
    var storeDescription: String { get }
    /// The lock recipe's namespace over the backend.
    var lockNamespace: LockNamespace { get }
    /// Performs a namespace request (create, delete, exists, get, set, children, check, multi) for a
    /// local session. `completion` runs exactly once; `watch`, if the request set one, at most once,
    /// with the event's type and path, before the reply of any later request that saw the change.
    func perform(_ request: Request, session: UInt64, watch: ((WatchEventType, String) -> Void)?,
                 completion: @escaping (Result<ReplyBody, ReplyError>) -> Void)
    /// A local session ended: delete the ephemeral nodes it created.
    func sessionEnded(_ session: UInt64)
}

/// What the engine keeps for a backend.
struct EngineBackendState {
    var backend: NamespaceBackend?
    /// The time of the latest call into the engine: stamps replies routed from completions.
    var now = Time(milliseconds: 0)
    /// The backend's connection is gone (its session may live): holds are in doubt.
    var suspended = false
    /// The holds told `lockSuspended` (node, token, session), to be told `lockResumed` on reconnect.
    /// Bounded by the holds there were when the connection went.
    var suspendedHolds: [(node: String, token: UInt64, session: UInt64)] = []
    /// Set while every local session ends because the backend's session was lost: holds end with
    /// `lockLost(backendSessionLost)` instead of `sessionExpired`.
    var endingSessionsForBackend = false
    /// Per connection with a namespace request at the backend: its reply's slot and every reply
    /// produced after it, in request order (PROTOCOL.md §4.3). A slot's message is nil until its
    /// completion. Each request gives at most one entry, so this is bounded by what a connection may
    /// have in flight.
    var heldReplies: [ConnectionID: Deque<HeldReply>] = [:]
    var nextReplySlot: UInt64 = 0
    init() {}
}

struct HeldReply {
    /// Set for the reply of a namespace request at the backend.
    var slot: UInt64?
    var message: ServerMessage?
}

extension Engine {
    /// Serves the namespace from `backend` instead of the embedded tree (set before any connection).
    public func useBackend(_ backend: NamespaceBackend) {
        precondition(connections.isEmpty && locks.manager == nil, "the backend is chosen before serving")
        backendState.backend = backend
    }

    public var backend: NamespaceBackend? { backendState.backend }

    /// The server name `hello` reports: with a backend, followed by " store=" and where the namespace
    /// lives (Proto/PROTOCOL.md §4.2), e.g. "batond store=zookeeper://10.0.0.1:2181/baton".
    var helloServerName: String {
        guard let backend = backendState.backend else { return configuration.serverName }
        return configuration.serverName + " store=" + backend.storeDescription
    }

    /// The backend's completions ran (the shell processed its I/O): route the replies, events and
    /// lock effects they produced.
    public func backendProgressed(now: Time) {
        backendState.now = now
        if locks.manager != nil { routeLockEffects(now: now) }
        drain(now: now)
    }

    /// Whether holds are in doubt (`lockSuspended` was sent): `checkToken` answers false meanwhile.
    public var isBackendSuspended: Bool { backendState.suspended }

    /// The backend lost its connection (its session may live on): every local holder is told
    /// `lockSuspended`, and `checkToken` answers false until `backendResumed`.
    public func backendSuspended(now: Time) {
        backendState.now = now
        guard !backendState.suspended else { return }
        backendState.suspended = true
        for holder in locks.holders.values.sorted(by: { $0.node < $1.node }) {
            let node = holder.node
            guard let token = holdToken(node) else { continue }
            backendState.suspendedHolds.append((node, token, holder.session))
            deliver(.lockSuspended(node: node, token: token), toSession: holder.session)
        }
        drain(now: now)
    }

    /// Reconnected within the session: the holds are good again (`checkToken` says so). Every hold
    /// told `lockSuspended` that still lives is told `lockResumed` if its session opted in
    /// (`resumedEvents`, PROTOCOL.md §12.8); a hold that ended meanwhile was told `lockLost` instead.
    public func backendResumed(now: Time) {
        backendState.now = now
        guard backendState.suspended else { return }
        backendState.suspended = false
        let suspendedHolds = backendState.suspendedHolds
        backendState.suspendedHolds = []
        for hold in suspendedHolds {
            guard let holder = locks.holders[hold.token], holder.node == hold.node, holder.session == hold.session,
                  sessions[hold.session]?.flags.contains(.resumedEvents) == true else { continue }
            deliver(.lockResumed(node: hold.node, token: hold.token), toSession: hold.session)
        }
        drain(now: now)
    }

    /// The backend's session expired, or its connection was gone for the whole session timeout (it
    /// may have expired, and the lock been granted elsewhere): every hold ends with
    /// `lockLost(backendSessionLost)`, every waiting acquire fails, and every local session ends
    /// (clients open new ones). The shell then opens a new backend session.
    public func backendSessionLost(now: Time) {
        backendState.now = now
        backendState.suspended = false
        backendState.suspendedHolds = [] // each is told lockLost below
        backendState.endingSessionsForBackend = true
        defer { backendState.endingSessionsForBackend = false }
        for sessionID in sessions.keys.sorted() {
            endSession(sessionID, reason: .expired, now: now)
            drain(now: now)
        }
    }

    /// The reason a hold ended, as the holder is told it.
    func lostReason(_ reason: LockLostReason) -> LockLostReason {
        backendState.endingSessionsForBackend ? .backendSessionLost : reason
    }

    private func holdToken(_ node: String) -> UInt64? {
        guard let manager = locks.manager else { return nil }
        return manager.inspect(path: NodePath.parent(of: node), now: backendState.now)
            .first { $0.node == node && $0.position == .holder }?.token
    }

    /// A namespace request of a session, sent to the backend; its reply is routed when it completes.
    func performOnBackend(_ backend: NamespaceBackend, _ request: Request, requestID: UInt32,
                          connection: ConnectionID, session: UInt64, now: Time) {
        backendState.now = now
        var watch: ((WatchEventType, String) -> Void)?
        switch request {
        case .exists(_, true), .get(_, true), .children(_, true, _, _):
            watch = { [weak self] type, path in
                guard let self, sessions[session] != nil else { return }
                deliver(.watch(type: type, path: path), toSession: session)
            }
        default:
            break
        }
        beginPendingRequest(on: connection)
        let slot = openReplySlot(connection)
        backend.perform(request, session: session, watch: watch) { [weak self] result in
            guard let self else { return }
            endPendingRequest(on: connection)
            fillReplySlot(connection, slot, .reply(Reply(requestID: requestID, opcode: request.opcode, result: result)))
        }
    }

    // MARK: Reply order per connection

    // Replies leave in request order (PROTOCOL.md §4.3): a reply produced while an earlier namespace
    // request of its connection is at the backend waits behind that request's slot. Events are not
    // held: ZooKeeper answers a session's requests in order and puts each watch event before the
    // answers that follow it, so when an event comes, every earlier namespace reply has left already,
    // and the event goes before the replies of the requests ZooKeeper has not answered yet. `acquire`,
    // `checkToken` and `inspect` replies over the backend are answered when known (they take no slot).

    func openReplySlot(_ connection: ConnectionID) -> UInt64 {
        backendState.nextReplySlot += 1
        backendState.heldReplies[connection, default: []].append(HeldReply(slot: backendState.nextReplySlot, message: nil))
        return backendState.nextReplySlot
    }

    func fillReplySlot(_ connection: ConnectionID, _ slot: UInt64, _ message: ServerMessage) {
        guard connections[connection] != nil else {
            backendState.heldReplies[connection] = nil // closed: nothing is sent to it any more
            return
        }
        guard var held = backendState.heldReplies[connection], let index = held.firstIndex(where: { $0.slot == slot }) else {
            return outputs.append(.send(connection, message))
        }
        held[index].message = message
        while let first = held.first, let ready = first.message {
            outputs.append(.send(connection, ready))
            held.removeFirst()
        }
        backendState.heldReplies[connection] = held.isEmpty ? nil : held
    }

    /// Keeps a reply behind the connection's namespace requests still at the backend; false if none is.
    func holdReply(_ connection: ConnectionID, _ message: ServerMessage) -> Bool {
        guard backendState.backend != nil, backendState.heldReplies[connection] != nil else { return false }
        backendState.heldReplies[connection]!.append(HeldReply(slot: nil, message: message))
        return true
    }

    /// `checkToken` for a token no local holder has: whether ZooKeeper's queue of the lock entitles a
    /// node with that czxid, wherever its holder is (PROTOCOL.md §16).
    func checkTokenOnBackend(_ backend: NamespaceBackend, path: String, token: UInt64, requestID: UInt32,
                             connection: ConnectionID, now: Time) {
        backendState.now = now
        beginPendingRequest(on: connection)
        LockQueueRead.read(backend.lockNamespace, lockPath: path, scope: .entitled) { [weak self] result in
            guard let self else { return }
            endPendingRequest(on: connection)
            guard connections[connection] != nil else { return }
            let answer: Result<ReplyBody, ReplyError>
            switch result {
            case .success(let entries):
                // Suspended meanwhile: in doubt, like every hold (§12.8).
                let current = !backendState.suspended && entries.contains { $0.entitled && $0.stat?.createdTransaction == token }
                answer = .success(.tokenStatus(current: current))
            case .failure(let error) where error.code == .noNode:
                answer = .success(.tokenStatus(current: false))
            case .failure(let error):
                answer = .failure(error)
            }
            reply(connection, requestID, .checkToken, answer, now: backendState.now)
        }
    }

    /// `inspect` from ZooKeeper's queue of the lock: every sidecar's holders and waiters. Positions follow
    /// the entitlement rule; this sidecar's own entries carry their session, client name and age as the
    /// lock manager knows them, other sidecars' have session 0, no client name, and their age since the
    /// node's creation by the ensemble's clock (PROTOCOL.md §16).
    func inspectOnBackend(_ backend: NamespaceBackend, path: String, requestID: UInt32, connection: ConnectionID, now: Time) {
        backendState.now = now
        beginPendingRequest(on: connection)
        LockQueueRead.read(backend.lockNamespace, lockPath: path, scope: .all) { [weak self] result in
            guard let self else { return }
            endPendingRequest(on: connection)
            guard connections[connection] != nil else { return }
            let now = backendState.now
            let local = Dictionary(locks.manager?.inspect(path: path, now: now).map { ($0.node, $0) } ?? [], uniquingKeysWith: { first, _ in first })
            reply(connection, requestID, .inspect, result.map { entries in
                .lockEntries(entries.compactMap { entry in
                    guard let stat = entry.stat else { return nil }
                    let position: LockPosition = entry.entitled ? .holder : .waiter
                    if let mine = local[entry.path], stat.ephemeralOwner != 0 {
                        return LockEntry(node: entry.path, kind: entry.name.kind, position: position, sessionID: mine.sessionID,
                                         clientName: mine.clientName, token: stat.createdTransaction, ageMilliseconds: mine.ageMilliseconds)
                    }
                    let age = now.wallMilliseconds >= stat.createdMilliseconds ? now.wallMilliseconds - stat.createdMilliseconds : 0
                    return LockEntry(node: entry.path, kind: entry.name.kind, position: position, sessionID: stat.ephemeralOwner,
                                     clientName: "", token: stat.createdTransaction, ageMilliseconds: age)
                })
            }, now: now)
        }
    }

    /// The lock manager's namespace: the backend's when there is one.
    func lockNamespace(embedded: LockNamespace) -> LockNamespace {
        backendState.backend?.lockNamespace ?? embedded
    }
}
