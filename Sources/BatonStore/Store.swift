#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging

/// The write-ahead log and the snapshots of one data directory (docs/STORAGE.md).
///
/// Threading: a `Store` belongs to one thread, the event loop's: `append`, `commit`, `pruneBefore`,
/// `metrics` and `close` are called there only (the type is not `Sendable`, so the compiler holds
/// callers to it). Snapshot files are written through `snapshotWriter`, a `Sendable` value that may
/// run on a background thread while the loop keeps appending: it never touches a log segment, and
/// `pruneBefore` never touches a snapshot newer than the ones it keeps nor any temporary file.
public final class Store {
    public let directory: String
    public let configuration: StoreConfiguration
    /// Hand this to a background thread to write snapshots; one write at a time.
    public let snapshotWriter: SnapshotWriter
    let logger: Logger

    /// Held for the life of the store: a second daemon on the same directory fails to open it.
    var lockDescriptor: Int32
    /// The segment being appended to; -1 before recovery has set one up and after `close`.
    var segmentDescriptor: Int32 = -1
    var segmentFirstLSN: LogSequenceNumber = 0
    /// Bytes of the current segment on disk (header included, buffered bytes not).
    var segmentBytes = 0
    /// Records in the current segment, buffered ones included.
    var segmentRecordCount = 0
    /// First LSNs of the older segments still on disk, ascending.
    var closedSegmentFirstLSNs: [LogSequenceNumber] = []
    /// Encoded records appended since the last write, with `batch` and `none`.
    var pending: [UInt8] = []
    /// Offset in the current segment up to which the file is trusted: fsynced (`always`, `batch`)
    /// or completely written (`none`). A retry after a failure truncates the file back to it.
    var trustedBytes = 0
    /// Bytes written after `trustedBytes` and not yet fsynced (`always`, `batch`): a retry writes
    /// them again rather than trusting the page cache after a failed fsync.
    var unsynced: [UInt8] = []

    /// The last LSN assigned; `append` returns the one after it.
    public internal(set) var lastLSN: LogSequenceNumber = 0
    /// The last LSN handed to the kernel.
    var writtenLSN: LogSequenceNumber = 0
    /// The last LSN known to be on stable storage.
    public internal(set) var durableLSN: LogSequenceNumber = 0

    /// The MARKS files as last written (docs/STORAGE.md, "Marks").
    var marks = MarksFile(generation: 0, counters: CounterMarks(), lastSegmentFirstLSN: 0, cleanEndLSN: nil)
    /// Marks that must reach the disk before the next commit succeeds (a failed write is retried).
    var marksToWrite: MarksFile?

    var bytesWritten: UInt64 = 0
    var fsyncCount: UInt64 = 0
    var fsyncDurations = LatencyHistogram(boundsNanoseconds: LatencyHistogram.serviceBounds)
    var recordsAppended: UInt64 = 0

    /// Set by a failed write or fsync until `retry()` succeeds: appends are still buffered (the
    /// caller decides whether to make more), `commit()` throws `unusable`.
    public internal(set) var failure: StoreFailure?
    var isClosed = false

    init(directory: String, configuration: StoreConfiguration, logger: Logger, lockDescriptor: Int32) {
        self.directory = directory
        self.configuration = configuration
        self.logger = logger
        self.lockDescriptor = lockDescriptor
        self.snapshotWriter = SnapshotWriter(directory: directory, logger: logger)
        pending.reserveCapacity(configuration.writeBufferBytesMax)
    }

    deinit {
        // Without `close()`, buffered records are dropped: they were never acknowledged.
        releaseDescriptors()
    }

    // MARK: Appending

