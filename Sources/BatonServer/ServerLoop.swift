import BatonEngine
import BatonProtocol
import BatonStore
import BatonTLS
import CLibUV
import Dispatch
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything that lives on the loop thread: the libuv loop, its handles, the connections and the
/// engine. One chain reads the request path end to end: `didRead` -> `decodeInput` ->
/// `engine.handle` -> `routeOutputs` (encode into per-connection output) -> `flushTurn` (once per
/// loop turn, before libuv sleeps: one write per connection).
///
/// Fairness and liveness (PROTOCOL.md §8, §9.2): a connection gets at most `framesPerTurnMax` frames
/// per loop turn, and none while its queued output is above `outputBytesHighWater`; what it sent
/// beyond that waits in its `input` with reading stopped, and is taken up again in the check phase
/// (`checkTurn`, after the poll). Deadlines run there too, after the turn's reads: libuv runs timers
/// before it polls, so a timer callback would judge a session before reading the heartbeat that
/// came while the loop was busy. The timer only marks the tick due.
final class ServerLoop {
    let configuration: ServerConfiguration
    let logger: Logger
    let loop: UnsafeMutablePointer<uv_loop_t>
    let mailbox: Mailbox
    private let makeEngine: (@Sendable (Time) -> any ServerEngine)?
    var engine: (any ServerEngine)?

    // Durability (nil store: in memory).
    var store: Store?
    /// The real engine when durable, for snapshots.
    var durableEngine: Engine?
    var recordsSinceSnapshot = 0
    var logBytesSinceSnapshot = 0
    var snapshotInProgress: SnapshotJob?
    /// The real engine (durable or not), for backups; nil with a stand-in engine.
    var backupEngine: Engine?
    /// Backups being written, by a number of their own (ServerLoop+Backup.swift).
    var backupsInProgress: [Int: SnapshotJob] = [:]
    var nextBackupNumber = 0
    var backupsWaiting: [BackupRequest] = []
    /// When each request still unanswered after it was handled arrived (a waiting acquire), by
    /// connection and request id (ServerLoop+Latency.swift); a connection's table may be empty.
    var requestArrivals: [ConnectionID: [UInt32: UInt64]] = [:]
    /// The request being handled now, until its reply is routed or it is found to wait.
    var requestInHand: RequestStamp?
    /// Arrival times of requests answered this turn, recorded once the commit barrier is passed.
    var repliesAwaitingCommit: [UInt64] = []
    /// Set while the log cannot be written (ServerLoop+Durability.swift, `storageFailed`).
    var storageFailure: String?
    /// Replies held while the log cannot be written, per connection, in order.
    var heldOutputs: [ConnectionID: WireWriter] = [:]
    var storageRetryTimer: UnsafeMutablePointer<uv_timer_t>?
    /// Set by a log failure until the end of its turn: every reply routed meanwhile is held.
    var holdsRestOfTurn = false
    /// A record could not even be buffered (a bug): no retry can help; the daemon stops.
    var storageBroken = false
    /// With `--fsync batch`: which clients the next commit may wait for (ServerLoop+Durability.swift).
    var groupCommit = GroupCommit()
    private var isFlushing = false

    private var listeners: [Listener] = []
    var connections: [ConnectionID: Connection] = [:]
    private var drainingConnections: [ConnectionID: Connection] = [:]
    private var nextConnectionID: ConnectionID = 1
    /// Connections with output or a pending close this turn, in the order they are written.
    private var flushQueue = FlushQueue()
    /// The batch being written, taken from `flushQueue`; kept so that no array is allocated per turn.
    private var flushing: [Connection] = []
    /// The one read buffer every connection reads into: reads are consumed inside the read callback,
    /// which libuv calls right after the read it allocated for, so one buffer serves all connections.
    let readBuffer: UnsafeMutableRawPointer
    let readBufferBytes: Int
    /// The TCP listener's TLS (ServerLoop+TLS.swift), nil for plain TCP.
    var tlsContext: TLSContext?
    /// Where TLS connections' plaintext is decrypted to, as the read buffer is for plain ones; reused.
    var tlsPlaintextBuffer: UnsafeMutableRawBufferPointer?
    /// The engine's outputs are swapped into this array and it is handed back emptied: no
    /// allocation per frame (`routeOutputs`). Empty between calls.
    private var spareOutputs: [EngineOutput] = []
    /// One emptied output buffer, handed from a flushed connection to the next with a reply, so
    /// idle connections hold no output memory and one-at-a-time replies allocate none.
    private var spareOutput = WireWriter(capacity: 0)

    private var prepare: UnsafeMutablePointer<uv_prepare_t>?
    /// Runs after the poll: resumes connections with waiting input, then due deadlines.
    private var check: UnsafeMutablePointer<uv_check_t>?
    /// Active while work waits for the check phase: keeps the poll from sleeping.
    private var idle: UnsafeMutablePointer<uv_idle_t>?
    /// `idle` is started: the check phase stops it (and calls into libuv) only then.
    private var isIdleStarted = false
    /// The timer fired: run the engine's deadlines in this turn's check phase.
    private var isTickDue = false
    /// The timer was armed for the admission sweep alone: it runs the sweep, not the engine's
    /// deadlines. (A tick run right after a stretch of work would judge sessions before the turn's
    /// reads; only a due engine deadline may take that chance.)
    private var isArmedForSweepOnly = false
    /// Loop turns, counted in the prepare phase: the unit of the per-connection frame budget.
    private var turn: UInt64 = 0
    /// This turn's time for the requests it reads (`turnTime`); nil until the turn's first read.
    private var turnClock: (time: Time, arrived: UInt64)?
    /// Open connections whose reading is stopped (`Connection.readPause`).
    private var pausedConnections: [ConnectionID: Connection] = [:]
    /// Paused connections to take up in the next check phase, in the order they became ready.
    private var resumeQueue: [Connection] = []
    /// Connections with bytes handed to libuv but unwritten: the peer must keep reading (stall check).
    private var writeWaiting: [ConnectionID: Connection] = [:]
    private var timer: DeadlineTimer?
    private var armedDeadlineMilliseconds: UInt64?
    private var async: UnsafeMutablePointer<uv_async_t>?
    private var signals: [UnsafeMutablePointer<uv_signal_t>] = []
    private(set) var isShuttingDown = false

    /// Who is let in, at what cost and for how long (Admission.swift).
    let admission: Admission
    /// When freed heap goes back to the system after many connections closed (MemoryReturn.swift).
    private var memoryReturn = MemoryReturn()

