import BatonEngine
import BatonProtocol
import BatonStore
import CLibUV
import Dispatch
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything that lives on the loop thread: the libuv loop, its handles, the connections and the
/// engine. One chain reads the request path end to end: `didRead` -> `Connection.consume` ->
/// `engine.handle` -> `routeOutputs` (encode into per-connection output) -> `flushTurn` (once per
/// loop turn, before libuv sleeps: one write per connection).
final class ServerLoop {
    let configuration: ServerConfiguration
    let logger: Logger
    let loop: UnsafeMutablePointer<uv_loop_t>
    private let mailbox: Mailbox
    private let makeEngine: (@Sendable (Time) -> any ServerEngine)?
    private(set) var engine: (any ServerEngine)?

    // Durability (nil store: in memory).
    private var store: Store?
    /// The real engine when durable, for snapshots.
    private var durableEngine: Engine?
    private var recordsSinceSnapshot = 0
    private var logBytesSinceSnapshot = 0
    private var snapshotInProgress: SnapshotJob?
    /// Set by the first failed append or commit: nothing queued after it may be sent.
    private var storageFailure: String?
    private var isFlushing = false

    private var listeners: [Listener] = []
    private var connections: [ConnectionID: Connection] = [:]
    private var drainingConnections: [ConnectionID: Connection] = [:]
    private var nextConnectionID: ConnectionID = 1
    /// Connections with output or a pending close this turn, in the order they got it.
    private var flushQueue: [Connection] = []
    /// The queue being flushed; swapped with `flushQueue` so neither array is reallocated per turn.
    private var flushing: [Connection] = []
    /// The one read buffer every connection reads into: reads are consumed inside the read callback,
    /// which libuv calls right after the read it allocated for, so one buffer serves all connections.
    let readBuffer: UnsafeMutableRawPointer
    let readBufferBytes: Int
    /// Whole frames of one read, copied for the codec (which reads from an array); reused.
    private var decodeScratch: [UInt8] = []

    private var prepare: UnsafeMutablePointer<uv_prepare_t>?
    private var timer: UnsafeMutablePointer<uv_timer_t>?
    private var armedDeadlineMilliseconds: UInt64?
    private var async: UnsafeMutablePointer<uv_async_t>?
    private var signals: [UnsafeMutablePointer<uv_signal_t>] = []
    private(set) var isShuttingDown = false

