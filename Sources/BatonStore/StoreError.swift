public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `append` was given a payload over `StoreConfiguration.recordBytesMax`. The store stays usable.
    case recordTooLarge(bytes: Int, bytesMax: Int)
    /// The data directory (its FORMAT file, or a file's header) is of a format this build cannot read.
    case unsupportedFormat(path: String, foundVersion: UInt8, readableVersions: ClosedRange<UInt8>)
    /// The FORMAT file exists but does not say which format it is.
    case unreadableFormatFile(path: String)
    /// Log or snapshot files without a FORMAT file: not a directory this build created.
    case missingFormatFile(directory: String)
    case notADirectory(path: String)
    /// Another store (another daemon) has the directory open.
    case directoryLocked(path: String)
    /// The log records from `expectedLSN` on are needed but no segment starts there: a segment in the
    /// middle is missing. A crash cannot cause this (segments are fsynced before the next is created),
    /// so recovery refuses rather than silently dropping the segments after the hole.
    case logGap(directory: String, expectedLSN: LogSequenceNumber, foundFile: String)
    /// Damage that a crash cannot cause: a bad record followed by valid data, a damaged segment
    /// header, a damaged record in a segment that is not the last, a missing last segment, a log
    /// shorter than a clean close left it, or no valid MARKS copy. Recovery refuses and deletes
    /// nothing; `Store.open(repair: true)` (`batond --repair`) cuts the log there instead.
    case corruptDataDirectory(file: String, offset: Int, problem: String)
    /// `pruneBefore` was given a snapshot that is not on disk.
    case snapshotNotFound(lsn: LogSequenceNumber)
    /// A system call failed.
    case io(operation: String, path: String, errno: Int32)
    /// An earlier write or fsync failed; the log's state on disk is unknown (after a failed fsync the
    /// kernel may have dropped the dirty pages), so the store refuses further work. Restart to recover.
    case unusable(cause: String)
    case closed
    /// `Store.restore`: the file is not a whole, intact backup.
    case badBackup(path: String, problem: String)
    /// `Store.restore`: the data directory already holds files.
    case restoreTargetNotEmpty(directory: String, entries: Int)

    public var description: String {
        switch self {
        case let .recordTooLarge(bytes, bytesMax):
            return "log record of \(bytes) bytes exceeds the limit of \(bytesMax) bytes"
        case let .unsupportedFormat(path, found, readable):
            let readableText = readable.lowerBound == readable.upperBound
                ? "format \(readable.lowerBound)" : "formats \(readable.lowerBound) to \(readable.upperBound)"
            if found > readable.upperBound {
                return "\(path) is store format \(found), newer than this batond reads (\(readableText)): "
                    + "run a batond that reads format \(found); this one will not touch the data directory"
            }
            return "\(path) is store format \(found), which this batond cannot read (\(readableText))"
        case let .unreadableFormatFile(path):
            return "\(path) does not name a store format (expected \"baton-store-format N\"); "
                + "restore it, or start batond once with --repair to write it again"
        case let .missingFormatFile(directory):
            return "\(directory) holds log or snapshot files but no FORMAT file: not a data directory this batond created "
                + "(if it is one whose FORMAT was lost, start batond once with --repair to write it again)"
        case let .notADirectory(path):
            return "\(path) exists and is not a directory"
        case let .directoryLocked(path):
            return "\(path) is in use by another batond (its LOCK file is held)"
        case let .logGap(directory, expected, found):
            return "the write-ahead log in \(directory) has a hole: records from LSN \(expected) are needed "
                + "but the next segment is \(found). Restore the missing segment, or start batond once with "
                + "--repair to set \(found) and the segments after it aside and accept losing those records"
        case let .corruptDataDirectory(file, offset, problem):
            return "the data directory is damaged: \(file) at offset \(offset): \(problem). Nothing was changed. "
                + "Restore the file from a backup, or start batond once with --repair to cut the log at the damage "
                + "(the records from there on are lost; fencing tokens and sequence numbers still never go back)"
        case let .snapshotNotFound(lsn):
            return "no snapshot at LSN \(lsn) to prune before"
        case let .io(operation, path, code):
            return "\(operation) \(path): \(FileSystem.describe(errno: code)) (errno \(code))"
        case let .unusable(cause):
            return "the store stopped after an I/O failure (\(cause)); restart to recover from the files"
        case .closed:
            return "the store is closed"
        case let .badBackup(path, problem):
            return "\(path) is not an intact baton backup (\(problem)); nothing was restored"
        case let .restoreTargetNotEmpty(directory, entries):
            return "\(directory) is not empty (\(entries) entries): restore only into an empty or missing data directory"
        }
    }
}
