import BatonAccess
import BatonLocks
import BatonNamespace
import BatonProtocol
import Collections

/// The server's view of a transport connection; the engine never sees a socket.
public typealias ConnectionID = UInt64

public enum TransportKind: Sendable, Equatable {
    case unix
    case tcp
}

/// What the engine asks its shell to do, in order.
public enum EngineOutput: Sendable, Equatable {
    /// Send a frame to a connection.
    case send(ConnectionID, ServerMessage)
    /// Close a connection after flushing what was queued to it.
    case close(ConnectionID)
    /// Append a record to the write-ahead log; replies queued after it wait until it is durable.
    case persist([UInt8])
}

public struct EngineConfiguration: Sendable {
    public var limits: Limits = .default
    public var serverName: String = BatonVersion.serverName
    /// Session timeout used when a client asks for 0.
    public var defaultSessionTimeoutMilliseconds: UInt32 = 10_000
    /// An empty container is deleted once it has been empty this long (ZooKeeper sweeps them too),
    /// so a lock taken and released in a loop does not log a create and a delete every time.
    public var containerGraceMilliseconds: UInt64 = 10_000
    /// Events kept for a detached session until it resumes; one more ends the session.
    public var detachedSessionEventsMax: Int = 10_000
    /// The token a TCP connection must present with `authenticate` before it opens or resumes a
    /// session (Engine+Authentication.swift). nil: no TCP connection can ever open one.
    public var tcpAuthenticationToken: [UInt8]?
    /// false: no log keeps the namespace's records (in memory), so none is made (`.persist`).
    public var logsRecords = true
    public init() {}

    var namespaceConfiguration: NamespaceConfiguration {
        var configuration = NamespaceConfiguration()
        configuration.limits = limits
        configuration.defaultSessionTimeoutMilliseconds = defaultSessionTimeoutMilliseconds
        configuration.containerGraceMilliseconds = containerGraceMilliseconds
        configuration.logsRecords = logsRecords
        return configuration
    }
}

/// The state machine the server drives: it takes decoded requests, connection events and the time,
/// and produces outputs. Synchronous, single-threaded, no I/O, no clock.
///
/// Ordering: everything a request causes is queued before its reply, in the order it happened:
/// log records (`.persist`) first, then watch events, then the reply. So a client sees a watch
/// event before the reply that shows the new data (ZooKeeper's guarantee), and the server, which
/// holds replies until the records before them are durable, never acknowledges a lost write.
public final class Engine {
    public let configuration: EngineConfiguration
    /// The tree; outside the engine use it only to read (metrics, status).
    public let namespace: Namespace

    var connections: [ConnectionID: ConnectionState] = [:]
    var sessions: [UInt64: SessionState] = [:]
    var outputs: [EngineOutput] = []
    /// Backups asked for and not yet taken by the shell, which writes them (`takeBackupRequests`).
    var backupRequests: [BackupRequest] = []
    /// What happened and is not routed yet, in the order it happened (see `drain`).
    var routing: Deque<Routed> = []
    var isDraining = false
    /// Sessions to end once the happening being routed is done (event queue overflow).
    var sessionsToEnd: [UInt64] = []
    /// Set by `shutdown`: no connection is accepted any more.
    var isShutDown = false
    /// State of the lock integration (Engine+Locks.swift).
    var locks = EngineLocks()
    /// Counters of the authentication step (Engine+Authentication.swift).
    var authentication = EngineAuthentication()
    /// Access rules and denials (Engine+Access.swift).
    var access = EngineAccess()
    /// The namespace backend, when the namespace is not the embedded tree (Engine+Backend.swift).
    var backendState = EngineBackendState()
    /// Open sessions per peer identity, for `sessionsPerPeerMax`.
    var sessionsByPeer: [String: Int] = [:]
    /// The session `heartbeat` last touched, and at which monotonic millisecond.
    var lastHeartbeat: (session: UInt64, milliseconds: UInt64) = (0, .max)