    /// Assigns the next LSN to `payload` and buffers it. With `.always` the record is written and
    /// fsynced before this returns; otherwise it is durable once `commit()` returns (`.batch`).
    /// Throws only for a record over the limit or a closed store: an I/O failure while appending
    /// keeps the record (it is written by `retry()`) and sets `failure`, so `commit()` throws.
    @discardableResult
    public func append(_ payload: [UInt8]) throws -> LogSequenceNumber {
        if isClosed { throw StoreError.closed }
        guard payload.count <= configuration.recordBytesMax else {
            throw StoreError.recordTooLarge(bytes: payload.count, bytesMax: configuration.recordBytesMax)
        }
        let lsn = lastLSN + 1
        let recordBytes = StoreFormat.recordHeaderBytes + payload.count
        if failure == nil && segmentDescriptor >= 0 && segmentRecordCount > 0
            && segmentBytes + pending.count + recordBytes > configuration.segmentBytesMax {
            performing("append") { try rollSegment(firstLSN: lsn) }
        }
        StoreFormat.appendRecord(lsn: lsn, payload: payload, to: &pending)
        lastLSN = lsn
        segmentRecordCount += 1
        recordsAppended += 1
        guard failure == nil else { return lsn }
        switch configuration.fsyncPolicy {
        case .always:
            performing("append") {
                try writePending()
                try syncSegment()
            }
        case .batch, .none:
            if pending.count >= configuration.writeBufferBytesMax { performing("append") { try writePending() } }
        }
        return lsn
    }

    /// Ends a batch: writes what was appended since the last commit and, with `.batch`, fsyncs it
    /// once (nothing to do if nothing was appended). Send the replies that depend on those records
    /// only after this returns. With `.always` there is nothing left to do; with `.none` the writes
    /// reach the kernel (they survive the process dying, not the machine). Throws `unusable` while
    /// a failure stands (call `retry()`), or the I/O error that caused a new one.
    public func commit() throws {
        try checkUsable()
        try performingOrThrow("commit") {
            if let marksToWrite { try writeMarks(marksToWrite) }
            try writePending()
            if configuration.fsyncPolicy != .none && durableLSN < writtenLSN {
                try syncSegment()
            }
        }
    }

    /// After a failure: truncates the segment back to what is trusted, writes everything after it
    /// again from memory (never trusting the page cache after a failed fsync), fsyncs, and writes
    /// the marks still owed. On success the store is usable again and every record appended so far
    /// is as durable as `commit()` makes it; on failure nothing changed and it may be called again.
    public func retry() throws {
        if isClosed { throw StoreError.closed }
        guard failure != nil else { return }
        do {
            if segmentDescriptor < 0 {
                // A roll failed after closing the old segment: start the new one again.
                let records = segmentRecordCount
                try FileSystem.remove(segmentPath)
                try createSegment(firstLSN: segmentFirstLSN)
                segmentRecordCount = records
            }
            try FileSystem.truncate(segmentDescriptor, length: trustedBytes, path: segmentPath)
            segmentBytes = trustedBytes
            pending = unsynced + pending
            unsynced.removeAll()
            if configuration.fsyncPolicy != .none { writtenLSN = durableLSN }
            if let marksToWrite { try writeMarks(marksToWrite) }
            try writePending()
            if configuration.fsyncPolicy != .none { try syncSegment() }
        } catch {
            failure = StoreFailure(operation: "retry", error: error)
            throw error
        }
        logger.notice("write-ahead log writable again", metadata: ["last_lsn": "\(lastLSN)"])
        failure = nil
    }

    /// Raises the counter marks on disk if `counters` has one above them. The write happens in the
    /// next `commit()` (or `retry()`), before it returns, so no reply that carries a value beyond
    /// the old marks is sent before the new ones are durable.
    public func raiseMarks(_ counters: CounterMarks) {
        let current = (marksToWrite ?? marks).counters
        guard current.isBelow(counters) else { return }
        var next = marksToWrite ?? marks
        next.counters = current.merged(with: counters)
        marksToWrite = next
    }

    /// The counter marks as they stand (or will stand after the next commit).
    public var counterMarks: CounterMarks { (marksToWrite ?? marks).counters }

    /// Writes and fsyncs what is buffered (whatever the policy: a clean shutdown loses nothing),
    /// then releases the files and the directory lock. Idempotent.
    public func close() throws {
        guard !isClosed else { return }
        defer {
            releaseDescriptors()
            isClosed = true
        }
        guard failure == nil else { return }
        try performingOrThrow("close") {
            try writePending()
            if durableLSN < writtenLSN { try syncSegment() }
            // The log ends here: a later open that finds it shorter refuses (docs/STORAGE.md, "Marks").
            var closing = marksToWrite ?? marks
            closing.cleanEndLSN = lastLSN
            try writeMarks(closing)
        }
    }

    /// True when `commit()` has work: records appended that are not yet as far as the policy
    /// takes them (fsynced for `.always` and `.batch`, written for `.none`). The server holds the
    /// replies that depend on those records until `commit()` returns.
    public var needsCommit: Bool {
        if marksToWrite != nil { return true }
        switch configuration.fsyncPolicy {
        case .always, .batch: return durableLSN < lastLSN
        case .none: return writtenLSN < lastLSN
        }
    }