    // Metrics (MetricsEndpoint.swift, Metrics.swift): counted always, served only with a metrics endpoint.
    var counters = ServerCounters()
    /// `--metrics` (TCP) and `--metrics-socket` (Unix), each only when asked.
    private var metricsEndpoints: [MetricsEndpoint] = []
    private var metricsRegistry: MetricsRegistry?

    init(configuration: ServerConfiguration, logger: Logger, mailbox: Mailbox,
         makeEngine: (@Sendable (Time) -> any ServerEngine)?) {
        self.configuration = configuration
        self.logger = logger
        self.mailbox = mailbox
        self.makeEngine = makeEngine
        loop = LibUV.allocate(uv_loop_t.self)
        precondition(uv_loop_init(loop) == 0, "uv_loop_init failed")
        precondition(configuration.readBufferBytes >= 1_024, "a read buffer must hold at least small frames")
        readBufferBytes = configuration.readBufferBytes
        guard let buffer = malloc(readBufferBytes) else { fatalError("out of memory") }
        readBuffer = buffer
        admission = Admission(configuration: configuration.admission, frameBytesMax: configuration.engine.limits.frameBytesMax,
                              logger: logger)
    }

    deinit {
        // Safe: the loop is closed (no more reads) before its owner goes.
        free(readBuffer)
        tlsPlaintextBuffer?.deallocate()
        free(loop)
    }

    /// The loop's owner, for callbacks that only have a handle (set for the duration of `run`).
    static func of(_ handle: UnsafeMutableRawPointer?) -> ServerLoop? {
        guard let handle, let loop = baton_handle(handle).pointee.loop, let data = loop.pointee.data else { return nil }
        return Unmanaged<ServerLoop>.fromOpaque(data).takeUnretainedValue()
    }

    /// As `of`, for the callbacks of every request (a read, its buffer, the turn's prepare and
    /// check): the loop is lent to `body` without a retain and release (~40 instructions a
    /// callback, callgrind). Safe: its owner keeps it for the whole of `run`, which these run inside.
    static func with(_ handle: UnsafeMutableRawPointer?, _ body: (ServerLoop) -> Void) {
        guard let handle, let loop = baton_handle(handle).pointee.loop, let data = loop.pointee.data else { return }
        Unmanaged<ServerLoop>.fromOpaque(data)._withUnsafeGuaranteedRef(body)
    }

    var limits: Limits { configuration.engine.limits }

    // MARK: Running

    /// Opens the listeners and runs until shutdown; then closes every handle and the loop.
    func run(onReady: (ListeningAddresses) -> Void) throws(ServerError) {
        loop.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        defer { loop.pointee.data = nil }
        let addresses: ListeningAddresses
        do {
            addresses = try open()
        } catch {
            for listener in listeners {
                if let path = listener.socketPath { unlink(path) }
            }
            for endpoint in metricsEndpoints { if let path = endpoint.socketPath { unlink(path) } }
            closeLoop()
            throw error
        }
        var metadata: Logger.Metadata = ["socket": "\(addresses.socketPath)",
                                         "mode": "\(String(configuration.socketMode, radix: 8))"]
        // Socket activation: the .socket unit set the mode.
        if configuration.inheritedUnixListener != nil { metadata["mode"] = "from systemd" }
        if let port = addresses.tcpPort {
            metadata["tcp_port"] = "\(port)"
            metadata["tcp_security"] = "\(tcpSecurity)"
        }
        if let port = addresses.metricsPort { metadata["metrics_port"] = "\(port)" }
        if addresses.tcpPort != nil && tlsContext == nil {
            logger.warning("TCP without TLS: the token and all data cross the network in clear", metadata: ["tcp_port": metadata["tcp_port"]!])
        }
        if let path = configuration.metricsSocketPath { metadata["metrics_socket"] = "\(path)" }
        logger.info("ready", metadata: metadata)
        onReady(addresses)
        uv_run(loop, UV_RUN_DEFAULT)
        closeLoop()
        closeStore()
        if let storageFailure { throw ServerError("stopped after a write-ahead log failure: \(storageFailure)") }
        logger.info("stopped")
    }

    private func open() throws(ServerError) -> ListeningAddresses {
        configuration.limits.validate()
        if let problem = configuration.admission.problem(limits: configuration.limits,
                                                         tokenBytes: configuration.engine.tcpAuthenticationToken?.count ?? 0) {
            throw ServerError("admission: \(problem)")
        }
        let accessRules = try readAccessRules()
        signal(SIGPIPE, SIG_IGN)

        let prepare = LibUV.allocate(uv_prepare_t.self)
        uv_prepare_init(loop, prepare)
        LibUV.setOwner(prepare, self)
        uv_prepare_start(prepare, onPrepare)
        uv_unref(baton_handle(prepare))
        self.prepare = prepare

        let check = LibUV.allocate(uv_check_t.self)
        uv_check_init(loop, check)
        LibUV.setOwner(check, self)
        uv_check_start(check, onCheck)
        uv_unref(baton_handle(check))
        self.check = check

        let idle = LibUV.allocate(uv_idle_t.self)
        uv_idle_init(loop, idle)
        LibUV.setOwner(idle, self)
        uv_unref(baton_handle(idle))
        self.idle = idle

        guard let timer = DeadlineTimer(loop: loop, fire: { $0.timerFired() }) else {
            throw ServerError("cannot create the deadline timer: \(errno)")
        }
        self.timer = timer
        if configuration.durability?.store.fsyncPolicy == .batch {
            guard let commitTimer = DeadlineTimer(loop: loop, fire: { $0.commitWindowClosed() }) else {
                throw ServerError("cannot create the group-commit timer: \(errno)")
            }
            groupCommit.timer = commitTimer
        }

        let async = LibUV.allocate(uv_async_t.self)
        uv_async_init(loop, async, onAsync)
        LibUV.setOwner(async, self)
        uv_unref(baton_handle(async))
        self.async = async
        mailbox.open(async)

        if configuration.handlesSignals {
            // SIGHUP reloads the access rules (ServerLoop+Access.swift); without them it keeps its default.
            for number in [SIGTERM, SIGINT] + (configuration.accessRulesPath != nil ? [SIGHUP] : []) {
                let handle = LibUV.allocate(uv_signal_t.self)
                uv_signal_init(loop, handle)
                LibUV.setOwner(handle, self)
                uv_signal_start(handle, onSignal, number)
                uv_unref(baton_handle(handle))
                signals.append(handle)
            }
        }

        let unix: Listener
        if let descriptor = configuration.inheritedUnixListener {
            unix = try Listener.adoptUnix(descriptor: descriptor, loop: self)
        } else {
            unix = try Listener.bindUnix(path: configuration.socketPath, mode: configuration.socketMode, loop: self)
        }
        listeners.append(unix)
        var tcpPort: UInt16?
        if let tls = configuration.tls { try openTLS(tls) }
        if let endpoint = configuration.tcpEndpoint {
            guard case .tcp(let host, let port) = endpoint else {
                throw ServerError("the TCP endpoint must be HOST:PORT, not \(endpoint)")
            }
            let tcp = try Listener.bindTCP(host: host, port: port, loop: self)
            listeners.append(tcp)
            tcpPort = tcp.boundPort
        }
        var metricsPort: UInt16?
        if let endpoint = configuration.metricsEndpoint {
            guard case .tcp(let host, let port) = endpoint else {
                throw ServerError("the metrics endpoint must be HOST:PORT, not \(endpoint)")
            }
            let metrics = try MetricsEndpoint.bind(host: host, port: port, bearerToken: configuration.metricsBearerToken, loop: self)
            metricsEndpoints.append(metrics)
            metricsPort = metrics.boundPort
        }
        if let path = configuration.metricsSocketPath {
            metricsEndpoints.append(try MetricsEndpoint.bind(unixPath: path, bearerToken: configuration.metricsBearerToken, loop: self))
        }
        if !metricsEndpoints.isEmpty { metricsRegistry = MetricsRegistry(includesStore: configuration.durability != nil, revision: configuration.revision) }
        // After the listeners: a second daemon on the same socket stops before touching any state.
        // Clients that connect meanwhile wait in the listen backlog.
        if let makeEngine {
            engine = makeEngine(now())
        } else {
            try openEngine()
        }
        installAccessRules(accessRules)
        if let zooKeeper = configuration.zooKeeper { try openZooKeeper(zooKeeper) }
        return ListeningAddresses(socketPath: configuration.socketPath, tcpPort: tcpPort, metricsPort: metricsPort)
    }