    var limits: Limits { configuration.limits }

    public convenience init(configuration: EngineConfiguration, now: Time) {
        self.init(configuration: configuration, now: now, random: SystemRandomNumberGenerator())
    }

    public init(configuration: EngineConfiguration, now: Time, random: some RandomNumberGenerator) {
        self.configuration = configuration
        self.namespace = Namespace(configuration: configuration.namespaceConfiguration, now: now, random: random)
    }

    /// Recovery: the last snapshot (if any) and the log records written after it, in order.
    public init(configuration: EngineConfiguration, now: Time,
                random: some RandomNumberGenerator = SystemRandomNumberGenerator(),
                recoveringFrom snapshot: [UInt8]?, records: some Sequence<[UInt8]>) throws(RecoveryError) {
        self.configuration = configuration
        self.namespace = try Namespace(configuration: configuration.namespaceConfiguration, now: now, random: random,
                                       recoveringFrom: snapshot, records: records)
    }

    /// A copy of the persistent state for the background snapshot writer: take it on the loop
    /// thread, call `serialize()` on any thread.
    public func snapshotSource() -> NamespaceSnapshot { namespace.snapshot() }

    public var connectionCount: Int { connections.count }
    public var sessionCount: Int { sessions.count }

    // MARK: Connections

    /// A new connection; false if the connection limit is reached (the server sends
    /// `tooManyConnections` and closes it: the engine queues that output itself).
    public func connectionOpened(_ connection: ConnectionID, transport: TransportKind, now: Time) -> Bool {
        guard !isShutDown else {
            outputs.append(.send(connection, .reply(Reply(requestID: 0, opcode: .hello, result: .failure(
                ReplyError(.shuttingDown, "batond is shutting down"))))))
            outputs.append(.close(connection))
            return false
        }
        guard connections.count < limits.connectionsMax else {
            outputs.append(.send(connection, .reply(Reply(requestID: 0, opcode: .hello, result: .failure(
                ReplyError(.tooManyConnections, "at most \(limits.connectionsMax) connections"))))))
            outputs.append(.close(connection))
            return false
        }
        precondition(connections[connection] == nil, "connection \(connection) opened twice")
        connections[connection] = ConnectionState(transport: transport, isAuthorized: transport == .unix)
        return true
    }

    /// Who is behind the connection (`uid:N` on the Unix socket, `tcp:ADDRESS`): sessions it opens
    /// count against that identity's `sessionsPerPeerMax`. Without it a connection's sessions count for no one.
    public func connectionIdentified(_ connection: ConnectionID, as identity: String) {
        connections[connection]?.peerIdentity = identity
    }

    /// The transport went away (EOF, error, or the server dropped a slow reader).
    public func connectionClosed(_ connection: ConnectionID, now: Time) {
        // Unknown: the engine closed it itself and already let go of it.
        guard connections.index(forKey: connection) != nil else { return }
        disconnect(connection, now: now)
        drain(now: now)
    }

    /// Forgets a connection: its session ends (Unix, unless kept) or waits for a resume.
    func disconnect(_ connection: ConnectionID, now: Time) {
        guard let state = connections.removeValue(forKey: connection) else { return }
        lockConnectionClosed(connection, pending: state.pendingAcquires, now: now)
        guard let sessionID = state.sessionID, let session = sessions[sessionID], session.connection == connection else { return }
        if state.transport == .unix && !session.flags.contains(.keepOnDisconnect) {
            // The client process is gone (a Unix peer cannot come back): pass its locks on now.
            endSession(sessionID, reason: .disconnected, now: now)
        } else {
            sessions[sessionID]!.connection = nil
        }
    }

    /// Closes a connection from this side, after what was queued to it.
    func closeConnection(_ connection: ConnectionID, now: Time) {
        outputs.append(.close(connection))
        disconnect(connection, now: now)
    }