    public var metrics: StoreMetrics {
        var metrics = StoreMetrics()
        metrics.bytesWritten = bytesWritten
        metrics.fsyncCount = fsyncCount
        metrics.fsyncDurations = fsyncDurations
        metrics.recordsAppended = recordsAppended
        metrics.segmentFileName = StoreFormat.segmentFileName(firstLSN: segmentFirstLSN)
        metrics.segmentFirstLSN = segmentFirstLSN
        metrics.segmentBytes = UInt64(segmentBytes)
        metrics.segmentCount = closedSegmentFirstLSNs.count + 1
        metrics.lastLSN = lastLSN
        metrics.writtenLSN = writtenLSN
        metrics.durableLSN = durableLSN
        return metrics
    }

    // MARK: Pruning

    /// What `pruneBefore` deleted.
    public struct PruneOutcome: Sendable, Equatable {
        public var deletedSegments: [String] = []
        public var deletedSnapshots: [String] = []
    }

    /// Call on the loop thread after `snapshotWriter.writeSnapshot(lsn: snapshotLSN, ...)` returned.
    /// Keeps the `snapshotsKept` newest snapshots and deletes older ones; then deletes the segments
    /// whose every record is covered by the *oldest kept* snapshot, so that if the newest snapshot
    /// turns out corrupt, recovery still has the log from the one before it. With fewer than
    /// `snapshotsKept` snapshots on disk no segment is deleted. Never deletes the current segment.
    @discardableResult
    public func pruneBefore(snapshotLSN: LogSequenceNumber) throws -> PruneOutcome {
        try checkUsable()
        let names = try FileSystem.listDirectory(directory)
        let snapshotLSNs = names.compactMap(StoreFormat.parseSnapshotFileName).sorted(by: >)
        guard snapshotLSNs.contains(snapshotLSN) else { throw StoreError.snapshotNotFound(lsn: snapshotLSN) }
        var outcome = PruneOutcome()
        let kept = snapshotLSNs.prefix(configuration.snapshotsKept)
        for lsn in snapshotLSNs.dropFirst(configuration.snapshotsKept) {
            let name = StoreFormat.snapshotFileName(lsn: lsn)
            try FileSystem.remove(FileSystem.join(directory, name))
            outcome.deletedSnapshots.append(name)
        }
        if kept.count == configuration.snapshotsKept, let coveredLSN = kept.last {
            // Segment i holds LSNs from its first up to the next segment's first minus one.
            while let oldest = closedSegmentFirstLSNs.first {
                let successorFirstLSN = closedSegmentFirstLSNs.count > 1 ? closedSegmentFirstLSNs[1] : segmentFirstLSN
                guard successorFirstLSN <= coveredLSN + 1 else { break }
                let name = StoreFormat.segmentFileName(firstLSN: oldest)
                try FileSystem.remove(FileSystem.join(directory, name))
                closedSegmentFirstLSNs.removeFirst()
                outcome.deletedSegments.append(name)
            }
        }
        // No directory fsync: a deletion undone by a power failure leaves only files that are
        // already covered, which recovery skips and the next prune deletes again.
        if !outcome.deletedSegments.isEmpty || !outcome.deletedSnapshots.isEmpty {
            logger.info("pruned the data directory", metadata: [
                "snapshot_lsn": "\(snapshotLSN)",
                "deleted_segments": "\(outcome.deletedSegments.count)",
                "deleted_snapshots": "\(outcome.deletedSnapshots.count)",
            ])
        }
        return outcome
    }

    // MARK: Internals

    func checkUsable() throws {
        if isClosed { throw StoreError.closed }
        if let failure { throw StoreError.unusable(cause: failure.description) }
    }

    /// Runs `body`; an I/O failure in it sets `failure` (cleared by `retry()`).
    func performing(_ operation: String, _ body: () throws -> Void) {
        do {
            try body()
        } catch {
            recordFailure(operation, error)
        }
    }

    func performingOrThrow(_ operation: String, _ body: () throws -> Void) throws {
        do {
            try body()
        } catch {
            recordFailure(operation, error)
            throw error
        }
    }