    // Metrics (MetricsEndpoint.swift, Metrics.swift): counted always, served only with `metricsEndpoint`.
    private var counters = ServerCounters()
    private var metricsEndpoint: MetricsEndpoint?
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
    }

    deinit {
        // Safe: the loop is closed (no more reads) before its owner goes.
        free(readBuffer)
        free(loop)
    }

    /// The loop's owner, for callbacks that only have a handle (set for the duration of `run`).
    static func of(_ handle: UnsafeMutableRawPointer?) -> ServerLoop? {
        guard let handle, let loop = baton_handle(handle).pointee.loop, let data = loop.pointee.data else { return nil }
        return Unmanaged<ServerLoop>.fromOpaque(data).takeUnretainedValue()
    }

    private var limits: Limits { configuration.engine.limits }

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
            closeLoop()
            throw error
        }
        var metadata: Logger.Metadata = ["socket": "\(addresses.socketPath)",
                                         "mode": "\(String(configuration.socketMode, radix: 8))"]
        if let port = addresses.tcpPort { metadata["tcp_port"] = "\(port)" }
        if let port = addresses.metricsPort { metadata["metrics_port"] = "\(port)" }
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
        signal(SIGPIPE, SIG_IGN)

        let prepare = LibUV.allocate(uv_prepare_t.self)
        uv_prepare_init(loop, prepare)
        LibUV.setOwner(prepare, self)
        uv_prepare_start(prepare, onPrepare)
        uv_unref(baton_handle(prepare))
        self.prepare = prepare

        let timer = LibUV.allocate(uv_timer_t.self)
        uv_timer_init(loop, timer)
        LibUV.setOwner(timer, self)
        uv_unref(baton_handle(timer))
        self.timer = timer

        let async = LibUV.allocate(uv_async_t.self)
        uv_async_init(loop, async, onAsync)
        LibUV.setOwner(async, self)
        uv_unref(baton_handle(async))
        self.async = async
        mailbox.open(async)

        if configuration.handlesSignals {
            for number in [SIGTERM, SIGINT] {
                let handle = LibUV.allocate(uv_signal_t.self)
                uv_signal_init(loop, handle)
                LibUV.setOwner(handle, self)
                uv_signal_start(handle, onSignal, number)
                uv_unref(baton_handle(handle))
                signals.append(handle)
            }
        }

        let unix = try Listener.bindUnix(path: configuration.socketPath, mode: configuration.socketMode, loop: self)
        listeners.append(unix)
        var tcpPort: UInt16?
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
            let metrics = try MetricsEndpoint.bind(host: host, port: port, loop: self)
            metricsEndpoint = metrics
            metricsRegistry = MetricsRegistry(includesStore: configuration.durability != nil)
            metricsPort = metrics.boundPort
        }
        // After the listeners: a second daemon on the same socket stops before touching any state.
        // Clients that connect meanwhile wait in the listen backlog.
        if let makeEngine {
            engine = makeEngine(now())
        } else {
            try openEngine()
        }
        if let zooKeeper = configuration.zooKeeper { try openZooKeeper(zooKeeper) }
        return ListeningAddresses(socketPath: configuration.socketPath, tcpPort: tcpPort, metricsPort: metricsPort)
    }

    /// The real engine: fresh in memory, or recovered from the newest snapshot and the log after it.
    private func openEngine() throws(ServerError) {
        guard let durability = configuration.durability else {
            engine = Engine(configuration: configuration.engine, now: now())
            logger.info("namespace kept in memory only (nothing survives a restart)")
            return
        }
        let opened: (store: Store, recovery: Recovery)
        do {
            opened = try Store.open(directory: durability.dataDirectory, configuration: durability.store, logger: logger)
        } catch {
            throw ServerError("cannot open data directory \(durability.dataDirectory): \(error)")
        }
        let recovery = opened.recovery
        let engine: Engine
        do {
            engine = try Engine(configuration: configuration.engine, now: now(),
                                recoveringFrom: recovery.snapshot?.bytes, records: recovery.records.lazy.map(\.payload))
        } catch {
            try? opened.store.close()
            throw ServerError("cannot recover the namespace from \(durability.dataDirectory): \(error)")
        }
        self.engine = engine
        durableEngine = engine
        store = opened.store
        recordsSinceSnapshot = recovery.records.count
        logBytesSinceSnapshot = recovery.records.reduce(0) { $0 + $1.payload.count }
        logger.info("namespace recovered", metadata: [
            "data_dir": "\(durability.dataDirectory)", "fsync": "\(durability.store.fsyncPolicy)",
            "snapshot_lsn": "\(recovery.snapshot.map { String($0.lsn) } ?? "none")",
            "records_replayed": "\(recovery.records.count)", "next_lsn": "\(recovery.nextLSN)",
        ])
    }

    /// After the loop: let a running snapshot finish (it writes only its own file), then write and
    /// sync what the log still buffers and release the data directory.
    private func closeStore() {
        snapshotInProgress?.waitUntilFinished()
        snapshotInProgress?.releaseSource()
        snapshotInProgress = nil
        guard let store else { return }
        self.store = nil
        do {
            try store.close()
        } catch {
            if storageFailure == nil { storageFailure = "\(error)" }
            logger.critical("cannot close the write-ahead log", metadata: ["error": "\(error)"])
        }
    }

    /// Closes whatever is left, lets the close callbacks run, and closes the loop.
    private func closeLoop() {
        mailbox.close()
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
        var wall = timespec()
        clock_gettime(CLOCK_REALTIME, &wall)
        return Time(monotonicMilliseconds: uv_now(loop),
                    wallMilliseconds: UInt64(wall.tv_sec) * 1_000 + UInt64(wall.tv_nsec) / 1_000_000)
    }

    private func metadata(_ connection: Connection) -> Logger.Metadata {
        ["connection": "\(connection.id)", "peer": "\(connection.peer)",
         "transport": "\(connection.transport == .unix ? "unix" : "tcp")"]
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

        counters.connectionsAccepted += 1
        if engine.connectionOpened(connection.id, transport: listener.transport, now: now()) {
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
        guard let engine, connection.phase == .open else { return }
        if count > 0, let bytes {
            let time = now()
            counters.bytesRead += UInt64(count)
            let keepReading = connection.consume(UnsafeRawBufferPointer(start: bytes, count: count), scratch: &decodeScratch,
                                                 frameBytesMax: limits.frameBytesMax) { decoded in
                counters.framesReceived += 1
                switch decoded {
                case .request(let requestID, let request):
                    counters.requestsByOpcode[Int(request.opcode.rawValue)] += 1
                    engine.handle(request, requestID: requestID, from: connection.id, now: time)
                case .failure(let failure):
                    var details = metadata(connection)
                    details["error"] = "\(failure.code.name)"
                    details["detail"] = "\(failure.message)"
                    logger.info("bad frame", metadata: details)
                    engine.decodeFailed(failure, from: connection.id, now: time)
                }
            }
            if !keepReading { uv_read_stop(connection.stream) }
            routeOutputs()
            // The stream cannot be trusted past a framing error: close even if the engine did not ask.
            if !keepReading && connection.phase == .open { beginDraining(connection) }
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

    func writeFailed(_ connection: Connection, status: Int32) {
        guard connection.phase != .closed else { return }
        logger.info("write failed", metadata: metadata(connection).merging(["error": "\(LibUV.describe(status))"]) { $1 })
        closeNow(connection)
        routeOutputs()
    }

    /// Stops reading, tells the engine, writes what is queued, then shuts the stream down and closes it.
    private func beginDraining(_ connection: Connection) {
        guard connection.phase == .open else { return }
        connection.phase = .draining
        uv_read_stop(connection.stream)
        let time = now()
        connection.lingerDeadlineMilliseconds = time.monotonicMilliseconds + configuration.closeLingerMilliseconds
        drainingConnections[connection.id] = connection
        queueFlush(connection)
        release(connection, now: time)
    }

    /// Closes at once, dropping queued output (errors, slow readers, linger expired).
    func closeNow(_ connection: Connection) {
        guard connection.phase != .closed else { return }
        connection.phase = .closed
        connections[connection.id] = nil
        drainingConnections[connection.id] = nil
        connection.output = WireWriter(capacity: 0)
        LibUV.close(connection.handle)
        release(connection, now: now())
    }

    private func release(_ connection: Connection, now time: Time) {
        guard !connection.engineReleased, let engine else { return }
        connection.engineReleased = true
        engine.connectionClosed(connection.id, now: time)
    }

    private func queueFlush(_ connection: Connection) {
        guard !connection.isQueuedForFlush else { return }
        connection.isQueuedForFlush = true
        flushQueue.append(connection)
    }

    // MARK: Outputs

    /// Routes everything the engine produced, until it produces nothing more (dropping a slow
    /// reader tells the engine, which may produce more).
    func routeOutputs() {
        guard let engine else { return }
        while true {
            let outputs = engine.takeOutputs()
            if outputs.isEmpty { return }
            for output in outputs {
                switch output {
                case .send(let id, let message):
                    // After a log failure nothing is sent: it might acknowledge a lost change.
                    guard storageFailure == nil, let connection = connections[id], connection.phase == .open else { continue }
                    count(message)
                    Codec.encode(message, into: &connection.output)
                    queueFlush(connection)
                    let queuedBytes = connection.outputBytesQueued
                    if queuedBytes > limits.outputBytesPerConnectionMax {
                        var details = metadata(connection)
                        details["queued_bytes"] = "\(queuedBytes)"
                        details["limit_bytes"] = "\(limits.outputBytesPerConnectionMax)"
                        logger.warning("disconnecting a client that does not read its replies", metadata: details)
                        counters.slowReaderDisconnects += 1
                        closeNow(connection)
                    }
                case .close(let id):
                    guard let connection = connections[id] else { continue }
                    beginDraining(connection)
                case .persist(let record):
                    guard let store, storageFailure == nil else { continue }
                    do {
                        try store.append(record)
                    } catch {
                        storageFailed(error)
                        continue
                    }
                    recordsSinceSnapshot += 1
                    logBytesSinceSnapshot += record.count
                }
            }
        }
    }

    /// Once per loop turn, before libuv sleeps: the log is committed (group commit: one fsync for
    /// every record of the turn), then one write per connection with all its bytes.
    func flushTurn() {
        guard !isFlushing else { return }  // re-entered from a shutdown started below
        isFlushing = true
        defer { isFlushing = false }
        if let store, storageFailure == nil, store.needsCommit {
            do {
                try store.commit()
            } catch {
                storageFailed(error)
            }
        }
        while !flushQueue.isEmpty {
            swap(&flushQueue, &flushing)
            defer { flushing.removeAll(keepingCapacity: true) }
            for connection in flushing {
                connection.isQueuedForFlush = false
                guard connection.phase != .closed else { continue }
                let pendingBytes = connection.output.bytes.count
                let result = connection.writePendingOutput()
                if result < 0 {
                    logger.info("write failed", metadata: metadata(connection).merging(["error": "\(LibUV.describe(result))"]) { $1 })
                    closeNow(connection)
                    continue
                }
                counters.bytesWritten += UInt64(pendingBytes)
                if connection.phase == .draining { shutDown(connection) }
            }
            routeOutputs()
            if let store, storageFailure == nil, store.needsCommit {
                // Routing produced more records (a dropped slow reader's session ended): commit them too.
                do {
                    try store.commit()
                } catch {
                    storageFailed(error)
                }
            }
        }
        armTimer()
        startSnapshotIfDue()
    }

    /// The log can no longer be trusted: drop every reply not yet written (any may depend on a
    /// record that is not durable) and stop; `run` then throws.
    private func storageFailed(_ error: any Error) {
        guard storageFailure == nil else { return }
        storageFailure = "\(error)"
        logger.critical("write-ahead log failed; stopping without sending replies that depend on it",
                        metadata: ["error": "\(error)"])
        for connection in connections.values { connection.output = WireWriter(capacity: 0) }
        beginShutdown(reason: "storage failure")
    }

    // MARK: Snapshots

    /// Every `snapshotEveryRecords` records or `snapshotEveryLogBytes` bytes of log: copy the
    /// persistent state here (the stall, logged), serialize and write it on a background thread,
    /// prune the log when it is done (`snapshotFinished`).
    private func startSnapshotIfDue() {
        guard let durability = configuration.durability, let store, let engine = durableEngine,
              snapshotInProgress == nil, storageFailure == nil, !isShuttingDown,
              recordsSinceSnapshot >= durability.snapshotEveryRecords || logBytesSinceSnapshot >= durability.snapshotEveryLogBytes
        else { return }
        let copyStarted = DispatchTime.now().uptimeNanoseconds
        let source = engine.snapshotSource()
        let lsn = store.lastLSN
        let stallMicroseconds = (DispatchTime.now().uptimeNanoseconds - copyStarted) / 1_000
        logger.info("snapshot started", metadata: [
            "lsn": "\(lsn)", "records_since_last": "\(recordsSinceSnapshot)",
            "log_bytes_since_last": "\(logBytesSinceSnapshot)", "loop_stall_microseconds": "\(stallMicroseconds)",
        ])
        recordsSinceSnapshot = 0
        logBytesSinceSnapshot = 0
        counters.lastSnapshotStallMicroseconds = stallMicroseconds
        // The job owns the snapshot and the loop releases it (see SnapshotJob): the thread only borrows it.
        let job = SnapshotJob(serializing: { source.serialize() })
        snapshotInProgress = job
        let writer = store.snapshotWriter
        let mailbox = self.mailbox
        Thread(name: "batond-snapshot") {
            let started = DispatchTime.now().uptimeNanoseconds
            let bytes = job.serialize()
            var failure: String?
            do {
                try writer.writeSnapshot(lsn: lsn, bytes: bytes)
            } catch {
                failure = "\(error)"
            }
            let milliseconds = (DispatchTime.now().uptimeNanoseconds - started) / 1_000_000
            mailbox.post(.snapshotFinished(lsn: lsn, bytes: bytes.count, milliseconds: milliseconds, failure: failure))
            job.finish()
        }.start()
    }

    private func snapshotFinished(lsn: UInt64, bytes: Int, milliseconds: UInt64, failure: String?) {
        snapshotInProgress?.releaseSource()
        snapshotInProgress = nil
        if let failure {
            // The log still holds everything; the next snapshot tries again.
            counters.snapshotFailures += 1
            logger.error("snapshot failed", metadata: ["lsn": "\(lsn)", "error": "\(failure)"])
            return
        }
        counters.snapshotsWritten += 1
        logger.info("snapshot finished", metadata: ["lsn": "\(lsn)", "bytes": "\(bytes)", "milliseconds": "\(milliseconds)"])
        guard let store, storageFailure == nil else { return }
        do {
            try store.pruneBefore(snapshotLSN: lsn)
        } catch {
            logger.error("cannot prune the log after a snapshot", metadata: ["lsn": "\(lsn)", "error": "\(error)"])
        }
    }

    private func shutDown(_ connection: Connection) {
        guard !connection.isShutdownIssued else { return }
        connection.isShutdownIssued = true
        let request = LibUV.allocate(uv_shutdown_t.self)
        let result = uv_shutdown(request, connection.stream, onShutdownCompleted)
        if result < 0 {
            free(request)
            closeNow(connection)
        }
    }

    // MARK: Metrics

    /// Counts a frame on its way to a client.
    private func count(_ message: ServerMessage) {
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
        sample.residentMemoryBytes = MetricsRegistry.residentMemoryBytes()
        return metricsRegistry.exposition(sample)
    }

    // MARK: Time

    /// One timer for everything: the engine's next deadline, or the earliest linger of a draining connection.
    private func armTimer() {
        guard let timer, let engine else { return }
        var deadline = engine.nextDeadlineMilliseconds
        if !drainingConnections.isEmpty {
            for connection in drainingConnections.values {
                deadline = min(deadline ?? .max, connection.lingerDeadlineMilliseconds)
            }
        }
        guard deadline != armedDeadlineMilliseconds else { return }
        armedDeadlineMilliseconds = deadline
        if let deadline {
            let loopNow = uv_now(loop)
            uv_timer_start(timer, onTimer, deadline > loopNow ? deadline - loopNow : 0, 0)
        } else {
            uv_timer_stop(timer)
        }
    }

    func timerFired() {
        guard let engine else { return }
        armedDeadlineMilliseconds = nil
        let time = now()
        engine.tick(now: time)
        for connection in drainingConnections.values where connection.lingerDeadlineMilliseconds <= time.monotonicMilliseconds {
            logger.info("closing a connection whose peer does not read", metadata: metadata(connection))
            closeNow(connection)
        }
        routeOutputs()
    }

    // MARK: Messages and shutdown

    func messagesArrived() {
        for message in mailbox.take() {
            switch message {
            case .stop:
                beginShutdown(reason: "stop requested")
            case .snapshotFinished(let lsn, let bytes, let milliseconds, let failure):
                snapshotFinished(lsn: lsn, bytes: bytes, milliseconds: milliseconds, failure: failure)
            }
        }
    }

    /// Stop accepting, end every connection's session, flush, close every handle.
    func beginShutdown(reason: String) {
        guard !isShuttingDown else { return }
        isShuttingDown = true
        logger.info("shutting down", metadata: ["reason": "\(reason)", "connections": "\(connections.count)"])
        for listener in listeners {
            LibUV.close(listener.handle)
            if let path = listener.socketPath { unlink(path) }
        }
        listeners.removeAll()
        metricsEndpoint?.close()
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
        if let timer { LibUV.close(timer) }
        timer = nil
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
    guard let loop = ServerLoop.of(handle), let buffer else { return }
    buffer.pointee = uv_buf_init(loop.readBuffer.assumingMemoryBound(to: CChar.self), UInt32(loop.readBufferBytes))
}

private func onRead(_ stream: UnsafeMutablePointer<uv_stream_t>?, _ count: Int, _ buffer: UnsafePointer<uv_buf_t>?) {
    guard let connection = LibUV.owner(stream, as: Connection.self), let loop = ServerLoop.of(stream) else { return }
    loop.didRead(connection, count, buffer.flatMap { UnsafeRawPointer($0.pointee.base) })
}

func onWriteCompleted(_ request: UnsafeMutablePointer<uv_write_t>?, _ status: Int32) {
    guard let request else { return }
    let stream = request.pointee.handle
    free(request)  // the block holds the request and its bytes
    guard status < 0, status != UV_ECANCELED.rawValue else { return }
    guard let connection = LibUV.owner(stream, as: Connection.self), let loop = ServerLoop.of(stream) else { return }
    loop.writeFailed(connection, status: status)
}

private func onShutdownCompleted(_ request: UnsafeMutablePointer<uv_shutdown_t>?, _ status: Int32) {
    guard let request else { return }
    let stream = request.pointee.handle
    free(request)
    guard let connection = LibUV.owner(stream, as: Connection.self), let loop = ServerLoop.of(stream) else { return }
    loop.closeNow(connection)
}

private func onPrepare(_ handle: UnsafeMutablePointer<uv_prepare_t>?) {
    ServerLoop.of(handle)?.flushTurn()
}

private func onTimer(_ handle: UnsafeMutablePointer<uv_timer_t>?) {
    ServerLoop.of(handle)?.timerFired()
}

private func onAsync(_ handle: UnsafeMutablePointer<uv_async_t>?) {
    ServerLoop.of(handle)?.messagesArrived()
}

private func onSignal(_ handle: UnsafeMutablePointer<uv_signal_t>?, _ number: Int32) {
    ServerLoop.of(handle)?.beginShutdown(reason: number == SIGTERM ? "SIGTERM" : number == SIGINT ? "SIGINT" : "signal \(number)")
}

private func onShutdownGraceExpired(_ handle: UnsafeMutablePointer<uv_timer_t>?) {
    guard let handle, let loop = handle.pointee.loop else { return }
    uv_walk(loop, closeEveryHandle, nil)
}
