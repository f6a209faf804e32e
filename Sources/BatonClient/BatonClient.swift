#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
// Users name `Endpoint`, `LockKind`, `CreateMode`, `Stat`... with `import BatonClient` alone.
@_exported import BatonProtocol

/// A connection to batond with one session, async/await API. Requests from any number of tasks are
/// pipelined on the one connection. `blocking` gives the same operations synchronously.
///
///     let client = try await BatonClient.connect()
///     try await client.withLock("/locks/orders") { grant in ... grant.token ... }
public final class BatonClient: Sendable {
    let connection: ClientConnection
    let options: ClientOptions
    /// The session this client holds.
    public let session: SessionInfo
    /// The name the server gave in its hello.
    public let serverName: String
    public let endpoint: Endpoint

    init(connection: ClientConnection, options: ClientOptions, session: SessionInfo, serverName: String,
         endpoint: Endpoint) {
        self.connection = connection
        self.options = options
        self.session = session
        self.serverName = serverName
        self.endpoint = endpoint
        if options.heartbeats {
            connection.startHeartbeats(every: Self.heartbeatInterval(sessionTimeoutMilliseconds: session.timeoutMilliseconds))
        }
        if let policy = options.reconnect {
            connection.enableReconnect(ReconnectPlan(endpoint: endpoint, options: options, session: session, policy: policy))
        }
    }

    deinit {
        connection.close()
    }

    /// A third of the session timeout: two pings may be lost or late before the session is at risk.
    static func heartbeatInterval(sessionTimeoutMilliseconds: UInt32) -> Duration {
        .milliseconds(max(Int64(sessionTimeoutMilliseconds) / 3, 1))
    }

    /// The default endpoint of this process: `$BATON_SOCKET`, `$XDG_RUNTIME_DIR/baton.sock` or `/tmp/baton-$UID.sock`.
    public static func defaultEndpoint() -> Endpoint {
        .defaultEndpoint(environment: ProcessInfo.processInfo.environment, userID: UInt32(getuid()))
    }

    /// Connects, says hello and opens a new session.
    public static func connect(to endpoint: Endpoint? = nil, options: ClientOptions = ClientOptions())
        async throws(BatonError) -> BatonClient {
        let endpoint = endpoint ?? defaultEndpoint()
        return try await open(on: try ClientConnection.connect(to: endpoint, options: options), endpoint: endpoint, options: options)
    }

    /// Handshake and new session on a connected transport; closes it on failure.
    static func open(on connection: ClientConnection, endpoint: Endpoint, options: ClientOptions)
        async throws(BatonError) -> BatonClient {
        do throws(BatonError) {
            let serverName = try await handshake(connection, endpoint: endpoint, options: options).serverName
            guard let timeout = options.sessionTimeout.wireMilliseconds else {
                throw BatonError.invalidArgument("session timeout out of range: \(options.sessionTimeout)")
            }
            let session = try await perform(Calls.openSession(timeoutMilliseconds: timeout, flags: options.sessionFlags),
                                             on: connection, timeout: options.connectTimeout)
            return BatonClient(connection: connection, options: options, session: session, serverName: serverName,
                               endpoint: endpoint)
        } catch {
            connection.close()
            throw error
        }
    }

    /// Connects and resumes an existing session (typically over TCP after the old connection dropped).
    public static func resume(to endpoint: Endpoint? = nil, sessionID: UInt64, secret: SessionSecret,
                              options: ClientOptions = ClientOptions()) async throws(BatonError) -> BatonClient {
        let endpoint = endpoint ?? defaultEndpoint()
        let connection = try ClientConnection.connect(to: endpoint, options: options)
        do throws(BatonError) {
            let serverName = try await handshake(connection, endpoint: endpoint, options: options).serverName
            let timeout = try await perform(Calls.resumeSession(id: sessionID, secret: secret), on: connection,
                                            timeout: options.connectTimeout)
            let session = SessionInfo(id: sessionID, secret: secret, timeoutMilliseconds: timeout)
            return BatonClient(connection: connection, options: options, session: session, serverName: serverName,
                               endpoint: endpoint)
        } catch {
            connection.close()
            throw error
        }
    }