    /// Closes whatever is left, lets the close callbacks run, and closes the loop.
    private func closeLoop() {
        mailbox.close()
        timer?.close()  // its descriptor too, which closing the handle alone would leave open
        timer = nil
        groupCommit.timer?.close()
        groupCommit.timer = nil
        uv_walk(loop, closeEveryHandle, nil)
        uv_run(loop, UV_RUN_DEFAULT)
        let result = uv_loop_close(loop)
        if result != 0 {
            logger.error("event loop did not close cleanly", metadata: ["error": "\(LibUV.describe(result))"])
        }
    }

    /// Monotonic time from the loop's clock (the clock its timers use), wall time from CLOCK_REALTIME.
    func now() -> Time {
        uv_update_time(loop)
        let time = Time(monotonicMilliseconds: uv_now(loop), wallMilliseconds: Self.wallMilliseconds())
        if turnClock != nil { turnClock!.time = time }  // the latest reading: the engine's time never goes back
        return time
    }

    private static func wallMilliseconds() -> UInt64 {
        var wall = timespec()
        clock_gettime(CLOCK_REALTIME, &wall)
        return UInt64(wall.tv_sec) * 1_000 + UInt64(wall.tv_nsec) / 1_000_000
    }

    /// The time of this turn's reads, for the engine and the latency stamps. The poll hands over
    /// every ready connection at once, so their requests arrived together: one reading serves them
    /// all (three clock reads per read were ~1 % of a request), and the loop's clock is already
    /// current (libuv updates it after the poll). Cleared when the turn ends (`flushTurn`).
    func turnTime() -> (time: Time, arrived: UInt64) {
        if let turnClock { return turnClock }
        let clock = (time: Time(monotonicMilliseconds: uv_now(loop), wallMilliseconds: Self.wallMilliseconds()),
                     arrived: LatencyHistogram.now())
        turnClock = clock
        return clock
    }

    func metadata(_ connection: Connection) -> Logger.Metadata {
        var details: Logger.Metadata = ["connection": "\(connection.id)", "peer": "\(connection.peer)",
                                        "transport": "\(connection.transport == .unix ? "unix" : "tcp")"]
        if let name = connection.tlsPeerName { details["tls_peer"] = "\(name)" }
        return details
    }

    // MARK: Connections

    func accept(on listener: Listener, status: Int32) {
        guard status == 0 else {
            logger.warning("accept failed", metadata: ["listener": "\(listener.description)", "error": "\(LibUV.describe(status))"])
            return
        }
        guard !isShuttingDown, let engine else { return }
        let handle: UnsafeMutableRawPointer
        switch listener.transport {
        case .unix:
            let pipe = LibUV.allocate(uv_pipe_t.self)
            uv_pipe_init(loop, pipe, 0)
            handle = UnsafeMutableRawPointer(pipe)
        case .tcp:
            let tcp = LibUV.allocate(uv_tcp_t.self)
            uv_tcp_init(loop, tcp)
            handle = UnsafeMutableRawPointer(tcp)
        }
        let result = uv_accept(baton_stream(listener.handle), baton_stream(handle))
        guard result == 0 else {
            LibUV.close(handle)
            logger.warning("accept failed", metadata: ["listener": "\(listener.description)", "error": "\(LibUV.describe(result))"])
            return
        }
        let connection = Connection(id: nextConnectionID, transport: listener.transport, handle: handle)
        nextConnectionID += 1
        LibUV.setOwner(handle, connection)
        if listener.transport == .tcp {
            // Replies are already gathered once per turn; Nagle would only add latency.
            uv_tcp_nodelay(handle.assumingMemoryBound(to: uv_tcp_t.self), 1)
        }
        connection.peer = Listener.describePeer(handle, transport: listener.transport)
        connections[connection.id] = connection
        if listener.transport == .tcp, tlsContext != nil, !startTLS(connection) {
            connection.engineReleased = true  // never opened there
            closeNow(connection)
            return
        }

        counters.connectionsAccepted += 1
        let peerHost = listener.transport == .tcp ? Listener.host(ofPeer: connection.peer) : nil
        let acceptedAt = uv_now(loop)
        if let refusal = admission.refusal(transport: listener.transport, peerHost: peerHost, now: acceptedAt) {
            // Refused before the engine hears of it: the error frame, then the close.
            connection.engineReleased = true
            counters.connectionsRefused += 1
            logger.warning("connection refused", metadata: metadata(connection).merging(["error": "\(refusal)"]) { $1 })
            sendUnattributed(refusal, to: connection)
            beginDraining(connection)
            return
        }
        admission.admit(connection, peerHost: peerHost, now: acceptedAt)
        if engine.connectionOpened(connection.id, transport: listener.transport, now: now()) {
            engine.connectionIdentified(connection.id, as: Listener.identity(ofPeer: connection.peer, transport: listener.transport))
            identifyForAccessRules(connection)
            logger.debug("connection opened", metadata: metadata(connection))
            let started = uv_read_start(connection.stream, onAllocate, onRead)
            if started < 0 {
                logger.warning("cannot read from connection", metadata: metadata(connection).merging(["error": "\(LibUV.describe(started))"]) { $1 })
                closeNow(connection)
            }
        } else {
            // The engine queued `tooManyConnections` and a close; it never took the connection.
            connection.engineReleased = true
            counters.connectionsRefused += 1
            logger.warning("connection refused: too many connections", metadata: metadata(connection))
        }
        routeOutputs()
        if connection.phase == .open && connection.engineReleased {
            beginDraining(connection)
        }
    }