    // MARK: Requests

    public func handle(_ request: Request, requestID: UInt32, from connection: ConnectionID, now: Time) {
        // Frames decoded after the engine closed the connection are dropped. Its state is read in
        // place (`requestFields`): a copy of the whole struct (names, identity, rules) cost every
        // request a round of retains and releases.
        guard let index = connections.index(forKey: connection) else { return }
        let (greeted, sessionOfConnection, isAuthorized) = connections.values[index].requestFields()
        guard greeted else {
            greet(request, requestID: requestID, connection: connection, now: now)
            return
        }
        // Any frame is a heartbeat, even one that is refused below.
        if let sessionID = sessionOfConnection { heartbeat(sessionID, now: now) }
        if !isAuthorized || access.policy != nil {
            // Otherwise neither can refuse: a connection not yet authorized, or access rules in force.
            let state = connections.values[index]
            if refusesUnauthorized(request, state: state, requestID: requestID, connection: connection, now: now) { return }
            if refusesByAccessRules(request, state: state, requestID: requestID, connection: connection, now: now) { return }
        }

        switch request {
        case .hello:
            reply(connection, requestID, .hello, .failure(ReplyError(.invalidArgument, "hello was already done")), now: now)
        case .openSession(let timeoutMilliseconds, let flags):
            openSession(timeoutMilliseconds: timeoutMilliseconds, flags: flags, requestID: requestID,
                        connection: connection, now: now)
        case .resumeSession(let sessionID, let secret):
            resumeSession(sessionID, secret: secret, requestID: requestID, connection: connection, now: now)
        case .closeSession:
            guard let sessionID = session(sessionOfConnection, for: request, requestID: requestID, connection: connection, now: now) else { return }
            endSession(sessionID, reason: .closed, now: now)
            drain(now: now)
            reply(connection, requestID, .closeSession, .success(.empty), now: now)
        case .ping:
            reply(connection, requestID, .ping, .success(.empty), now: now)
        case .authenticate(let token):
            authenticate(token, requestID: requestID, connection: connection, now: now)
        case .create, .delete, .exists, .get, .set, .children, .check, .multi, .addWatch, .removeWatches:
            guard let sessionID = session(sessionOfConnection, for: request, requestID: requestID, connection: connection, now: now) else { return }
            if let refusal = lockNodeRefusal(request) ?? storeRefusal(request) {
                reply(connection, requestID, request.opcode, .failure(refusal), now: now)
                return
            }
            if let backend = backendState.backend {
                performOnBackend(backend, request, requestID: requestID, connection: connection, session: sessionID, now: now)
                return
            }
            let result = perform(request, session: sessionID, now: now)
            drain(now: now)
            reply(connection, requestID, request.opcode, result, now: now)
        case .acquire, .release, .cancel, .checkToken, .inspect, .renew, .requestRevocation, .acquireAll:
            guard let sessionID = session(sessionOfConnection, for: request, requestID: requestID, connection: connection, now: now) else { return }
            handleLockRequest(request, requestID: requestID, connection: connection, session: sessionID, now: now)
            drain(now: now)
        case .forceRelease(let path, let victim):
            guard let sessionID = session(sessionOfConnection, for: request, requestID: requestID, connection: connection, now: now) else { return }
            forceRelease(path, victim: victim, requestID: requestID, connection: connection, session: sessionID, now: now)
        case .backup(let file):
            requestBackup(file, requestID: requestID, connection: connection, transport: connections[connection]!.transport, now: now)
        }
    }

    /// A request of `sessionID` arrived at `now`. The shell reads the clock once per loop turn, so a
    /// pipelined burst's requests share one time, and touching a session again at the same
    /// millisecond changes nothing (its deadline only ever moves later): only the first of them
    /// asks the namespace (a hash of the id and a write in its session table per request).
    func heartbeat(_ sessionID: UInt64, now: Time) {
        guard sessionID != lastHeartbeat.session || now.monotonicMilliseconds != lastHeartbeat.milliseconds else { return }
        lastHeartbeat = (sessionID, now.monotonicMilliseconds)
        namespace.touch(sessionID, now: now)
    }

