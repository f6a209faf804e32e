import BatonLocks
import BatonNamespace
import BatonProtocol

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
    /// Set while every local session ends because the backend's session was lost: holds end with
    /// `lockLost(backendSessionLost)` instead of `sessionExpired`.
    var endingSessionsForBackend = false
    init() {}
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
        for (node, holder) in locks.holders.sorted(by: { $0.key < $1.key }) {
            guard let token = holdToken(node) else { continue }
            deliver(.lockSuspended(node: node, token: token), toSession: holder.session)
        }
        drain(now: now)
    }

    /// Reconnected within the session: the holds are good again (no event: `checkToken` says so).
    public func backendResumed(now: Time) {
        backendState.now = now
        backendState.suspended = false
    }

    /// The backend's session expired, or its connection was gone for the whole session timeout (it
    /// may have expired, and the lock been granted elsewhere): every hold ends with
    /// `lockLost(backendSessionLost)`, every waiting acquire fails, and every local session ends
    /// (clients open new ones). The shell then opens a new backend session.
    public func backendSessionLost(now: Time) {
        backendState.now = now
        backendState.suspended = false
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
        backend.perform(request, session: session, watch: watch) { [weak self] result in
            guard let self else { return }
            endPendingRequest(on: connection)
            guard connections[connection] != nil else { return }
            reply(connection, requestID, request.opcode, result, now: backendState.now)
        }
    }

    /// The lock manager's namespace: the backend's when there is one.
    func lockNamespace(embedded: LockNamespace) -> LockNamespace {
        backendState.backend?.lockNamespace ?? embedded
    }
}
