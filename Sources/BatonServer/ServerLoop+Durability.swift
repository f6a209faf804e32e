import BatonEngine
import BatonProtocol
import BatonStore
import Dispatch
import Logging

/// The loop's durability: recovering the engine from the data directory, appending the engine's
/// records, the commit barrier (replies wait for it), snapshots on a background thread, and closing
/// the store. Everything here runs on the loop thread (the snapshot writer aside).
extension ServerLoop {
    /// The real engine: fresh in memory, or recovered from the newest snapshot and the log after it.
    func openEngine() throws(ServerError) {
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
    func closeStore() {
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


    /// The log can no longer be trusted: drop every reply not yet written (any may depend on a
    /// record that is not durable) and stop; `run` then throws.
    func storageFailed(_ error: any Error) {
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

    /// Appends one record the engine produced; its replies wait for `commitLog`.
    func persist(_ record: [UInt8]) {
        guard let store, storageFailure == nil else { return }
        do {
            try store.append(record)
        } catch {
            storageFailed(error)
            return
        }
        recordsSinceSnapshot += 1
        logBytesSinceSnapshot += record.count
    }

    /// The commit barrier: makes every record appended so far as durable as the policy promises,
    /// before the replies that depend on them are written.
    func commitLog() {
        guard let store, storageFailure == nil, store.needsCommit else { return }
        do {
            try store.commit()
        } catch {
            storageFailed(error)
        }
    }
}