    /// The connection's session (`sessionID`), or nil once `request` is answered with why it has none.
    private func session(_ sessionID: UInt64?, for request: Request, requestID: UInt32, connection: ConnectionID,
                         now: Time) -> UInt64? {
        if let sessionID { return sessionID }
        let error = connections[connection]?.noSessionError ?? ReplyError(.sessionRequired)
        reply(connection, requestID, request.opcode, .failure(error), now: now)
        return nil
    }

    /// Bytes from `connection` wait unread in the shell (its per-turn budget, backpressure): they
    /// count as a heartbeat now, so a session is never expired for frames the server has not read.
    public func inputWaiting(on connection: ConnectionID, now: Time) {
        guard let sessionID = connections[connection]?.sessionID else { return }
        namespace.touch(sessionID, now: now)
    }

    /// A frame on `connection` could not be decoded: reply with the error, close if it says so.
    public func decodeFailed(_ failure: DecodeFailure, from connection: ConnectionID, now: Time) {
        guard let state = connections[connection] else { return }
        // The reply must name an opcode; an unknown one is answered as the handshake opcode.
        let opcode = failure.opcode.flatMap(Opcode.init(rawValue:)) ?? .hello
        var code = failure.code
        // Before the handshake, anything but a good hello ends the connection.
        if !state.greeted && !code.closesConnection { code = .handshakeRequired }
        if let sessionID = state.sessionID { namespace.touch(sessionID, now: now) }
        reply(connection, failure.requestID ?? 0, opcode, .failure(ReplyError(code, failure.message)), now: now)
    }

    func greet(_ request: Request, requestID: UInt32, connection: ConnectionID, now: Time) {
        guard case .hello(let version, let clientName) = request else {
            reply(connection, requestID, request.opcode,
                  .failure(ReplyError(.handshakeRequired, "the first request must be hello")), now: now)
            return
        }
        guard version == ProtocolVersion.current else {
            reply(connection, requestID, .hello, .failure(ReplyError(
                .unsupportedVersion, "this server speaks version \(ProtocolVersion.current), not \(version)")), now: now)
            return
        }
        guard clientName.utf8.count <= limits.clientNameBytesMax else {
            reply(connection, requestID, .hello, .failure(ReplyError(
                .invalidArgument, "client name longer than \(limits.clientNameBytesMax) bytes")), now: now)
            return
        }
        connections[connection]!.greeted = true
        connections[connection]!.clientName = clientName
        reply(connection, requestID, .hello, .success(.hello(
            version: ProtocolVersion.current, serverName: helloServerName,
            frameBytesMax: UInt32(clamping: limits.frameBytesMax))), now: now)
    }