    func didRead(_ connection: Connection, _ count: Int, _ bytes: UnsafeRawPointer?) {
        guard engine != nil, connection.phase == .open else { return }
        if count > 0, let bytes {
            counters.bytesRead += UInt64(count)
            let read = UnsafeRawBufferPointer(start: bytes, count: count)
            if let tls = connection.tls {
                didReadCiphertext(read, of: connection, tls: tls)
            } else {
                didReceive(read, on: connection)
            }
        } else if count < 0 {
            if count == Int(UV_EOF.rawValue) {
                logger.debug("peer closed the connection", metadata: metadata(connection))
                beginDraining(connection)
            } else {
                logger.info("connection failed", metadata: metadata(connection).merging(["error": "\(LibUV.describe(Int32(count)))"]) { $1 })
                closeNow(connection)
            }
            routeOutputs()
        }
    }

    /// Frame bytes from the peer (a read, or what TLS decrypted from one): decoded at once where
    /// possible; the rest kept in the connection's `input`.
    func didReceive(_ read: UnsafeRawBufferPointer, on connection: Connection) {
        guard connection.phase == .open else { return }
        if connection.hasUnreadInput {
            // The start of a split frame waits: add to it and decode from there.
            connection.keepInput(read)
            decodeInput(connection)
        } else {
            // The common case: decode straight from the read buffer, keep only the rest.
            let (consumed, stop) = decodeFrames(read, of: connection)
            if stop != .unusable { connection.keepInput(UnsafeRawBufferPointer(rebasing: read[consumed...])) }
            finishDecoding(connection, stop, consumed: consumed)
        }
    }

    /// Decodes what waits in the connection's `input`, within this turn's budget.
    private func decodeInput(_ connection: Connection) {
        let input = connection.input  // the buffer stays alive (and unchanged) while it is decoded
        let (consumed, stop) = input.withUnsafeBytes { raw in
            decodeFrames(UnsafeRawBufferPointer(rebasing: raw[connection.inputStart...]), of: connection)
        }
        connection.consumeInput(consumed)
        finishDecoding(connection, stop, consumed: consumed)
    }

    /// Hands the whole frames of `bytes` to the engine while the connection has budget this turn and
    /// its output is below the high-water mark; records why it stopped in `readPause`.
    private func decodeFrames(_ bytes: UnsafeRawBufferPointer, of connection: Connection) -> (consumed: Int, stop: Connection.DecodeStop) {
        let engine = engine!
        if connection.turn != turn {
            connection.turn = turn
            connection.framesThisTurn = 0
        }
        let (time, arrived) = turnTime()
        let framesMax = configuration.framesPerTurnMax
        let highWater = configuration.outputBytesHighWater
        var pause: Connection.ReadPause?
        // Each frame's outputs are routed right after it (`deliver`), once: so a reply that
        // authenticated the connection raises the limit for the next length prefix, and the output
        // queue is known before the next frame.
        let result = Connection.decodeFrames(bytes, strings: connection.strings, frameBytesMax: {
            admission.frameBytesMax(for: connection)
        }, mayContinue: {
            guard connection.phase == .open else { return false }
            if connection.outputBytesQueued >= highWater {
                pause = .backpressure
            } else if connection.framesThisTurn >= framesMax {
                pause = .budget
            }
            return pause == nil
        }, deliver: { decoded in
            counters.framesReceived += 1
            connection.framesThisTurn += 1
            switch decoded {
            case .request(let requestID, let request):
                let opcode = request.opcode
                counters.requestsByOpcode[Int(opcode.rawValue)] += 1
                requestArrived(requestID, on: connection.id, at: arrived)
                if !groupCommit.peers.isEmpty { groupCommit.heard(from: connection.id) }
                engine.handle(request, requestID: requestID, from: connection.id, now: time)
                // Only a backup request asks for one: no question to the engine after other frames.
                if opcode == .backup { startRequestedBackups() }
                routeOutputs()
                requestRouted()
            case .failure(let failure):
                var details = metadata(connection)
                details["error"] = "\(failure.code.name)"
                details["detail"] = "\(failure.message)"
                logger.info("bad frame", metadata: details)
                engine.decodeFailed(failure, from: connection.id, now: time)
                routeOutputs()
            }
        })
        if result.stop == .paused, let pause { connection.readPause = pause } else if result.stop == .paused {
            connection.readPause = nil  // the connection closed meanwhile
        }
        return result
    }

