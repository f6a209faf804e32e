import BatonEngine
import BatonProtocol
import BatonStore
import CLibUV
import Dispatch
import Logging

/// The loop's durability: recovering the engine from the data directory, appending the engine's
/// records, the commit barrier (replies wait for it), snapshots on a background thread, and closing
/// the store. Everything here runs on the loop thread (the snapshot writer aside).
extension ServerLoop {
    /// The real engine: fresh in memory, or recovered from the newest snapshot and the log after it.
    func openEngine() throws(ServerError) {
        guard let durability = configuration.durability else {
            // No store: `persist` would drop every record, so the namespace makes none.
            var engineConfiguration = configuration.engine
            engineConfiguration.logsRecords = false
            let engine = Engine(configuration: engineConfiguration, now: now())
            self.engine = engine
            backupEngine = engine
            logger.info("namespace kept in memory only (nothing survives a restart)")
            return
        }
        let opened: (store: Store, recovery: Recovery)
        do {
            opened = try Store.open(directory: durability.dataDirectory, configuration: durability.store,
                                    repair: durability.repair, logger: logger)
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
        // Counters restart at or above the marks kept outside the log, whatever the log lost.
        engine.raiseCounters(transactions: recovery.marks.transactions,
                             sequences: recovery.lostRecords ? recovery.marks.sequences : nil)
        self.engine = engine
        durableEngine = engine
        backupEngine = engine
        store = opened.store
        recordsSinceSnapshot = recovery.records.count
        logBytesSinceSnapshot = recovery.records.reduce(0) { $0 + $1.payload.count }
        logger.info("namespace recovered", metadata: [
            "data_dir": "\(durability.dataDirectory)", "fsync": "\(durability.store.fsyncPolicy)",
            "snapshot_lsn": "\(recovery.snapshot.map { String($0.lsn) } ?? "none")",
            "records_replayed": "\(recovery.records.count)", "next_lsn": "\(recovery.nextLSN)",
            "repairs": "\(recovery.repairs.count)",
        ])
    }

    /// After the loop: let a running snapshot finish (it writes only its own file), then write and
    /// sync what the log still buffers and release the data directory. A log still failing gets
    /// one last retry; if that fails too the held replies were never sent and `run` throws.
    func closeStore() {
        snapshotInProgress?.waitUntilFinished()
        snapshotInProgress?.releaseSource()
        snapshotInProgress = nil
        for job in backupsInProgress.values {
            job.waitUntilFinished()
            job.releaseSource()
        }
        backupsInProgress.removeAll()
        guard let store else { return }
        self.store = nil
        do {
            if store.failure != nil { try store.retry() }
            if !storageBroken { storageFailure = nil }
            try store.close()
        } catch {
            storageFailure = "\(error)"
            logger.critical("cannot close the write-ahead log; replies that waited for it were not sent",
                            metadata: ["error": "\(error)"])
        }
    }

    // MARK: Storage failure (docs/STORAGE.md, "Storage failure")

    /// The log could not be written (a full disk, an I/O error). The daemon keeps serving: the
    /// engine refuses changes that would be logged (`storageFull` / `storageUnavailable`), replies
    /// queued this turn are held (any may rest on a record not yet durable) with everything after
    /// them on the same connection, and a timer retries the log until it takes the records; then
    /// the held replies go out. Reads, heartbeats and lock operations that log nothing go on.
    func storageFailed(_ error: any Error) {
        guard storageFailure == nil else { return }
        storageFailure = "\(error)"
        let outOfSpace = store?.failure?.isOutOfSpace ?? false
        let code: ErrorCode = outOfSpace ? .storageFull : .storageUnavailable
        durableEngine?.writeRefusal = ReplyError(code, outOfSpace
            ? "the data directory is full; writes are refused until space is freed (retried every \(retryMilliseconds) ms)"
            : "the data directory cannot be written (\(error)); writes are refused until it can (retried every \(retryMilliseconds) ms)")
        var held = 0
        // Replies routed later in this same turn may rest on the failed records too.
        holdsRestOfTurn = true
        for connection in connections.values where !connection.output.bytes.isEmpty {
            heldOutputs[connection.id] = connection.output
            connection.output = WireWriter(capacity: 0)
            held += 1
        }
        counters.storageFailures += 1
        logger.critical("write-ahead log write failed; refusing writes and holding replies that may depend on it until it can be written",
                        metadata: ["error": "\(error)", "held_connections": "\(held)", "code": "\(code.name)"])
        if storageRetryTimer == nil {
            let timer = LibUV.allocate(uv_timer_t.self)
            uv_timer_init(loop, timer)
            LibUV.setOwner(timer, self)
            uv_unref(baton_handle(timer))
            storageRetryTimer = timer
        }
        if let storageRetryTimer { uv_timer_start(storageRetryTimer, onStorageRetry, retryMilliseconds, retryMilliseconds) }
    }

    private var retryMilliseconds: UInt64 { configuration.durability?.storageRetryMilliseconds ?? 1_000 }

    /// On the retry timer: rewrite what the log holds in memory; on success send the held replies
    /// (in order) and accept writes again.
    func retryStorage() {
        guard let store, storageFailure != nil, !storageBroken else { return }
        if let engine = durableEngine { store.raiseMarks(CounterMarks(engine.counterMarks)) }
        do {
            try store.retry()
            try store.commit()
        } catch {
            logger.debug("write-ahead log still cannot be written", metadata: ["error": "\(error)"])
            // Replies held for connections that closed meanwhile will never be sent.
            heldOutputs = heldOutputs.filter { connections[$0.key] != nil }
            return
        }
        if let storageRetryTimer { uv_timer_stop(storageRetryTimer) }
        storageFailure = nil
        durableEngine?.writeRefusal = nil
        let held = heldOutputs
        heldOutputs.removeAll()
        for (id, output) in held {
            guard let connection = connections[id], connection.phase != .closed else { continue }
            // Everything for this connection went to the held writer meanwhile: it comes first.
            var combined = output
            combined.raw(connection.output.bytes)
            connection.output = combined
            queueFlush(connection)
        }
        logger.notice("write-ahead log writable again; held replies sent, writes accepted",
                      metadata: ["held_connections": "\(held.count)", "last_lsn": "\(store.lastLSN)"])
        flushTurn()
    }

    /// Shutdown while the log fails: one more retry; if it fails too, the held replies are dropped
    /// (never acknowledged) so that every client still gets the goodbye (PROTOCOL.md §4.6).
    func storageBeforeShutdown() {
        guard storageFailure != nil else { return }
        retryStorage()
        guard storageFailure != nil else { return }
        logger.critical("shutting down while the write-ahead log cannot be written: replies that wait for it are dropped",
                        metadata: ["held_connections": "\(heldOutputs.count)"])
        heldOutputs.removeAll()
        holdsRestOfTurn = false
    }

    /// The turn is over: replies routed from now on rest only on what the log already has.
    func endTurn() {
        holdsRestOfTurn = false
    }

    /// While replies are held for `connection`, later ones queue behind them. True if held.
    func hold(_ message: ServerMessage, for connection: Connection) -> Bool {
        guard holdsRestOfTurn || !heldOutputs.isEmpty else { return false }  // every frame asks: the usual answer costs no lookup
        if holdsRestOfTurn && heldOutputs[connection.id] == nil { heldOutputs[connection.id] = WireWriter(capacity: 0) }
        guard heldOutputs[connection.id] != nil else { return false }
        encode(message, into: &heldOutputs[connection.id]!)
        // Bounded like any output: a client that keeps asking while its replies wait is dropped.
        if heldOutputs[connection.id]!.bytes.count > limits.outputBytesPerConnectionMax {
            logger.warning("disconnecting a client whose held replies exceed the output limit",
                           metadata: ["connection": "\(connection.id)", "limit_bytes": "\(limits.outputBytesPerConnectionMax)"])
            heldOutputs[connection.id] = nil
            closeNow(connection)
        }
        return true
    }

    // MARK: Snapshots

    /// Every `snapshotEveryRecords` records or `snapshotEveryLogBytes` bytes of log: copy the
    /// persistent state here (the stall, logged), serialize and write it on a background thread,
    /// prune the log when it is done (`snapshotFinished`).
    func startSnapshotIfDue() {
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
        let job = SnapshotJob(serializing: { emit in try source.serialize(into: emit) })
        snapshotInProgress = job
        let writer = store.snapshotWriter
        let mailbox = self.mailbox
        Thread(name: "batond-snapshot") {
            let started = DispatchTime.now().uptimeNanoseconds
            var bytes = 0
            var failure: String?
            do {
                bytes = try writer.writeSnapshot(lsn: lsn, payload: job.serialize)
            } catch {
                failure = "\(error)"
            }
            let milliseconds = (DispatchTime.now().uptimeNanoseconds - started) / 1_000_000
            mailbox.post(.snapshotFinished(lsn: lsn, bytes: bytes, milliseconds: milliseconds, failure: failure))
            job.finish()
        }.start()
    }

    func snapshotFinished(lsn: UInt64, bytes: Int, milliseconds: UInt64, failure: String?) {
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

    /// Appends one record the engine produced; its replies wait for `commitLog`. While the log
    /// fails the record waits in the store's memory (only changes that cannot be refused, such as
    /// a session's end, produce records then) and is written by the retry.
    func persist(_ record: [UInt8]) {
        guard let store else { return }
        do {
            try store.append(record)
        } catch {
            // Too large or closed: a bug upstream (the frame limit bounds records far below the
            // store's). A retry cannot help: hold what may rest on it, refuse writes, and stop.
            logger.critical("a record cannot be logged; stopping without sending replies that depend on it",
                            metadata: ["error": "\(error)"])
            storageBroken = true
            storageFailed(error)
            mailbox.post(.stop)
            return
        }
        recordsSinceSnapshot += 1
        logBytesSinceSnapshot += record.count
        if storageFailure == nil, let failure = store.failure { storageFailed(failure) }
    }

    /// The commit barrier: raises the counter marks outside the log if the engine passed them,
    /// then makes every record appended so far as durable as the policy promises, before the
    /// replies that depend on them are written. True if it committed records.
    @discardableResult
    func commitLog() -> Bool {
        guard let store, storageFailure == nil else { return false }
        if let engine = durableEngine { store.raiseMarks(CounterMarks(engine.counterMarks)) }
        guard store.needsCommit else { return false }
        let started = LatencyHistogram.now()
        do {
            try store.commit()
        } catch {
            storageFailed(error)
            return false
        }
        groupCommit.committed(nanoseconds: LatencyHistogram.now() &- started)
        return true
    }

    // MARK: Group commit across clients (`--fsync batch`)

    /// Whether this turn's commit (and so its replies) should wait for more records. Clients that
    /// the last commit answered and that have not sent since (`GroupCommit.peers`) usually send
    /// their next request within microseconds; committing without them would give them an fsync of
    /// their own. So the commit waits for them, at most half a recent commit's duration (under a
    /// millisecond) from the first turn that had records, and not at all right after a wait that
    /// ran out (a client that answers slowly, or holds a lock and sends nothing, then costs nothing).
    /// One client alone never waits: its own request is the one the commit has. Replies are never
    /// sent before their commit; they are only sent later by up to the window.
    func commitWaitsForPeers() -> Bool {
        guard let store, let timer = groupCommit.timer, storageFailure == nil, !isShuttingDown,
              store.needsCommit else { return false }
        switch groupCommit.decide(now: LatencyHistogram.now()) {
        case .commit:
            return false
        case .wait:
            return true
        case .startWindow(let microseconds):
            timer.start(microseconds: microseconds)
            return true
        }
    }

    /// The group-commit timer fired: the next prepare phase commits (the poll only had to wake).
    func commitWindowClosed() {}
}

/// Group commit across clients' turns (`ServerLoop.commitWaitsForPeers`). Loop thread only.
struct GroupCommit {
    /// A window shorter than this is not worth a timer (a fast disk: commit at once).
    static let windowNanosecondsMin: UInt64 = 20_000
    /// The longest wait, whatever the disk.
    static let windowNanosecondsMax: UInt64 = 1_000_000

    /// Fires when a window runs out; nil unless the policy is `batch`.
    var timer: DeadlineTimer?
    /// Connections the last commit answered that have sent nothing since (nor closed).
    var peers: Set<ConnectionID> = []
    /// While the commit waits: when it stops waiting (monotonic nanoseconds).
    var windowDeadline: UInt64?
    /// The last window ran out before everyone came: the next commit does not wait.
    var windowRanOut = false
    /// Recent commits' duration (an exponential average, nanoseconds).
    var commitNanoseconds: UInt64 = 0

    var windowNanoseconds: UInt64 { min(commitNanoseconds / 2, GroupCommit.windowNanosecondsMax) }

    enum Decision: Equatable {
        /// Commit now.
        case commit
        /// Keep waiting (the window's timer is armed).
        case wait
        /// Start waiting: arm the timer for this long.
        case startWindow(microseconds: UInt64)
    }

    /// Records wait to be committed (monotonic `now`, nanoseconds): commit them now or wait for peers.
    /// The clock is read only when the answer depends on it (not with nobody to wait for: one client).
    mutating func decide(now: @autoclosure () -> UInt64) -> Decision {
        if let deadline = windowDeadline {
            if peers.isEmpty { return .commit }  // everyone it waited for is in
            if now() >= deadline {
                windowRanOut = true
                return .commit
            }
            return .wait
        }
        guard !peers.isEmpty, !windowRanOut else { return .commit }
        let window = windowNanoseconds
        guard window >= GroupCommit.windowNanosecondsMin else { return .commit }
        windowDeadline = now() + window
        return .startWindow(microseconds: window / 1_000)
    }

    /// A request (or a close) from `connection`: the commit need not wait for it any more.
    mutating func heard(from connection: ConnectionID) {
        peers.remove(connection)
    }

    /// A commit took `nanoseconds`; a window it waited in is over.
    mutating func committed(nanoseconds: UInt64) {
        commitNanoseconds = commitNanoseconds == 0 ? nanoseconds : (commitNanoseconds * 7 + nanoseconds) / 8
        if windowDeadline != nil {
            windowDeadline = nil
            timer?.stop()
        } else {
            windowRanOut = false
        }
    }
}

extension CounterMarks {
    init(_ marks: (transactions: UInt64, sequences: UInt64)) {
        self.init(transactions: marks.transactions, sequences: marks.sequences)
    }
}

private func onStorageRetry(_ handle: UnsafeMutablePointer<uv_timer_t>?) {
    ServerLoop.of(handle)?.retryStorage()
}