    func perform(_ request: Request, session: UInt64, now: Time) -> Result<ReplyBody, ReplyError> {
        let watcher = Watcher.session(session)
        do throws(ReplyError) {
            switch request {
            case .create(let path, let data, let mode):
                let created = try namespace.create(path, data: data, mode: mode, session: session, now: now)
                return .success(.created(path: created.path, stat: created.stat))
            case .delete(let path, let expectedVersion):
                try namespace.delete(path, expectedVersion: expectedVersion, now: now)
                return .success(.empty)
            case .exists(let path, let watch):
                return .success(.exists(try namespace.exists(path, watcher: watch ? watcher : nil)))
            case .get(let path, let watch):
                let read = try namespace.get(path, watcher: watch ? watcher : nil)
                return .success(.data(stat: read.stat, data: read.data))
            case .set(let path, let data, let expectedVersion):
                return .success(.stat(try namespace.set(path, data: data, expectedVersion: expectedVersion, now: now)))
            case .children(let path, let watch, let after, let limit):
                // One page: a listing's cost (and its reply) is bounded whatever the node holds.
                let pageMax = limits.childrenPageMax
                let page = try namespace.children(path, after: after.isEmpty ? nil : after,
                                                  limit: limit == 0 ? pageMax : min(Int(limit), pageMax),
                                                  watcher: watch ? watcher : nil)
                return .success(.children(stat: page.stat, names: page.names, more: page.more))
            case .check(let path, let expectedVersion):
                try namespace.check(path, expectedVersion: expectedVersion)
                return .success(.empty)
            case .multi(let operations):
                do throws(MultiFailure) {
                    return .success(.multi(try namespace.multi(operations, session: session, now: now)))
                } catch {
                    return .failure(error.replyError)
                }
            case .addWatch(let path, let mode):
                try namespace.addPersistentWatch(watcher, path: path, mode: mode)
                return .success(.empty)
            case .removeWatches(let path, let mode):
                try namespace.removePersistentWatch(watcher, path: path, mode: mode)
                return .success(.empty)
            default:
                preconditionFailure("not a namespace request: \(request.opcode)")
            }
        } catch {
            return .failure(error)
        }
    }

    // MARK: Sessions

    func openSession(timeoutMilliseconds: UInt32, flags: SessionFlags, requestID: UInt32, connection: ConnectionID,
                     now: Time) {
        guard connections[connection]!.sessionID == nil else {
            reply(connection, requestID, .openSession, .failure(ReplyError(.sessionAlreadyOpen)), now: now)
            return
        }
        let peer = connections[connection]!.peerIdentity
        if let peer, let open = sessionsByPeer[peer], open >= limits.sessionsPerPeerMax {
            reply(connection, requestID, .openSession, .failure(ReplyError(
                .quotaExceeded, "sessionsPerPeerMax: \(peer) has \(open) sessions open, at most \(limits.sessionsPerPeerMax)")), now: now)
            return
        }
        let session: SessionInfo
        do throws(ReplyError) {
            session = try namespace.openSession(timeoutMilliseconds: timeoutMilliseconds, now: now)
        } catch {
            reply(connection, requestID, .openSession, .failure(error), now: now)
            return
        }
        sessions[session.id] = SessionState(clientName: connections[connection]!.clientName, peerIdentity: peer,
                                            connection: connection, flags: flags)
        if let peer { sessionsByPeer[peer, default: 0] += 1 }
        connections[connection]!.sessionID = session.id
        connections[connection]!.expiredSessionID = nil
        reply(connection, requestID, .openSession, .success(.session(
            sessionID: session.id, secret: session.secret, timeoutMilliseconds: session.timeoutMilliseconds)), now: now)
    }

    func resumeSession(_ sessionID: UInt64, secret: SessionSecret, requestID: UInt32, connection: ConnectionID, now: Time) {
        guard connections[connection]!.sessionID == nil else {
            reply(connection, requestID, .resumeSession, .failure(ReplyError(.sessionAlreadyOpen)), now: now)
            return
        }
        guard let session = namespace.session(sessionID), sessions[sessionID] != nil else {
            reply(connection, requestID, .resumeSession, .failure(ReplyError(.sessionExpired, "session \(sessionID)")), now: now)
            return
        }
        guard session.secret.matchesInConstantTime(secret) else {
            reply(connection, requestID, .resumeSession, .failure(ReplyError(.sessionSecretMismatch)), now: now)
            return
        }
        if let previous = sessions[sessionID]!.connection {
            // The session moved: the old connection no longer speaks for it.
            connections[previous]?.sessionID = nil
            closeConnection(previous, now: now)
        }
        sessions[sessionID]!.connection = connection
        sessions[sessionID]!.clientName = connections[connection]!.clientName
        connections[connection]!.sessionID = sessionID
        connections[connection]!.expiredSessionID = nil
        namespace.touch(sessionID, now: now)
        drain(now: now)
        reply(connection, requestID, .resumeSession, .success(.resumed(timeoutMilliseconds: session.timeoutMilliseconds)),
              now: now)
        // What happened while it was away, in order, after the resume reply.
        let queued = sessions[sessionID]!.queuedEvents
        sessions[sessionID]!.queuedEvents.removeAll()
        for event in queued { outputs.append(.send(connection, .event(event))) }
    }