    /// After a decode (its frames' outputs are routed): account for the input it left, then stop or
    /// resume reading as it found.
    private func finishDecoding(_ connection: Connection, _ stop: Connection.DecodeStop, consumed: Int) {
        guard connection.phase == .open else { return }
        let held = connection.input.count - connection.inputStart
        if !admission.inputHeld(by: connection, bytes: held, completedFrame: consumed > 0, waitsForBytes: stop == .needsBytes,
                                now: uv_now(loop)) {
            var details = metadata(connection)
            details["held_bytes"] = "\(held)"
            details["budget_bytes"] = "\(configuration.admission.inputBytesBufferedMax)"
            logger.warning("disconnecting a client: the input budget of all connections is spent", metadata: details)
            closeNow(connection)
            routeOutputs()
            return
        }
        switch stop {
        case .unusable:
            // The stream cannot be trusted past a framing error: close even if the engine did not ask.
            beginDraining(connection)
        case .paused:
            guard let reason = connection.readPause else { return }
            if pausedConnections.updateValue(connection, forKey: connection.id) == nil {
                uv_read_stop(connection.stream)
            }
            // Over budget: take it up again next turn. Backpressure: when its output drains (`outputDrained`).
            if reason == .budget { queueResume(connection) }
        case .needsBytes:
            guard connection.readPause != nil else { return }
            connection.readPause = nil
            pausedConnections[connection.id] = nil
            let started = uv_read_start(connection.stream, onAllocate, onRead)
            if started < 0 {
                logger.warning("cannot read from connection", metadata: metadata(connection).merging(["error": "\(LibUV.describe(started))"]) { $1 })
                closeNow(connection)
                routeOutputs()
            }
        }
    }

    private func queueResume(_ connection: Connection) {
        guard !connection.isQueuedForResume else { return }
        connection.isQueuedForResume = true
        resumeQueue.append(connection)
        startIdle()
    }

    /// Keeps the next poll from sleeping, so the check phase comes round at once.
    private func startIdle() {
        guard let idle else { return }
        uv_idle_start(idle, onIdle)
        isIdleStarted = true
    }

    /// Some of the connection's queued output was written: below half the high-water mark, a
    /// connection held back by backpressure is taken up again.
    private func outputDrained(_ connection: Connection) {
        _ = admission.outputQueued(on: connection, bytes: connection.outputBytesQueued)
        if !writeWaiting.isEmpty, let waiting = writeWaiting[connection.id] {  // usually empty: no hash
            let queued = uv_stream_get_write_queue_size(connection.stream)
            if queued == 0 {
                writeWaiting[waiting.id] = nil
            } else if queued < waiting.writeQueueBytesSeen {
                waiting.writeQueueBytesSeen = queued
                waiting.writeProgressMilliseconds = uv_now(loop)
            }
        }
        if connection.phase == .open, connection.readPause == .backpressure,
           connection.outputBytesQueued < configuration.outputBytesHighWater / 2 {
            queueResume(connection)
        }
    }

    func writeCompleted(_ connection: Connection) {
        guard connection.phase != .closed else { return }
        outputDrained(connection)
    }

    /// The check phase, after the poll: connections with waiting input get this turn's budget, then
    /// deadlines run; connections whose frames still wait unread count as heard from first.
    func checkTurn() {
        guard engine != nil else { return }
        if isIdleStarted, let idle {  // most turns: not started, no call
            uv_idle_stop(idle)
            isIdleStarted = false
        }
        if !resumeQueue.isEmpty {
            let ready = resumeQueue
            resumeQueue.removeAll(keepingCapacity: true)
            for connection in ready {
                connection.isQueuedForResume = false
                guard connection.phase == .open, connection.readPause != nil else { continue }
                if connection.readPause == .backpressure && connection.outputBytesQueued >= configuration.outputBytesHighWater {
                    continue
                }
                decodeInput(connection)
            }
        }
        if isTickDue, let engine {  // bound only here: most turns have no tick (no retain of it)
            isTickDue = false
            let time = now()
            for connection in pausedConnections.values where connection.phase == .open {
                if connection.hasUnreadInput || unreadSocketBytes(connection) > 0 {
                    engine.inputWaiting(on: connection.id, now: time)
                }
            }
            engine.tick(now: time)
            for connection in drainingConnections.values where connection.lingerDeadlineMilliseconds <= time.monotonicMilliseconds {
                logger.info("closing a connection at its linger deadline (its peer did not read our last replies, or did not close)",
                            metadata: metadata(connection))
                closeNow(connection)
            }
            dropStalledWriters(now: time.monotonicMilliseconds)
            routeOutputs()
        }
        if let sweep = admission.nextSweepMilliseconds, sweep <= uv_now(loop) {
            closeExpired(now: uv_now(loop))
            routeOutputs()
        }
        if memoryReturn.trimIsDue(openConnections: connections.count) { MemoryReturn.trim() }
        if !resumeQueue.isEmpty { startIdle() }
    }

    /// Connections past an admission deadline get `deadlineExceeded` (unattributed), then close.
    private func closeExpired(now: UInt64) {
        for (connection, error) in admission.expired(now: now) where connection.phase == .open {
            logger.info("closing a connection past its deadline", metadata: metadata(connection).merging(["error": "\(error)"]) { $1 })
            sendUnattributed(error, to: connection)
            beginDraining(connection)
        }
    }

    /// An error frame for the connection as a whole (request id 0, opcode hello, PROTOCOL.md §3.4).
    private func sendUnattributed(_ error: ReplyError, to connection: Connection) {
        let message = ServerMessage.reply(Reply(requestID: 0, opcode: .hello, result: .failure(error)))
        if hold(message, for: connection) { return }
        encode(message, into: connection)
        queueFlush(connection)
    }

    private func unreadSocketBytes(_ connection: Connection) -> Int {
        var descriptor = uv_os_fd_t()
        guard uv_fileno(baton_handle(connection.handle), &descriptor) == 0 else { return 0 }
        return Int(baton_unread_bytes(descriptor))
    }

    /// A peer that left output unread for `writeStallMillisecondsMax` (no byte of it written meanwhile)
    /// is disconnected (PROTOCOL.md §8): one that reads, however slowly, is not.
    private func dropStalledWriters(now: UInt64) {
        for connection in writeWaiting.values {
            let queued = uv_stream_get_write_queue_size(connection.stream)
            if queued == 0 {
                writeWaiting[connection.id] = nil
            } else if queued < connection.writeQueueBytesSeen {
                connection.writeQueueBytesSeen = queued
                connection.writeProgressMilliseconds = now
            } else if now >= connection.writeProgressMilliseconds + configuration.writeStallMillisecondsMax {
                disconnectSlowReader(connection, "disconnecting a client that stopped reading its replies",
                                     ["queued_bytes": "\(connection.outputBytesQueued)",
                                      "stalled_milliseconds": "\(now - connection.writeProgressMilliseconds)"])
            }
        }
    }

    /// A client whose unread output outgrew what it may hold: logged with `details`, counted, closed.
    private func disconnectSlowReader(_ connection: Connection, _ message: Logger.Message, _ details: Logger.Metadata) {
        logger.warning(message, metadata: metadata(connection).merging(details) { $1 })
        counters.slowReaderDisconnects += 1
        closeNow(connection)
    }