    /// Hello, then on TCP the token (PROTOCOL.md §4.7).
    static func handshake(_ connection: ClientConnection, endpoint: Endpoint, options: ClientOptions)
        async throws(BatonError) -> (version: UInt16, serverName: String, frameBytesMax: UInt32) {
        let hello = try await perform(Calls.hello(clientName: options.clientName), on: connection,
                                      timeout: options.connectTimeout)
        guard hello.version == ProtocolVersion.current else {
            throw .protocolViolation("server speaks protocol \(hello.version), client \(ProtocolVersion.current)")
        }
        connection.setRequestBytesMax(Int(hello.frameBytesMax))
        if case .tcp = endpoint, let token = options.tcpAuthenticationToken {
            try await perform(Calls.authenticate(token: token), on: connection, timeout: options.connectTimeout)
        }
        return hello
    }

    /// Submits `call` and reads its reply on this task's thread for at most
    /// `ClientConnection.asyncReadBudget` when nobody else reads; then suspends until it arrives.
    static func perform<Value>(_ call: Call<Value>, on connection: ClientConnection, timeout: Duration?)
        async throws(BatonError) -> Value {
        let reply = AsyncReply()
        if let requestID = connection.submit(call.request, timeout: timeout, watch: call.watch, claimingReadTurn: true,
                                             completion: { reply.complete($0) }) {
            connection.readReply(to: requestID, within: ClientConnection.asyncReadBudget)
        }
        let body = try await reply.value().get()
        guard let value = call.decode(body) else { throw Call<Value>.unexpected(body, for: call.request) }
        return value
    }

    func perform<Value>(_ call: Call<Value>) async throws(BatonError) -> Value {
        try await Self.perform(call, on: connection, timeout: call.usesRequestTimeout ? options.requestTimeout : nil)
    }

    /// The same connection and session, with synchronous methods.
    public var blocking: BlockingClient { BlockingClient(client: self) }

    // MARK: Connection

    /// True once the connection is gone (closed here, by the server, or by the network).
    public var isClosed: Bool { connection.isClosed }

    /// Pings sent by the heartbeat so far (for diagnostics and tests).
    public var heartbeatsSent: Int { connection.heartbeatsSent }

    /// Every event (watches, lock lost/suspended, session expired) from now on, in server order.
    /// Each call returns a new stream; it finishes when the connection closes.
    public func events() -> AsyncStream<Event> { connection.events() }