    enum SessionEndReason {
        case closed
        case expired
        case disconnected
        case eventOverflow
        case shutdown
    }

    /// Ends a session: the lock layer lets go of it, then the namespace deletes its ephemerals
    /// (queuing watch events for others). The caller drains.
    ///
    /// What its own connection hears (PROTOCOL.md §9.3, §9.6): on `closeSession`, each pending acquire
    /// is answered `lockCancelled`; on any end, each hold gets `lockLost` and (expiry) each pending
    /// acquire `sessionExpired`, in the order they were requested; on expiry the `sessionExpired` event
    /// comes last.
    func endSession(_ sessionID: UInt64, reason: SessionEndReason, now: Time) {
        guard let state = sessions[sessionID] else {
            namespace.closeSession(sessionID, now: now)
            return
        }
        if reason == .closed, let connection = state.connection { lockCancelPendingAcquires(on: connection, now: now) }
        // While the session is still known, so lock-lost events reach its current connection.
        lockSessionEnded(sessionID, now: now)
        backendState.backend?.sessionEnded(sessionID)
        sessions[sessionID] = nil
        if let peer = state.peerIdentity {
            let open = sessionsByPeer[peer, default: 1] - 1
            sessionsByPeer[peer] = open > 0 ? open : nil
        }
        if let connection = state.connection {
            connections[connection]?.sessionID = nil
            if reason == .expired {
                connections[connection]?.expiredSessionID = sessionID
                routing.append(.send(connection, .event(.sessionExpired(sessionID: sessionID))))
            }
        }
        namespace.closeSession(sessionID, now: now)
    }

    /// Sends an event to a session's connection, or keeps it until the session resumes.
    func deliver(_ event: Event, toSession sessionID: UInt64) {
        guard let state = sessions[sessionID] else { return }
        if let connection = state.connection {
            outputs.append(.send(connection, .event(event)))
        } else if state.queuedEvents.count < configuration.detachedSessionEventsMax {
            sessions[sessionID]!.queuedEvents.append(event)
        } else if !sessionsToEnd.contains(sessionID) {
            sessionsToEnd.append(sessionID)
        }
    }

    /// Moves what the namespace produced to the back of the routing queue.
    func collectNamespaceOutputs() {
        guard namespace.hasOutputs else { return }
        for output in namespace.takeOutputs() { routing.append(.namespace(output)) }
    }

    /// Routes everything that happened, strictly in the order it happened: records to the log,
    /// session watches to their connections, internal watches to the lock layer, lock effects to
    /// replies and events. Routing one happening may cause more (the recipe reacting to a watch);
    /// those join the back of the one queue, so nothing they cause overtakes what was already queued.
    /// A call made while routing (re-entrant) only collects; the outer call routes.
    func drain(now: Time) {
        if routeLogRecordsOnly() { return }
        collectNamespaceOutputs()
        guard !isDraining else { return }
        isDraining = true
        defer { isDraining = false }
        while let next = routing.popFirst() {
            switch next {
            case .namespace(.persist(let record)):
                outputs.append(.persist(record))
            case .namespace(.watch(.session(let sessionID), let type, let path)):
                deliver(.watch(type: type, path: path), toSession: sessionID)
            case .namespace(.watch(.internal(let token), let type, let path)):
                lockWatchFired(token: token, type: type, path: path, now: now)
            case .lock(let effect):
                applyLockEffect(effect, now: now)
            case .send(let connection, let message):
                if connections.index(forKey: connection) != nil { outputs.append(.send(connection, message)) }
            }
            finishRouted(now: now)
        }
    }

