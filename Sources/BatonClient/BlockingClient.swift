import Foundation
import BatonProtocol

/// The synchronous API, for scripts and the CLI: the same connection and session as a `BatonClient`.
/// Each call reads its own reply on the calling thread when no other thread is reading the
/// connection, and otherwise waits on a semaphore that whoever reads signals. Safe from any thread
/// except inside async code (use `BatonClient` there), including from watch callbacks.
public struct BlockingClient: Sendable {
    /// The async client on the same connection.
    public let client: BatonClient

    init(client: BatonClient) {
        self.client = client
    }

    var connection: ClientConnection { client.connection }
    public var session: SessionInfo { client.session }
    public var serverName: String { client.serverName }
    /// The connection's socket, for `baton run` to hand to its command: while any process holds it, the
    /// connection (and so the session and its holds) stays open. Not for reading or writing.
    package var socketDescriptor: Int32 { connection.descriptor }

    /// Connects, says hello and opens a new session.
    public static func connect(to endpoint: Endpoint? = nil, options: ClientOptions = ClientOptions())
        throws(BatonError) -> BlockingClient {
        let endpoint = endpoint ?? BatonClient.defaultEndpoint()
        let connection = try ClientConnection.connect(to: endpoint, options: options)
        do throws(BatonError) {
            let serverName = try handshake(connection, endpoint: endpoint, options: options)
            guard let timeout = options.sessionTimeout.wireMilliseconds else {
                throw BatonError.invalidArgument("session timeout out of range: \(options.sessionTimeout)")
            }
            let session = try perform(Calls.openSession(timeoutMilliseconds: timeout, flags: options.sessionFlags),
                                      on: connection, timeout: options.connectTimeout)
            return BlockingClient(client: BatonClient(connection: connection, options: options, session: session,
                                                      serverName: serverName, endpoint: endpoint))
        } catch {
            connection.close()
            throw error
        }
    }

    /// Connects and resumes an existing session.
    public static func resume(to endpoint: Endpoint? = nil, sessionID: UInt64, secret: SessionSecret,
                              options: ClientOptions = ClientOptions()) throws(BatonError) -> BlockingClient {
        let endpoint = endpoint ?? BatonClient.defaultEndpoint()
        let connection = try ClientConnection.connect(to: endpoint, options: options)
        do throws(BatonError) {
            let serverName = try handshake(connection, endpoint: endpoint, options: options)
            let timeout = try perform(Calls.resumeSession(id: sessionID, secret: secret), on: connection,
                                      timeout: options.connectTimeout)
            let session = SessionInfo(id: sessionID, secret: secret, timeoutMilliseconds: timeout)
            return BlockingClient(client: BatonClient(connection: connection, options: options, session: session,
                                                      serverName: serverName, endpoint: endpoint))
        } catch {
            connection.close()
            throw error
        }
    }

    /// Hello, then on TCP the token (PROTOCOL.md §4.7).
    static func handshake(_ connection: ClientConnection, endpoint: Endpoint, options: ClientOptions) throws(BatonError) -> String {
        let hello = try perform(Calls.hello(clientName: options.clientName), on: connection, timeout: options.connectTimeout)
        guard hello.version == ProtocolVersion.current else {
            throw .protocolViolation("server speaks protocol \(hello.version), client \(ProtocolVersion.current)")
        }
        connection.setRequestBytesMax(Int(hello.frameBytesMax))
        if case .tcp = endpoint, let token = options.tcpAuthenticationToken {
            try perform(Calls.authenticate(token: token), on: connection, timeout: options.connectTimeout)
        }
        return hello.serverName
    }

    static func perform<Value>(_ call: Call<Value>, on connection: ClientConnection, timeout: Duration?)
        throws(BatonError) -> Value {
        let body = try wait(on: connection, call.request, timeout: timeout, watch: call.watch).get()
        guard let value = call.decode(body) else { throw Call<Value>.unexpected(body, for: call.request) }
        return value
    }

    /// Submits and waits for the reply, reading it here when nobody else reads the connection.
    static func wait(on connection: ClientConnection, _ request: Request, timeout: Duration?,
                     watch: WatchRegistration?) -> Result<ReplyBody, BatonError> {
        let reply = BlockingReply()
        let requestID = connection.submit(request, timeout: timeout, watch: watch, claimingReadTurn: true) { reply.complete($0) }
        if let requestID { connection.readReply(to: requestID) }
        return reply.wait()
    }

    func perform<Value>(_ call: Call<Value>) throws(BatonError) -> Value {
        try Self.perform(call, on: connection, timeout: call.usesRequestTimeout ? client.options.requestTimeout : nil)
    }

    // MARK: Connection

    public var isClosed: Bool { client.isClosed }
    public func events() -> AsyncStream<Event> { client.events() }
    public func onLockLost(_ handler: @escaping @Sendable (LockLost) -> Void) { client.onLockLost(handler) }
    public func onClose(_ handler: @escaping @Sendable (BatonError) -> Void) { client.onClose(handler) }
    public func statusChanges() -> AsyncStream<ClientStatus> { client.statusChanges() }
    public func onStatusChange(_ handler: @escaping @Sendable (ClientStatus) -> Void) { client.onStatusChange(handler) }
    public func disconnect() { client.disconnect() }

    public func closeSession() throws(BatonError) {
        defer { connection.close() }
        try perform(Calls.closeSession())
    }

    // MARK: Nodes

    public func ping() throws(BatonError) {
        try perform(Calls.ping())
    }