    func writeFailed(_ connection: Connection, status: Int32) {
        guard connection.phase != .closed else { return }
        logger.info("write failed", metadata: metadata(connection).merging(["error": "\(LibUV.describe(status))"]) { $1 })
        closeNow(connection)
        routeOutputs()
    }

    /// Stops reading, tells the engine, writes what is queued, then shuts the stream down and closes it.
    func beginDraining(_ connection: Connection) {
        guard connection.phase == .open else { return }
        connection.phase = .draining
        uv_read_stop(connection.stream)
        pausedConnections[connection.id] = nil
        let time = now()
        connection.lingerDeadlineMilliseconds = time.monotonicMilliseconds + configuration.closeLingerMilliseconds
        drainingConnections[connection.id] = connection
        admission.release(connection)
        queueFlush(connection)
        release(connection, now: time)
    }

    /// Closes at once, dropping queued output (errors, slow readers, linger expired).
    func closeNow(_ connection: Connection) {
        guard connection.phase != .closed else { return }
        connection.phase = .closed
        connections[connection.id] = nil
        if routedConnection === connection { routedConnection = nil }  // not kept alive by the routing cache
        memoryReturn.connectionClosed()
        drainingConnections[connection.id] = nil
        pausedConnections[connection.id] = nil
        writeWaiting[connection.id] = nil
        admission.release(connection)
        connection.input = []
        connection.output = WireWriter(capacity: 0)
        LibUV.close(connection.handle)
        release(connection, now: now())
    }

    private func release(_ connection: Connection, now time: Time) {
        guard !connection.engineReleased, let engine else { return }
        connection.engineReleased = true
        requestArrivals[connection.id] = nil
        if requestInHand?.connection == connection.id { requestInHand = nil }
        if !groupCommit.peers.isEmpty { groupCommit.heard(from: connection.id) }  // gone: nothing more to wait for
        engine.connectionClosed(connection.id, now: time)
    }

    /// Queues the connection's output for this turn's write; `answer`: it holds the answer to a request
    /// that waited (a grant), written before the others (`FlushQueue`).
    func queueFlush(_ connection: Connection, answer: Bool = false) {
        flushQueue.add(connection, answer: answer)
    }

    // MARK: Outputs

    /// Routes everything the engine produced, until it produces nothing more (dropping a slow
    /// reader tells the engine, which may produce more).
    func routeOutputs() {
        guard let engine else { return }
        // Swapped out and back once a call (not assigned: no retain and release of the array); a nested
        // call (routing can close a connection, which tells the engine) finds an empty one of its own.
        var outputs: [EngineOutput] = []
        swap(&outputs, &spareOutputs)
        while true {
            engine.takeOutputs(into: &outputs)
            if outputs.isEmpty { break }
            // Reversed, then popped: each output moves out of the array into `route` and the array
            // is left empty with its capacity. Iterating copied every output (a reply's body
            // retained, and released twice); moving each out and leaving a payload-free one in its
            // place cost a destroy of that one through the enum's value witnesses per output.
            if outputs.count > 1 { outputs.reverse() }
            while let output = outputs.popLast() { route(output) }
        }
        swap(&outputs, &spareOutputs)
        logAccessDenials()
    }

    /// The connection of the last output routed: most outputs go where the one before went (a
    /// frame's reply to its sender, a burst's replies), and then no hash of its id is needed. It may
    /// be closing meanwhile (its phase says so); `closeNow` drops it with its entry in `connections`.
    private var routedConnection: Connection?

    /// The open connection `id`, or nil if it is closing or gone.
    private func openConnection(_ id: ConnectionID) -> Connection? {
        if let routedConnection, routedConnection.id == id {
            return routedConnection.phase == .open ? routedConnection : nil
        }
        guard let connection = connections[id] else { return nil }
        routedConnection = connection
        return connection.phase == .open ? connection : nil
    }

    /// One output of the engine: a frame encoded into its connection's output (or held behind the
    /// log), a close begun, a record handed to the log.
    private func route(_ output: consuming EngineOutput) {
        switch output {
        case .send(let id, let message):
            var answersWait = false
            if case .reply(let reply) = message { answersWait = replyRouted(reply, to: id) }
            guard let connection = openConnection(id) else { return }
            connection.strings.remember(message) // a grant's node, for the release that names it
            // Only the handshake's replies move a connection on (Admission.observe).
            if case .reply(let reply) = message, reply.opcode == .hello || reply.opcode == .authenticate {
                admission.observe(reply, on: connection, now: uv_now(loop))
            }
            // Behind a reply that waits for the log, in order (ServerLoop+Durability.swift).
            if hold(message, for: connection) { return }
            encode(message, into: connection)
            queueFlush(connection, answer: answersWait)
            let queuedBytes = connection.outputBytesQueued
            if queuedBytes > limits.outputBytesPerConnectionMax {
                disconnectSlowReader(connection, "disconnecting a client whose unread events overflow its output",
                                     ["queued_bytes": "\(queuedBytes)", "limit_bytes": "\(limits.outputBytesPerConnectionMax)"])
            } else if !admission.outputQueued(on: connection, bytes: queuedBytes) {
                disconnectSlowReader(connection, "disconnecting a client: the output budget of all connections is spent",
                                     ["queued_bytes": "\(queuedBytes)", "budget_bytes": "\(configuration.admission.outputBytesBufferedMax)"])
            }
        case .close(let id):
            guard let connection = connections[id] else { return }
            beginDraining(connection)
        case .persist(let record):
            persist(record)
        }
    }

    /// Encodes a frame into the connection's output; a reply over `replyBytesMax` is replaced by a
    /// `replyTooLarge` error (the client learns why, and the connection stays usable).
    private func encode(_ message: ServerMessage, into connection: Connection) {
        // Its first frame this turn: the spare buffer, if the last flush left one (`writePendingOutput`).
        if connection.output.bytes.capacity == 0 { swap(&connection.output, &spareOutput) }
        encode(message, into: &connection.output)
    }