    /// Lock-lost events from now on, as a stream.
    public func lockLostEvents() -> AsyncStream<LockLost> {
        let events = connection.events()
        return AsyncStream { continuation in
            let task = Task {
                for await event in events {
                    if case .lockLost(let node, let token, let reason) = event {
                        continuation.yield(LockLost(node: node, token: token, reason: reason))
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Requests to give up a revocable hold (`acquire(..., revocable: true)`), from now on, as a stream
    /// (PROTOCOL.md §12.11). Giving it up is the holder's choice: `release` the grant.
    public func revocationRequests() -> AsyncStream<RevocationRequest> {
        let events = connection.events()
        return AsyncStream { continuation in
            let task = Task {
                for await event in events {
                    if case .revocationRequested(let node, let token, let requester) = event {
                        continuation.yield(RevocationRequest(node: node, token: token, requester: requester))
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// The connection's status (`connected`, `reconnecting`, `resumed`, `closed`) and the holds'
    /// (suspended, resumed, lost), from now on, as a stream that starts with the current connection
    /// status and finishes after `closed`.
    public func statusChanges() -> AsyncStream<ClientStatus> { connection.statusChanges() }

    /// `handler` runs on the client's event queue for every status change from now on (see `statusChanges`).
    public func onStatusChange(_ handler: @escaping @Sendable (ClientStatus) -> Void) {
        connection.addStatusHandler(handler)
    }

    /// `handler` runs on the client's event queue for every hold lost other than by release.
    public func onLockLost(_ handler: @escaping @Sendable (LockLost) -> Void) {
        connection.addLockLostHandler(handler)
    }

    /// `handler` runs once when the connection ends for good, with why (`connectionClosed` for EOF or
    /// `close()`; `sessionLost` when automatic reconnect gave up).
    public func onClose(_ handler: @escaping @Sendable (BatonError) -> Void) {
        connection.addCloseHandler(handler)
    }

    /// Drops the connection without closing the session: a TCP session (or one opened with
    /// `keepOnDisconnect`) can be resumed until it times out.
    public func disconnect() {
        connection.close()
    }

    /// Ends the session (its ephemeral nodes and holds go at once) and the connection.
    public func closeSession() async throws(BatonError) {
        defer { connection.close() }
        try await perform(Calls.closeSession())
    }

    // MARK: Nodes

    public func ping() async throws(BatonError) {
        try await perform(Calls.ping())
    }

    /// Creates a node and returns its path (with the sequence suffix when `mode.sequential`).
    @discardableResult
    public func create<Bytes: Sequence<UInt8>>(_ path: String, data: Bytes, mode: CreateMode = .persistent)
        async throws(BatonError) -> String {
        try await perform(Calls.create(path, data: Array(data), mode: mode))
    }

    @discardableResult
    public func create(_ path: String, mode: CreateMode = .persistent) async throws(BatonError) -> String {
        try await perform(Calls.create(path, data: [], mode: mode))
    }

    /// Deletes a node; `version` must match unless it is `anyVersion` (-1).
    public func delete(_ path: String, version: Int32 = anyVersion) async throws(BatonError) {
        try await perform(Calls.delete(path, version: version))
    }

    /// The node's stat, or nil if it does not exist. `watch` sets a data watch (it also fires on
    /// creation); `watcher` is called when it fires (the event also goes to `events()`).
    public func exists(_ path: String, watch: Bool = false, watcher: WatchCallback? = nil)
        async throws(BatonError) -> Stat? {
        try await perform(Calls.exists(path, watch: watch, callback: watcher))
    }

    public func get(_ path: String, watch: Bool = false, watcher: WatchCallback? = nil)
        async throws(BatonError) -> (data: [UInt8], stat: Stat) {
        try await perform(Calls.get(path, watch: watch, callback: watcher))
    }

    /// Replaces a node's data; returns its new stat.
    @discardableResult
    public func set<Bytes: Sequence<UInt8>>(_ path: String, data: Bytes, version: Int32 = anyVersion)
        async throws(BatonError) -> Stat {
        try await perform(Calls.set(path, data: Array(data), version: version))
    }

    /// The names of a node's children, in the server's order (UTF-8 bytes), every page of them.
    /// A listing of more than one page is not one atomic read; a watch set with it covers every
    /// change since its first page.
    public func children(_ path: String, watch: Bool = false, watcher: WatchCallback? = nil)
        async throws(BatonError) -> [String] {
        try await childrenAndStat(path, watch: watch, watcher: watcher).names
    }

    /// Children plus the parent's stat (as of the first page).
    public func childrenAndStat(_ path: String, watch: Bool = false, watcher: WatchCallback? = nil)
        async throws(BatonError) -> (names: [String], stat: Stat) {
        var page = try await perform(Calls.children(path, watch: watch, callback: watcher))
        let stat = page.stat
        var names = page.names
        while page.more, let last = page.names.last {
            page = try await perform(Calls.children(path, watch: false, callback: nil, after: last))
            names += page.names
        }
        return (names, stat)
    }

    /// One page of a node's children: at most `limit` names (0: the server's page size) after
    /// `after` (nil: from the first), and whether more follow.
    public func childrenPage(_ path: String, after: String? = nil, limit: UInt32 = 0, watch: Bool = false,
                             watcher: WatchCallback? = nil) async throws(BatonError) -> (names: [String], stat: Stat, more: Bool) {
        try await perform(Calls.children(path, watch: watch, callback: watcher, after: after, limit: limit))
    }

    /// Applies all operations or none.
    public func multi(_ operations: [MultiOperation]) async throws(BatonError) -> [MultiResult] {
        try await perform(Calls.multi(operations))
    }

    // MARK: Locks

    /// Waits for the lock and returns the grant. `timeout` nil waits forever; zero is `tryAcquire`
    /// (`lockBusy` when held). `lease` bounds the hold: past it the server ends it and sends lockLost.
    /// Cancelling the awaiting task cancels the wait on the server and throws `.cancelled`; a grant
    /// that races the cancellation is released, never returned.
    /// `lockDelay` (needs `owner`): if this session dies holding, nobody gets the lock for that long
    /// (at most the daemon's `lockDelayMillisecondsMax`; PROTOCOL.md §12.12).
    /// `revocable` (needs `owner`) lets any session ask this hold to be given up: the requests arrive
    /// as `revocationRequests()` (PROTOCOL.md §12.11).
    /// `owner` makes the acquire reentrant (PROTOCOL.md §12.9): a second acquire by the same owner (and
    /// session) of a lock it holds returns the same hold with `holdCount` one higher; each needs its
    /// release. Without an owner, acquiring an exclusive lock this session holds or awaits fails at once
    /// (`lockHeldBySession`) instead of waiting for itself.
    public func acquire(_ path: String, kind: LockKind = .exclusive, permits: UInt32 = 1, timeout: Duration? = nil,
                        lease: Duration? = nil, owner: String? = nil, revocable: Bool = false,
                        lockDelay: Duration? = nil) async throws(BatonError) -> LockGrant {
        let call = Calls.acquire(try Calls.lockRequest(path, kind: kind, permits: permits, timeout: timeout,
                                                       lease: lease, owner: owner, revocable: revocable,
                                                       lockDelay: lockDelay))
        let phase = MutexLock(AcquirePhase.notSent)
        let connection = self.connection
        let reply = AsyncReply()
        let result: Result<ReplyBody, BatonError> = await withTaskCancellationHandler {
            if case .cancelled = phase.withLock({ $0 }) { return .failure(.cancelled) }
            if let requestID = connection.submit(call.request, claimingReadTurn: true, completion: { reply.complete($0) }) {
                let cancelledMeanwhile = phase.withLock { phase in
                    if case .cancelled = phase { return true }
                    phase = .sent(requestID)
                    return false
                }
                if cancelledMeanwhile { connection.sendCancel(acquireRequestID: requestID) }
                // Bounded, so a waiting acquire soon suspends and a cancellation is soon heard.
                connection.readReply(to: requestID, within: ClientConnection.asyncReadBudget)
            }
            return await reply.value()
        } onCancel: {
            let requestID: UInt32? = phase.withLock { phase in
                defer { phase = .cancelled }
                if case .sent(let id) = phase { return id }
                return nil
            }
            if let requestID { connection.sendCancel(acquireRequestID: requestID) }
        }
        let cancelled = phase.withLock { phase in if case .cancelled = phase { true } else { false } }
        switch result {
        case .success(let body):
            guard let grant = call.decode(body) else { throw Call<LockGrant>.unexpected(body, for: call.request) }
            if cancelled {
                connection.submit(.release(node: grant.node, token: grant.token)) { _ in }
                throw .cancelled
            }
            return grant
        case .failure(.server(let error)) where error.code == .lockCancelled && cancelled:
            throw .cancelled
        case .failure(let error):
            throw error
        }
    }

    /// Takes the lock only if it is free now; `.server(lockBusy)` otherwise.
    public func tryAcquire(_ path: String, kind: LockKind = .exclusive, permits: UInt32 = 1, lease: Duration? = nil)
        async throws(BatonError) -> LockGrant {
        try await acquire(path, kind: kind, permits: permits, timeout: .zero, lease: lease)
    }

    /// Ends a hold (or withdraws a wait) named by its grant; a reentrant hold, one count of it.
    public func release(_ grant: LockGrant) async throws(BatonError) {
        try await perform(Calls.release(grant))
    }

    /// Sets the hold's lease to end `lease` from now (PROTOCOL.md §12.5): call it well before the lease
    /// ends (a third of it, say). Fails `noLease` for a hold granted without a lease, `lockLost` if the
    /// hold already ended.
    public func renew(_ grant: LockGrant, lease: Duration) async throws(BatonError) {
        try await perform(Calls.renew(grant, leaseMilliseconds: try Calls.leaseMilliseconds(lease)))
    }

    /// Acquires, runs `body`, and releases whatever `body` does (returns or throws). A failed release
    /// after a successful body is thrown; after a failed body, the body's error wins.
    public func withLock<Result>(_ path: String, kind: LockKind = .exclusive, permits: UInt32 = 1,
                                 timeout: Duration? = nil, lease: Duration? = nil,
                                 isolation: isolated (any Actor)? = #isolation,
                                 _ body: (LockGrant) async throws -> Result) async throws -> Result {
        let grant = try await acquire(path, kind: kind, permits: permits, timeout: timeout, lease: lease)
        let value: Result
        do {
            value = try await body(grant)
        } catch {
            try? await release(grant)
            throw error
        }
        try await release(grant)
        return value
    }

    /// Ends another session's hold or wait of the lock at `path` (PROTOCOL.md §12.13): with `session`
    /// 0, every current hold; else every hold and wait of that session there. Its holder is told
    /// `lockLost`, the next waiter granted with a higher token. Needs the `admin` permission when the
    /// daemon has access rules (`permissionDenied` otherwise). Returns how many were ended.
    public func forceRelease(_ path: String, session: UInt64 = 0) async throws(BatonError) -> UInt32 {
        try await perform(Calls.forceRelease(path, session: session))
    }

    /// Asks every revocable holder of the lock at `path` to give it up; returns how many were asked
    /// (0: nobody holds it revocably). Holders decide: this ends no hold by itself.
    public func requestRevocation(_ path: String) async throws(BatonError) -> UInt32 {
        try await perform(Calls.requestRevocation(path))
    }

    /// Whether `token` is still the current grant's token of the lock at `path` (for fencing at a resource).
    public func checkToken(_ path: String, token: UInt64) async throws(BatonError) -> Bool {
        try await perform(Calls.checkToken(path, token: token))
    }

    /// Holders then waiters of the lock at `path`.
    public func inspect(_ path: String) async throws(BatonError) -> [LockEntry] {
        try await perform(Calls.inspect(path))
    }

    /// Has batond write a consistent snapshot of its namespace to `file`, an absolute path on
    /// batond's host (Unix socket only), and returns once the file is durable. `batond --restore`
    /// reads it back.
    @discardableResult
    public func backup(to file: String) async throws(BatonError) -> (lsn: UInt64, bytes: UInt64) {
        try await perform(Calls.backup(to: file))
    }
}

/// Where an acquire is in its life, for cancellation that may come before or after it is sent.
enum AcquirePhase: Sendable {
    case notSent
    case sent(UInt32)
    case cancelled
}

/// Where an async call's reply lands. Read on the caller's own thread (`ClientConnection.readReply`),
/// it is taken without suspending; otherwise the task suspends until whoever reads it resumes it.
final class AsyncReply: Sendable {
    private enum Stage {
        case waiting
        case arrived(Result<ReplyBody, BatonError>)
        case suspended(CheckedContinuation<Result<ReplyBody, BatonError>, Never>)
        case taken
    }

    private let stage = MutexLock(Stage.waiting)

    /// The request's completion: runs exactly once, on whichever thread read the reply.
    func complete(_ result: Result<ReplyBody, BatonError>) {
        let continuation = stage.withLock { stage -> CheckedContinuation<Result<ReplyBody, BatonError>, Never>? in
            guard case .suspended(let continuation) = stage else {
                stage = .arrived(result)
                return nil
            }
            stage = .taken
            return continuation
        }
        continuation?.resume(returning: result)
    }

    /// The reply: at once when it has arrived, else after suspending until it does. Called once.
    func value() async -> Result<ReplyBody, BatonError> {
        if let arrived = take() { return arrived }
        return await withCheckedContinuation { continuation in
            let arrived = stage.withLock { stage -> Result<ReplyBody, BatonError>? in
                if case .arrived(let result) = stage {
                    stage = .taken
                    return result
                }
                stage = .suspended(continuation)
                return nil
            }
            if let arrived { continuation.resume(returning: arrived) }
        }
    }

    private func take() -> Result<ReplyBody, BatonError>? {
        stage.withLock { stage in
            guard case .arrived(let result) = stage else { return nil }
            stage = .taken
            return result
        }
    }
}