    private func recordFailure(_ operation: String, _ error: any Error) {
        failure = StoreFailure(operation: operation, error: error)
        logger.error("write-ahead log write failed; appends are kept in memory until a retry succeeds",
                     metadata: ["operation": "\(operation)", "error": "\(error)"])
    }

    func writePending() throws {
        guard !pending.isEmpty else { return }
        guard segmentDescriptor >= 0 else { throw StoreError.closed }
        try FileSystem.writeAll(segmentDescriptor, pending, path: segmentPath)
        bytesWritten += UInt64(pending.count)
        segmentBytes += pending.count
        writtenLSN = lastLSN
        if configuration.fsyncPolicy == .none {
            trustedBytes = segmentBytes
            pending.removeAll(keepingCapacity: true)
        } else if unsynced.isEmpty {
            // The usual case (one write per commit): the buffers trade places instead of copying.
            swap(&unsynced, &pending)
        } else {
            unsynced.append(contentsOf: pending)
            pending.removeAll(keepingCapacity: true)
        }
    }

    func syncSegment() throws {
        let started = LatencyHistogram.now()
        try FileSystem.sync(segmentDescriptor, dataOnly: true, path: segmentPath)
        fsyncDurations.record(nanoseconds: LatencyHistogram.now() - started)
        fsyncCount += 1
        durableLSN = writtenLSN
        trustedBytes = segmentBytes
        unsynced.removeAll(keepingCapacity: true)
    }

    func syncDirectory() throws {
        let started = LatencyHistogram.now()
        try FileSystem.syncDirectory(directory)
        fsyncDurations.record(nanoseconds: LatencyHistogram.now() - started)
        fsyncCount += 1
    }

    var segmentPath: String {
        FileSystem.join(directory, StoreFormat.segmentFileName(firstLSN: segmentFirstLSN))
    }

    /// Closes the current segment and starts the next. The old one is fsynced first whatever the
    /// policy, so a segment boundary is always clean on disk: a hole between segments can then only
    /// mean a lost file, never a crash (recovery refuses it, `StoreError.logGap`).
    func rollSegment(firstLSN: LogSequenceNumber) throws {
        try writePending()
        if durableLSN < writtenLSN || !unsynced.isEmpty { try syncSegment() }
        FileSystem.close(segmentDescriptor)
        segmentDescriptor = -1
        closedSegmentFirstLSNs.append(segmentFirstLSN)
        segmentFirstLSN = firstLSN
        segmentBytes = 0
        trustedBytes = 0
        segmentRecordCount = 0
        try createSegment(firstLSN: firstLSN)
    }

    /// Creates and opens a new segment holding just its header, fsyncs it and the directory (under
    /// every policy: a roll is rare), then records it in the MARKS files, so that losing it later
    /// is noticed. On failure the partial file is removed and no segment is open (`retry()`).
    func createSegment(firstLSN: LogSequenceNumber) throws {
        let path = FileSystem.join(directory, StoreFormat.segmentFileName(firstLSN: firstLSN))
        segmentFirstLSN = firstLSN
        segmentBytes = 0
        trustedBytes = 0
        segmentRecordCount = 0
        let descriptor = try FileSystem.open(path, flags: O_WRONLY | O_CREAT | O_EXCL | O_APPEND, mode: 0o600)
        do {
            let header = StoreFormat.segmentHeader(firstLSN: firstLSN)
            try FileSystem.writeAll(descriptor, header, path: path)
            bytesWritten += UInt64(header.count)
            try FileSystem.sync(descriptor, path: path)
            fsyncCount += 1
            try syncDirectory()
            var next = marksToWrite ?? marks
            next.lastSegmentFirstLSN = firstLSN
            next.cleanEndLSN = nil
            try writeMarks(next)
            segmentBytes = header.count
            trustedBytes = header.count
        } catch {
            FileSystem.close(descriptor)
            try? FileSystem.remove(path)
            throw error
        }
        segmentDescriptor = descriptor
        logger.debug("log segment started", metadata: ["file": "\(StoreFormat.segmentFileName(firstLSN: firstLSN))"])
    }

    func releaseDescriptors() {
        if segmentDescriptor >= 0 {
            FileSystem.close(segmentDescriptor)
            segmentDescriptor = -1
        }
        if lockDescriptor >= 0 {
            FileSystem.close(lockDescriptor)
            lockDescriptor = -1
        }
    }
}
