/// What `Store.open` found: the state to rebuild the namespace from.
public struct Recovery: Sendable, Equatable {
    /// The newest valid snapshot, or nil (start from an empty namespace).
    public var snapshot: RecoveredSnapshot?
    /// Every record after the snapshot, in LSN order, without gaps.
    public var records: [RecoveredRecord]
    /// The LSN the next `append` returns.
    public var nextLSN: LogSequenceNumber
    /// Set when the log ended in a torn or corrupt record and was cut there.
    public var truncation: LogTruncation?
    /// Snapshot files that failed their checks, newest first; each was renamed to `<name>.corrupt`.
    public var corruptSnapshots: [String]
    /// The counter marks from the MARKS files: the namespace's counters must restart at or above them.
    public var marks: CounterMarks = CounterMarks()
    /// What `--repair` dropped (empty without damage): acknowledged records may be among them.
    public var repairs: [String] = []

    /// True when records that may have been acknowledged were dropped: then every sequence counter,
    /// not only the transaction counter, restarts at its mark (`marks.sequences`).
    public var lostRecords: Bool { !repairs.isEmpty }
}

public struct RecoveredSnapshot: Sendable, Equatable {
    /// The snapshot holds the state after every record up to and including this LSN.
    public var lsn: LogSequenceNumber
    public var bytes: [UInt8]
}

public struct RecoveredRecord: Sendable, Equatable {
    public var lsn: LogSequenceNumber
    public var payload: [UInt8]
}

/// Where recovery cut the log, and why.
public struct LogTruncation: Sendable, Equatable {
    public enum Reason: String, Sendable, Equatable {
        /// The file ends inside a record header or payload: a write the crash interrupted.
        case tornRecord
        /// The rest of the file is zero bytes (preallocated or never written blocks).
        case zeroFilled
        /// A whole record is present but its CRC does not match.
        case checksumMismatch
        /// A record's length is beyond `StoreFormat.recordPayloadBytesLimit`.
        case lengthOutOfRange
        /// A record's LSN is not the one after its predecessor.
        case sequenceMismatch
        /// The segment's header is short, has the wrong magic, or fails its CRC: the file was removed.
        case badSegmentHeader
    }

    public var fileName: String
    /// Byte offset in `fileName` where the log now ends (0 and the file removed for `badSegmentHeader`).
    public var offset: Int
    public var reason: Reason
    /// Bytes cut from `fileName`.
    public var discardedBytes: Int
    /// Later segments deleted because they came after the cut.
    public var deletedSegments: [String]
}
