import Logging

extension Store {
    /// Seeds an empty (or missing) data directory from a backup file (`SnapshotWriter.writeBackup`):
    /// checks the whole file, then writes FORMAT and the backup as the directory's only snapshot.
    /// The next `open` recovers from it; the log continues after its LSN. Returns that LSN.
    /// Refuses a directory holding anything, so a restore never mixes with a live store.
    @discardableResult
    public static func restore(backup path: String, into directory: String, logger: Logger) throws -> LogSequenceNumber {
        let bytes = try FileSystem.readAll(path)
        guard bytes.count >= StoreFormat.snapshotHeaderBytes else {
            throw StoreError.badBackup(path: path, problem: "shorter than a snapshot header (\(bytes.count) bytes)")
        }
        let lsn = StoreFormat.readUInt64(bytes, at: 12)
        let snapshot: RecoveredSnapshot
        switch try StoreFormat.checkSnapshot(bytes, lsn: lsn, path: path) {
        case .valid(let found): snapshot = found
        case .corrupt(let reason): throw StoreError.badBackup(path: path, problem: reason)
        }
        try FileSystem.makeDirectories(directory)
        let present = try FileSystem.listDirectory(directory)
        guard present.isEmpty else { throw StoreError.restoreTargetNotEmpty(directory: directory, entries: present.count) }
        try FileSystem.writeNew(FileSystem.join(directory, StoreFormat.formatFileName),
                                StoreFormat.formatFileContents(version: StoreFormat.version))
        try SnapshotWriter(directory: directory, logger: logger).writeSnapshot(lsn: lsn, bytes: snapshot.bytes)
        logger.notice("data directory restored from a backup", metadata: [
            "backup": "\(path)", "data_dir": "\(directory)", "lsn": "\(lsn)", "bytes": "\(bytes.count)",
        ])
        return lsn
    }
}
