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
        try SnapshotWriter.write(lsn: lsn, bytes: bytes, to: FileSystem.join(directory, name), directory: directory)
        logger.info("snapshot written", metadata: [
            "file": "\(name)", "lsn": "\(lsn)", "bytes": "\(bytes.count + StoreFormat.snapshotHeaderBytes)",
        ])
    }

    /// Writes a backup: a snapshot file (same format, same checks) at `path`, outside any data
    /// directory, atomically like a snapshot. Returns its size. `batond --restore` reads it back
    /// (`Store.restore`).
    public static func writeBackup(lsn: LogSequenceNumber, bytes: [UInt8], to path: String) throws -> Int {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        try write(lsn: lsn, bytes: bytes, to: path, directory: directory)
        return bytes.count + StoreFormat.snapshotHeaderBytes
    }

    /// Temporary file beside `finalPath`, fsync, rename, fsync of `directory`.
    private static func write(lsn: LogSequenceNumber, bytes: [UInt8], to finalPath: String, directory: String) throws {
        let temporaryPath = finalPath + StoreFormat.temporarySuffix
        // O_EXCL: a second writer for the same file fails instead of interleaving with the first.
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
    }
}