    /// Encodes and counts one frame; a reply over `replyBytesMax` becomes `replyTooLarge` (PROTOCOL.md §8).
    /// Every frame for a client passes here, held ones (ServerLoop+Durability.swift) included.
    func encode(_ message: ServerMessage, into output: inout WireWriter) {
        let start = output.bytes.count
        Codec.encode(message, into: &output)
        let frameBytes = output.bytes.count - start - FrameSplitter.prefixBytes
        if frameBytes > limits.replyBytesMax, case .reply(let reply) = message {
            output.truncate(to: start)
            let error = ReplyError(.replyTooLarge, "the \(reply.opcode) reply is \(frameBytes) bytes, over replyBytesMax \(limits.replyBytesMax)")
            let refusal = ServerMessage.reply(Reply(requestID: reply.requestID, opcode: reply.opcode, result: .failure(error)))
            Codec.encode(refusal, into: &output)
            count(refusal)
        } else {
            count(message)
        }
    }

    /// Once per loop turn, before libuv sleeps: the log is committed (group commit: one fsync for
    /// every record of the turn), then one write per connection with all its bytes. From the
    /// prepare phase (`mayWait`) the commit, and with it every write, may wait a little for clients
    /// that are about to send, so that their records share the fsync (`commitWaitsForPeers`).
    func flushTurn(mayWait: Bool = false) {
        guard !isFlushing else { return }  // re-entered from a shutdown started below
        turn &+= 1
        turnClock = nil
        if mayWait && commitWaitsForPeers() {
            armTimer()
            return
        }
        isFlushing = true
        defer { isFlushing = false }
        let committed = commitLog()
        recordServiceTimes()
        if committed { groupCommit.peers.removeAll(keepingCapacity: true) }
        while !flushQueue.isEmpty {
            // Grants first (`FlushQueue`), each popped (the array's bulk removal destroys its
            // references through the runtime's generic witnesses).
            flushQueue.take(into: &flushing)
            while let connection = flushing.popLast() {
                // The clients answered by this commit are the ones the next one may wait for (with
                // one connection, none: its own request is the one the next commit has).
                if committed && connections.count > 1 && connection.phase == .open && !connection.output.bytes.isEmpty {
                    groupCommit.peers.insert(connection.id)
                }
                connection.flushRank = .none
                guard connection.phase != .closed else { continue }
                let pendingBytes = connection.output.bytes.count
                let queuedBefore = uv_stream_get_write_queue_size(connection.stream)
                let result = connection.writePendingOutput(keepingBufferIn: &spareOutput)
                if result < 0 {
                    logger.info("write failed", metadata: metadata(connection).merging(["error": "\(LibUV.describe(result))"]) { $1 })
                    closeNow(connection)
                    continue
                }
                counters.bytesWritten += UInt64(pendingBytes)
                if connection.phase == .draining { shutDown(connection) }
                let unwritten = uv_stream_get_write_queue_size(connection.stream)
                _ = admission.outputQueued(on: connection, bytes: unwritten)
                if unwritten == 0 {
                    outputDrained(connection)
                } else if writeWaiting[connection.id] == nil {
                    writeWaiting[connection.id] = connection
                    connection.writeQueueBytesSeen = unwritten
                    connection.writeProgressMilliseconds = uv_now(loop)
                } else {
                    // Bytes added now are not a stall: only a queue that never shrinks below what
                    // it would be without any reading is.
                    connection.writeQueueBytesSeen += max(0, unwritten - queuedBefore)
                }
            }
            routeOutputs()
            // Routing produced more records (a dropped slow reader's session ended): commit them too.
            commitLog()
            recordServiceTimes()
        }
        endTurn()
        armTimer()
        startSnapshotIfDue()
    }

    private func shutDown(_ connection: Connection) {
        guard !connection.isShutdownIssued else { return }
        connection.isShutdownIssued = true
        if let tls = connection.tls {
            // close_notify after the last reply, so the peer knows the stream was not cut short.
            tls.shutDown()
            _ = connection.writePendingOutput()
        }
        let request = LibUV.allocate(uv_shutdown_t.self)
        let result = uv_shutdown(request, connection.stream, onShutdownCompleted)
        if result < 0 {
            free(request)
            closeNow(connection)
        }
    }

    /// Our side is shut down: every reply went out, then a FIN. Closing now, with bytes the peer sent
    /// after we stopped reading still in the socket, would make the kernel answer them with a reset,
    /// and a peer still writing (a request pipelined after the one that failed, a hello right after a
    /// TLS handshake the server then refused) gets EPIPE before it reads our last words (the error,
    /// the TLS alert). So the socket is read and discarded until the peer closes too, bounded by the
    /// connection's linger deadline (the tick closes it then).
    func shutdownCompleted(_ connection: Connection, status: Int32) {
        guard connection.phase == .draining, status == 0,
              uv_read_start(connection.stream, onAllocate, onLingerRead) == 0 else {
            closeNow(connection)
            return
        }
    }

    // MARK: Metrics

    /// Counts a frame on its way to a client.
    func count(_ message: ServerMessage) {
        counters.framesSent += 1
        switch message {
        case .reply(let reply):
            if case .failure(let error) = reply.result { counters.countError(error.code) }
        case .event:
            counters.eventsSent += 1
        }
    }

    func countMetricsRequest() {
        counters.metricsRequests += 1
    }

    /// The Prometheus text of this moment (MetricsEndpoint asks for it on a scrape).
    func metricsExposition() -> [UInt8] {
        guard let metricsRegistry else { return [] }
        var sample = MetricsSample(counters: counters)
        for connection in connections.values where connection.phase == .open {
            if connection.transport == .unix { sample.unixConnections += 1 } else { sample.tcpConnections += 1 }
        }
        sample.engine = (engine as? Engine)?.statistics
        sample.store = store?.metrics
        sample.storageFailing = storageFailure != nil
        sample.residentMemoryBytes = MetricsRegistry.residentMemoryBytes()
        return metricsRegistry.exposition(sample)
    }

    // MARK: Time

    /// One timer for everything: the engine's next deadline, the earliest linger of a draining
    /// connection, or the earliest moment a peer that stopped reading may be dropped.
    private func armTimer() {
        // The timer is bound only when the deadline moved (most turns: not; a retain less).
        guard timer != nil, let engine else { return }
        var deadline = engine.nextDeadlineMilliseconds
        // Twice a request: an empty dictionary's iterator is not free.
        if !drainingConnections.isEmpty {
            for connection in drainingConnections.values {
                deadline = min(deadline ?? .max, connection.lingerDeadlineMilliseconds)
            }
        }
        if !writeWaiting.isEmpty {
            for connection in writeWaiting.values {
                deadline = min(deadline ?? .max, connection.writeProgressMilliseconds + configuration.writeStallMillisecondsMax)
            }
        }
        isArmedForSweepOnly = false
        if let sweep = admission.nextSweepMilliseconds, sweep < deadline ?? .max {
            deadline = sweep
            isArmedForSweepOnly = true
        }
        guard deadline != armedDeadlineMilliseconds, let timer else { return }
        armedDeadlineMilliseconds = deadline
        if let deadline {
            let loopNow = uv_now(loop)
            timer.start(milliseconds: deadline > loopNow ? deadline - loopNow : 0)
        } else {
            timer.stop()
        }
    }