    @discardableResult
    public func create<Bytes: Sequence<UInt8>>(_ path: String, data: Bytes, mode: CreateMode = .persistent)
        throws(BatonError) -> String {
        try perform(Calls.create(path, data: Array(data), mode: mode))
    }

    @discardableResult
    public func create(_ path: String, mode: CreateMode = .persistent) throws(BatonError) -> String {
        try perform(Calls.create(path, data: [], mode: mode))
    }

    public func delete(_ path: String, version: Int32 = anyVersion) throws(BatonError) {
        try perform(Calls.delete(path, version: version))
    }

    public func exists(_ path: String, watch: Bool = false, watcher: WatchCallback? = nil) throws(BatonError) -> Stat? {
        try perform(Calls.exists(path, watch: watch, callback: watcher))
    }

    public func get(_ path: String, watch: Bool = false, watcher: WatchCallback? = nil)
        throws(BatonError) -> (data: [UInt8], stat: Stat) {
        try perform(Calls.get(path, watch: watch, callback: watcher))
    }

    @discardableResult
    public func set<Bytes: Sequence<UInt8>>(_ path: String, data: Bytes, version: Int32 = anyVersion)
        throws(BatonError) -> Stat {
        try perform(Calls.set(path, data: Array(data), version: version))
    }

    /// Every page of a node's child names (see `BatonClient.children`).
    public func children(_ path: String, watch: Bool = false, watcher: WatchCallback? = nil)
        throws(BatonError) -> [String] {
        var page = try perform(Calls.children(path, watch: watch, callback: watcher))
        var names = page.names
        while page.more, let last = page.names.last {
            page = try perform(Calls.children(path, watch: false, callback: nil, after: last))
            names += page.names
        }
        return names
    }

    public func multi(_ operations: [MultiOperation]) throws(BatonError) -> [MultiResult] {
        try perform(Calls.multi(operations))
    }

    // MARK: Locks

    /// Waits for the lock (see `BatonClient.acquire`). Blocks the calling thread until granted,
    /// timed out (`lockTimeout`) or the connection ends.
    public func acquire(_ path: String, kind: LockKind = .exclusive, permits: UInt32 = 1, timeout: Duration? = nil,
                        lease: Duration? = nil, owner: String? = nil, revocable: Bool = false,
                        lockDelay: Duration? = nil) throws(BatonError) -> LockGrant {
        try perform(Calls.acquire(try Calls.lockRequest(path, kind: kind, permits: permits, timeout: timeout,
                                                        lease: lease, owner: owner, revocable: revocable,
                                                        lockDelay: lockDelay)))
    }

    /// See `BatonClient.forceRelease`.
    public func forceRelease(_ path: String, session: UInt64 = 0) throws(BatonError) -> UInt32 {
        try perform(Calls.forceRelease(path, session: session))
    }

    /// See `BatonClient.requestRevocation`.
    public func requestRevocation(_ path: String) throws(BatonError) -> UInt32 {
        try perform(Calls.requestRevocation(path))
    }

    public func tryAcquire(_ path: String, kind: LockKind = .exclusive, permits: UInt32 = 1, lease: Duration? = nil)
        throws(BatonError) -> LockGrant {
        try acquire(path, kind: kind, permits: permits, timeout: .zero, lease: lease)
    }

    public func release(_ grant: LockGrant) throws(BatonError) {
        try perform(Calls.release(grant))
    }

    /// Sets the hold's lease to end `lease` from now (see `BatonClient.renew`).
    public func renew(_ grant: LockGrant, lease: Duration) throws(BatonError) {
        try perform(Calls.renew(grant, leaseMilliseconds: try Calls.leaseMilliseconds(lease)))
    }

    /// Acquires, runs `body`, releases whatever `body` does.
    public func withLock<Result>(_ path: String, kind: LockKind = .exclusive, permits: UInt32 = 1,
                                 timeout: Duration? = nil, lease: Duration? = nil,
                                 _ body: (LockGrant) throws -> Result) throws -> Result {
        let grant = try acquire(path, kind: kind, permits: permits, timeout: timeout, lease: lease)
        let value: Result
        do {
            value = try body(grant)
        } catch {
            try? release(grant)
            throw error
        }
        try release(grant)
        return value
    }

    public func checkToken(_ path: String, token: UInt64) throws(BatonError) -> Bool {
        try perform(Calls.checkToken(path, token: token))
    }

    public func inspect(_ path: String) throws(BatonError) -> [LockEntry] {
        try perform(Calls.inspect(path))
    }

    /// Has batond write a consistent snapshot of its namespace to `file`, an absolute path on
    /// batond's host (Unix socket only), and returns once the file is durable. `batond --restore`
    /// reads it back.
    @discardableResult
    public func backup(to file: String) throws(BatonError) -> (lsn: UInt64, bytes: UInt64) {
        try perform(Calls.backup(to: file))
    }
}

/// Where a blocking call's reply lands: the completion stores it, then signals; the caller waits,
/// then reads it (the semaphore orders the two). Already signalled when the caller read the reply
/// itself, so the wait does not sleep.
final class BlockingReply: @unchecked Sendable {
    private var result: Result<ReplyBody, BatonError>?
    private let semaphore = DispatchSemaphore(value: 0)

    /// The request's completion: runs exactly once.
    func complete(_ result: Result<ReplyBody, BatonError>) {
        self.result = result
        semaphore.signal()
    }

    func wait() -> Result<ReplyBody, BatonError> {
        semaphore.wait()
        return result!
    }
}
