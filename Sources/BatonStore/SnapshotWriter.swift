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

    /// Produces a snapshot's payload in pieces, handing each to `emit` (which writes it to the file
    /// and may throw); a piece is not kept after `emit` returns, so the writer holds one piece at a
    /// time, never the whole payload (a million nodes' payload is ~110 MB).
    public typealias Payload = (_ emit: ([UInt8]) throws -> Void) throws -> Void

    /// Writes `snapshot-<lsn>.snap` atomically: temporary file, fsync, rename, fsync of the
    /// directory. `payload` streams the namespace's state after every record up to and including
    /// `lsn`. Once this returns the snapshot survives power failure; until then the previous one
    /// stands. Returns the file's size.
    @discardableResult
    public func writeSnapshot(lsn: LogSequenceNumber, payload: Payload) throws -> Int {
        let name = StoreFormat.snapshotFileName(lsn: lsn)
        let size = try SnapshotWriter.write(lsn: lsn, payload: payload, to: FileSystem.join(directory, name), directory: directory)
        logger.info("snapshot written", metadata: ["file": "\(name)", "lsn": "\(lsn)", "bytes": "\(size)"])
        return size
    }

    /// `writeSnapshot` of a payload already in memory.
    @discardableResult
    public func writeSnapshot(lsn: LogSequenceNumber, bytes: [UInt8]) throws -> Int {
        try writeSnapshot(lsn: lsn) { emit in try emit(bytes) }
    }

    /// Writes a backup: a snapshot file (same format, same checks) at `path`, outside any data
    /// directory, atomically like a snapshot. Returns its size. `batond --restore` reads it back
    /// (`Store.restore`).
    public static func writeBackup(lsn: LogSequenceNumber, to path: String, payload: Payload) throws -> Int {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        return try write(lsn: lsn, payload: payload, to: path, directory: directory)
    }

    /// Temporary file beside `finalPath`, the payload streamed, the header, fsync, rename, fsync of
    /// `directory`. The header (length and CRC) is known only at the end: the file starts with zeros
    /// in its place and gets it just before the fsync. A crash before the rename leaves only the
    /// `.tmp`, which is never read as a snapshot (removed at the next open). Returns the file's size.
    private static func write(lsn: LogSequenceNumber, payload: Payload, to finalPath: String, directory: String) throws -> Int {
        let temporaryPath = finalPath + StoreFormat.temporarySuffix
        // O_EXCL: a second writer for the same file fails instead of interleaving with the first.
        let descriptor = try FileSystem.open(temporaryPath, flags: O_WRONLY | O_CREAT | O_EXCL)
        var length: UInt64 = 0
        do {
            try FileSystem.writeAll(descriptor, [UInt8](repeating: 0, count: StoreFormat.snapshotHeaderBytes), path: temporaryPath)
            var checksum: UInt32 = 0
            try payload { piece in
                checksum = StoreFormat.checksum(piece[...], seed: checksum)
                length += UInt64(piece.count)
                try FileSystem.writeAll(descriptor, piece, path: temporaryPath)
            }
            let header = StoreFormat.snapshotHeader(lsn: lsn, payloadLength: length, payloadChecksum: checksum)
            try FileSystem.writeAll(descriptor, header, at: 0, path: temporaryPath)
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
        return Int(length) + StoreFormat.snapshotHeaderBytes
    }
}
