import BatonEngine
import BatonProtocol
import BatonStore
import Dispatch

/// Online backup (PROTOCOL.md §10.8, `baton backup`): the same copy-on-write snapshot as the periodic
/// one (ServerLoop+Durability.swift), taken on the loop when the request is handled, serialized and
/// written to the client's file on a thread of its own; the reply goes out once the file is durable.
/// Serving goes on meanwhile. The file is a snapshot file; `batond --restore` seeds a data directory with it.
extension ServerLoop {
    /// Backups written at once; more wait their turn (each holds a copy of the namespace's root and a thread).
    static let backupsRunningMax = 2
    /// Backups waiting for a turn; more are refused with `tooManyPendingRequests`.
    static let backupsWaitingMax = 16

    /// Starts (or queues) the backups the engine accepted since the last call.
    func startRequestedBackups() {
        guard let engine = backupEngine else { return }
        for request in engine.takeBackupRequests() {
            if backupsInProgress.count < ServerLoop.backupsRunningMax {
                startBackup(request, engine: engine)
            } else if backupsWaiting.count < ServerLoop.backupsWaitingMax {
                backupsWaiting.append(request)
            } else {
                engine.backupFinished(request, .failure(ReplyError(.tooManyPendingRequests,
                    "\(ServerLoop.backupsRunningMax + ServerLoop.backupsWaitingMax) backups are already under way; try again when one is done")),
                    now: now())
            }
        }
    }

    private func startBackup(_ request: BackupRequest, engine: Engine) {
        let copyStarted = DispatchTime.now().uptimeNanoseconds
        let source = engine.snapshotSource()
        let stallMicroseconds = (DispatchTime.now().uptimeNanoseconds - copyStarted) / 1_000
        // Every record the snapshot reflects has at most this LSN (in memory: none, 0); the log of a
        // restored directory continues after it.
        let lsn = store?.lastLSN ?? 0
        nextBackupNumber += 1
        let number = nextBackupNumber
        // As for snapshots, the job owns the copy and the loop drops it (SnapshotJob).
        let job = SnapshotJob(serializing: { emit in try source.serialize(into: emit) })
        backupsInProgress[number] = job
        counters.backupsStarted += 1
        logger.info("backup started", metadata: ["file": "\(request.file)", "lsn": "\(lsn)", "connection": "\(request.connection)",
                                                 "loop_stall_microseconds": "\(stallMicroseconds)"])
        let mailbox = self.mailbox
        Thread(name: "batond-backup") {
            let result: Result<Int, BackupFailure>
            do {
                result = .success(try SnapshotWriter.writeBackup(lsn: lsn, to: request.file, payload: job.serialize))
            } catch {
                result = .failure(BackupFailure(message: "\(error)"))
            }
            mailbox.post(.backupFinished(request, number: number, lsn: lsn, result: result))
            job.finish()
        }.start()
    }

    func backupFinished(_ request: BackupRequest, number: Int, lsn: UInt64, result: Result<Int, BackupFailure>) {
        backupsInProgress[number]?.releaseSource()
        backupsInProgress[number] = nil
        let reply: Result<ReplyBody, ReplyError>
        switch result {
        case .success(let bytes):
            counters.backupsWritten += 1
            logger.notice("backup written", metadata: ["file": "\(request.file)", "lsn": "\(lsn)", "bytes": "\(bytes)"])
            reply = .success(.backedUp(lsn: lsn, bytes: UInt64(bytes)))
        case .failure(let failure):
            counters.backupFailures += 1
            logger.error("backup failed", metadata: ["file": "\(request.file)", "error": "\(failure.message)"])
            reply = .failure(ReplyError(.storageFailure, "cannot write the backup: \(failure.message)"))
        }
        backupEngine?.backupFinished(request, reply, now: now())
        // The next one waiting reflects the namespace as it is now: later than asked, never older.
        if !isShuttingDown, let engine = backupEngine, !backupsWaiting.isEmpty {
            startBackup(backupsWaiting.removeFirst(), engine: engine)
        }
        routeOutputs()
        flushTurn()
    }
}