    /// Deadlines are run in the check phase of this turn (`checkTurn`), after its reads.
    func timerFired() {
        armedDeadlineMilliseconds = nil
        if !isArmedForSweepOnly { isTickDue = true }
        startIdle()
    }

    // MARK: Messages and shutdown

    func messagesArrived() {
        for message in mailbox.take() {
            switch message {
            case .stop:
                beginShutdown(reason: "stop requested")
            case .snapshotFinished(let lsn, let bytes, let milliseconds, let failure):
                snapshotFinished(lsn: lsn, bytes: bytes, milliseconds: milliseconds, failure: failure)
            case .backupFinished(let request, let number, let lsn, let result):
                backupFinished(request, number: number, lsn: lsn, result: result)
            }
        }
    }

    /// Stop accepting, end every connection's session, flush, close every handle.
    func beginShutdown(reason: String) {
        guard !isShuttingDown else { return }
        storageBeforeShutdown()
        isShuttingDown = true
        logger.info("shutting down", metadata: ["reason": "\(reason)", "connections": "\(connections.count)"])
        for listener in listeners {
            LibUV.close(listener.handle)
            if let path = listener.socketPath { unlink(path) }
        }
        listeners.removeAll()
        for endpoint in metricsEndpoints { endpoint.close() }
        mailbox.close()
        if let async { LibUV.close(async) }
        async = nil
        for handle in signals { LibUV.close(handle) }
        signals.removeAll()

        // Replies already produced go out first. Then the engine answers every waiting acquire with
        // `shuttingDown`, sends each connection the unattributed goodbye (PROTOCOL.md §4.6), ends every
        // session and closes every connection; its closes route through `beginDraining`.
        routeOutputs()
        engine?.shutdown(now: now())
        routeOutputs()
        for connection in connections.values where connection.phase == .open { beginDraining(connection) }
        flushTurn()

        if let prepare { LibUV.close(prepare) }
        prepare = nil
        if let check { LibUV.close(check) }
        check = nil
        if let idle { LibUV.close(idle) }
        idle = nil
        timer?.close()
        timer = nil
        groupCommit.timer?.close()
        groupCommit.timer = nil
        // Peers that do not read get a grace period; the timer does not keep the loop alive by itself.
        let grace = LibUV.allocate(uv_timer_t.self)
        uv_timer_init(loop, grace)
        LibUV.setOwner(grace, self)
        uv_timer_start(grace, onShutdownGraceExpired, configuration.shutdownGraceMilliseconds, 0)
        uv_unref(baton_handle(grace))
    }
}

// MARK: C callbacks (global functions: a C function pointer cannot capture)

private func onAllocate(_ handle: UnsafeMutablePointer<uv_handle_t>?, _ suggested: Int, _ buffer: UnsafeMutablePointer<uv_buf_t>?) {
    guard let buffer else { return }
    ServerLoop.with(handle) { loop in
        buffer.pointee = uv_buf_init(loop.readBuffer.assumingMemoryBound(to: CChar.self), UInt32(loop.readBufferBytes))
    }
}

private func onRead(_ stream: UnsafeMutablePointer<uv_stream_t>?, _ count: Int, _ buffer: UnsafePointer<uv_buf_t>?) {
    LibUV.withOwner(stream, as: Connection.self) { connection in
        ServerLoop.with(stream) { loop in loop.didRead(connection, count, buffer.flatMap { UnsafeRawPointer($0.pointee.base) }) }
    }
}

func onWriteCompleted(_ request: UnsafeMutablePointer<uv_write_t>?, _ status: Int32) {
    guard let request else { return }
    let stream = request.pointee.handle
    free(request)  // the block holds the request and its bytes
    guard status != UV_ECANCELED.rawValue else { return }
    guard let connection = LibUV.owner(stream, as: Connection.self), let loop = ServerLoop.of(stream) else { return }
    if status < 0 {
        loop.writeFailed(connection, status: status)
    } else {
        loop.writeCompleted(connection)
    }
}

private func onShutdownCompleted(_ request: UnsafeMutablePointer<uv_shutdown_t>?, _ status: Int32) {
    guard let request else { return }
    let stream = request.pointee.handle
    free(request)
    guard let connection = LibUV.owner(stream, as: Connection.self), let loop = ServerLoop.of(stream) else { return }
    loop.shutdownCompleted(connection, status: status)
}

private func onLingerRead(_ stream: UnsafeMutablePointer<uv_stream_t>?, _ count: Int, _ buffer: UnsafePointer<uv_buf_t>?) {
    guard count < 0, let connection = LibUV.owner(stream, as: Connection.self), let loop = ServerLoop.of(stream) else { return }
    loop.closeNow(connection)  // the peer closed too (or failed): nothing of ours is left to lose
}

private func onPrepare(_ handle: UnsafeMutablePointer<uv_prepare_t>?) {
    ServerLoop.with(handle) { $0.flushTurn(mayWait: true) }
}

private func onCheck(_ handle: UnsafeMutablePointer<uv_check_t>?) {
    ServerLoop.with(handle) { $0.checkTurn() }
}

/// Does nothing: while it is active the poll does not sleep, so the check phase comes at once.
private func onIdle(_ handle: UnsafeMutablePointer<uv_idle_t>?) {}

private func onAsync(_ handle: UnsafeMutablePointer<uv_async_t>?) {
    ServerLoop.of(handle)?.messagesArrived()
}

private func onSignal(_ handle: UnsafeMutablePointer<uv_signal_t>?, _ number: Int32) {
    if number == SIGHUP {
        ServerLoop.of(handle)?.reloadAccessRules()
        return
    }
    ServerLoop.of(handle)?.beginShutdown(reason: number == SIGTERM ? "SIGTERM" : number == SIGINT ? "SIGINT" : "signal \(number)")
}

private func onShutdownGraceExpired(_ handle: UnsafeMutablePointer<uv_timer_t>?) {
    guard let handle, let loop = handle.pointee.loop else { return }
    uv_walk(loop, closeEveryHandle, nil)
}
