#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging

/// Writes snapshot files. A value, safe to hand to a background thread: it touches only its own
/// temporary file and the final snapshot name, never the log (docs/STORAGE.md, "Concurrency").
/// Run at most one `writeSnapshot` at a time per data directory.
public struct SnapshotWriter: Sendable {
    public let directory: String
    let logger: Logger

    init(directory: String, logger: Logger) {
        self.directory = directory
        self.logger = logger
    }

    /// Writes `snapshot-<lsn>.snap` atomically: temporary file, fsync, rename, fsync of the
    /// directory. `bytes` is the namespace's state after every record up to and including `lsn`.
    /// Once this returns the snapshot survives power failure; until then the previous one stands.
    public func writeSnapshot(lsn: LogSequenceNumber, bytes: [UInt8]) throws {
        let name = StoreFormat.snapshotFileName(lsn: lsn)
        let finalPath = FileSystem.join(directory, name)
        let temporaryPath = finalPath + StoreFormat.temporarySuffix
        // O_EXCL: a second writer for the same LSN fails instead of interleaving with the first.
        let descriptor = try FileSystem.open(temporaryPath, flags: O_WRONLY | O_CREAT | O_EXCL)
        do {
            try FileSystem.writeAll(descriptor, StoreFormat.snapshotHeader(lsn: lsn, payload: bytes), path: temporaryPath)
            try FileSystem.writeAll(descriptor, bytes, path: temporaryPath)
            try FileSystem.sync(descriptor, path: temporaryPath)
            FileSystem.close(descriptor)
        } catch {
            FileSystem.close(descriptor)
            try? FileSystem.remove(temporaryPath)
            throw error
        }
        do {
            try FileSystem.rename(temporaryPath, to: finalPath)
        } catch {
            try? FileSystem.remove(temporaryPath)
            throw error
        }
        try FileSystem.syncDirectory(directory)
        logger.info("snapshot written", metadata: [
            "file": "\(name)", "lsn": "\(lsn)", "bytes": "\(bytes.count + StoreFormat.snapshotHeaderBytes)",
        ])
    }
}