    /// The common case (a write and nothing queued or routing before it): if the namespace produced
    /// only log records, which need no routing, they go straight out in their order and this is true;
    /// otherwise what it produced is queued.
    func routeLogRecordsOnly() -> Bool {
        guard !isDraining && routing.isEmpty && sessionsToEnd.isEmpty else { return false }
        guard namespace.hasOutputs else { return true }
        let produced = namespace.takeOutputs()
        if produced.allSatisfy({ if case .persist = $0 { true } else { false } }) {
            for case .persist(let record) in produced { outputs.append(.persist(record)) }
            return true
        }
        for output in produced { routing.append(.namespace(output)) }
        return false
    }

    /// After each routed happening: sessions whose event queue overflowed end, and what the namespace
    /// produced meanwhile joins the back of the queue.
    func finishRouted(now: Time) {
        if !sessionsToEnd.isEmpty {
            let ending = sessionsToEnd
            sessionsToEnd.removeAll()
            for sessionID in ending { endSession(sessionID, reason: .eventOverflow, now: now) }
        }
        collectNamespaceOutputs()
    }

    // MARK: Replies and time

    /// `result` is taken, not copied, into the message: a copy of a reply body (a read's data, a
    /// listing's names) was a round of retains and releases per reply.
    func reply(_ connection: ConnectionID, _ requestID: UInt32, _ opcode: Opcode, _ result: consuming Result<ReplyBody, ReplyError>,
               now: Time) {
        let closes = if case .failure(let error) = result { error.code.closesConnection } else { false }
        let message = ServerMessage.reply(Reply(requestID: requestID, opcode: opcode, result: result))
        // With a backend, behind the connection's earlier namespace requests (Engine+Backend.swift).
        if !closes && holdReply(connection, message) { return }
        outputs.append(.send(connection, consume message))
        if closes {
            closeConnection(connection, now: now)
            drain(now: now)
        }
    }

    /// Runs deadlines that are due: session expiry, lock wait timeouts, leases, container sweeps.
    public func tick(now: Time) {
        for sessionID in namespace.dueSessions(now: now) {
            endSession(sessionID, reason: .expired, now: now)
            drain(now: now)
        }
        lockTick(now: now)
        drain(now: now)
        namespace.sweepContainers(now: now)
        drain(now: now)
    }

    /// The earliest monotonic time at which `tick` has work, or nil.
    public var nextDeadlineMilliseconds: UInt64? {
        // Asked once per loop turn: no array for two values.
        let tree = namespace.nextDeadlineMilliseconds, locks = lockNextDeadlineMilliseconds
        guard let tree else { return locks }
        guard let locks else { return tree }
        return min(tree, locks)
    }

    /// Outputs produced since the last call, in order.
    public func takeOutputs() -> [EngineOutput] {
        var taken: [EngineOutput] = []
        takeOutputs(into: &taken)
        return taken
    }

    /// Outputs produced since the last call, in order, swapped into `taken` (which must be empty):
    /// the shell hands back the same emptied array every time, so neither side allocates per frame.
    public func takeOutputs(into taken: inout [EngineOutput]) {
        precondition(taken.isEmpty, "outputs are taken into an empty array")
        // The shell asks after every frame: asking when there is nothing costs nothing.
        guard !outputs.isEmpty else { return }
        swap(&outputs, &taken)
    }

    // MARK: For the lock layer

    /// A request the engine will answer later (a waiting acquire) counts against the connection's limit.
    func beginPendingRequest(on connection: ConnectionID) { connections[connection]?.pendingRequests += 1 }
    func endPendingRequest(on connection: ConnectionID) {
        guard let pending = connections[connection]?.pendingRequests, pending > 0 else { return }
        connections[connection]!.pendingRequests = pending - 1
    }
}

/// A dictionary value per connection, where every byte costs per connection and again in the
/// dictionary's free buckets: the small fields fill the optionals' padding, access state is boxed
/// (88 bytes instead of 160).
struct ConnectionState {
    var clientName = ""
    /// Whose sessions this connection opens (`connectionIdentified`).
    var peerIdentity: String?
    /// `access` and `accessRules`, boxed: most connections (Unix without access rules) never set
    /// them, and then they cost 8 bytes here instead of 48. Copied on write, so the state stays a value.
    var accessBox: ConnectionAccess?
    var sessionID: UInt64?
    var transport: TransportKind
    var greeted = false
    /// May open or resume a session: Unix from the start, TCP after a good `authenticate`.
    var isAuthorized = false
    /// Requests accepted but not answered yet (waiting acquires; at most `pendingRequestsPerConnectionMax`).
    var pendingRequests: Int32 = 0
    /// The waiting acquires' request ids (a closed connection's acquires are cancelled). Here, not in
    /// a table of the engine's by connection: the acquire and its answer then hash the connection
    /// once each, not twice (16 bytes more per connection).
    var pendingAcquires = SmallSet<UInt32>()
    /// The session that expired while this connection spoke for it, until another is opened or resumed.
    var expiredSessionID: UInt64?
    /// At most `Engine.authenticationFailuresMax`: the connection closes there.
    var authenticationFailures: UInt8 = 0

    /// Who the access rules see: the Unix user and groups, or the TCP token's name (Engine+Access.swift).
    var access: AccessIdentity {
        get { accessBox?.identity ?? AccessIdentity() }
        set { uniqueAccessBox().identity = newValue }
    }

    /// The rules that name `access`, for the rules of that generation (Engine+Access.swift).
    var accessRules: (generation: UInt64, policy: AccessPolicy)? {
        get { accessBox?.rules }
        set {
            guard newValue != nil || accessBox != nil else { return }
            uniqueAccessBox().rules = newValue
        }
    }

    /// The fields `Engine.handle` reads for every request. Mutating only to be reached through the
    /// dictionary's in-place accessor: its getter copies the whole struct (a retain and release of
    /// the names and the access box per request). Changes nothing.
    mutating func requestFields() -> (greeted: Bool, sessionID: UInt64?, isAuthorized: Bool) {
        (greeted, sessionID, isAuthorized)
    }

    private mutating func uniqueAccessBox() -> ConnectionAccess {
        if accessBox == nil {
            accessBox = ConnectionAccess()
        } else if !isKnownUniquelyReferenced(&accessBox) {
            accessBox = ConnectionAccess(identity: accessBox!.identity, rules: accessBox!.rules)
        }
        return accessBox!
    }

    /// The answer to a request that needs a session on a connection without one (PROTOCOL.md §9.6).
    var noSessionError: ReplyError {
        guard let expiredSessionID else { return ReplyError(.sessionRequired) }
        return ReplyError(.sessionExpired, "session \(expiredSessionID) expired; open or resume a session")
    }
}

/// `ConnectionState`'s access identity and rules.
final class ConnectionAccess {
    var identity: AccessIdentity
    var rules: (generation: UInt64, policy: AccessPolicy)?

    init(identity: AccessIdentity = AccessIdentity(), rules: (generation: UInt64, policy: AccessPolicy)? = nil) {
        self.identity = identity
        self.rules = rules
    }
}

/// Fields ordered widest first (see `ConnectionState`).
struct SessionState {
    var clientName: String
    /// The identity of the connection that opened it: its `sessionsPerPeerMax` count.
    var peerIdentity: String? = nil
    /// Events for a detached session, delivered after it resumes.
    var queuedEvents: Deque<Event> = []
    /// The connection that speaks for the session; nil while detached (TCP, or kept Unix).
    var connection: ConnectionID?
    var flags: SessionFlags
}
