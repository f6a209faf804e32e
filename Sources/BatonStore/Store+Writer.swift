/// `batch` with a log writer thread (`LogWriter`): the loop hands each batch over and keeps serving;
/// the server holds every output produced after a record until `committedLSN` reaches it.
extension Store {
    /// From now on `startCommit` hands batches to a writer thread, which calls `notify` (on its
    /// thread) after each one; the loop then calls `finishCommit`. `batch` policy only.
    public func startWriter(notify: @escaping @Sendable () -> Void) {
        precondition(configuration.fsyncPolicy == .batch, "only the batch policy syncs on a writer thread")
        precondition(logWriter == nil, "one writer per store")
        logWriter = LogWriter(notify: notify)
    }

    /// Whether `startCommit` / `finishCommit` are the way to commit (`startWriter` was called).
    public var hasWriter: Bool { logWriter != nil }

    /// True while a batch is being written and synced.
    public var isSyncing: Bool { inFlight != nil }

    /// Every record up to here is as durable as the policy promises (fsynced for `always` and
    /// `batch`, written for `none`): output that depends on nothing later may be sent.
    public var committedLSN: LogSequenceNumber {
        configuration.fsyncPolicy == .none ? writtenLSN : durableLSN
    }

    /// Writes the counter marks if they were raised (on this thread: rare, and they must be durable
    /// before anything produced after them is sent), then, if the writer is idle and records wait,
    /// hands them to it as one batch (the buffers trade places, nothing is copied). True if a batch
    /// was handed over. Throws `unusable` while a failure stands, or a marks write's error.
    @discardableResult
    public func startCommit() throws -> Bool {
        guard let logWriter else { preconditionFailure("startCommit needs startWriter") }
        try checkUsable()
        try performingOrThrow("commit") {
            if let marksToWrite { try writeMarks(marksToWrite) }
        }
        guard inFlight == nil, !pending.isEmpty else { return false }
        guard segmentDescriptor >= 0 else { throw StoreError.closed }
        let batch = LogWriter.Batch(descriptor: segmentDescriptor, bytes: pending, lastLSN: lastLSN,
                                    directory: directory, segmentFirstLSN: segmentFirstLSN)
        pending = spareBuffer
        spareBuffer = []
        inFlight = batch
        logWriter.start(batch)
        return true
    }

    /// If the batch in flight is done, takes its outcome: true if one completed (`committedLSN`
    /// moved), false if none is done. Throws the writer's I/O error (the store then has `failure`,
    /// and the batch's bytes are kept for `retry()`).
    @discardableResult
    public func finishCommit() throws -> Bool {
        guard inFlight != nil, let outcome = logWriter?.takeOutcome(wait: false) else { return false }
        try complete(outcome)
        return true
    }

    /// Waits for the batch in flight, if any, and takes its outcome (throws as `finishCommit`).
    /// Everything that touches the current segment from the loop calls this first.
    func drainWriter() throws {
        guard inFlight != nil, let logWriter else { return }
        let outcome = logWriter.takeOutcome(wait: true)
        try complete(outcome)
    }

    private func complete(_ outcome: LogWriter.Outcome?) throws {
        guard let batch = inFlight else { return }
        inFlight = nil
        switch outcome {
        case .synced(let nanoseconds):
            bytesWritten += UInt64(batch.bytes.count)
            segmentBytes += batch.bytes.count
            trustedBytes = segmentBytes
            writtenLSN = batch.lastLSN
            durableLSN = batch.lastLSN
            fsyncDurations.record(nanoseconds: nanoseconds)
            fsyncCount += 1
            spareBuffer = batch.bytes
            spareBuffer.removeAll(keepingCapacity: true)
        case .failed(let error):
            // Never trust the page cache after a failed write or fsync: `retry()` truncates back to
            // `trustedBytes` and writes these bytes again, then what was appended after them.
            unsynced.append(contentsOf: batch.bytes)
            if failure == nil { recordFailure("commit", error) }
            throw error
        case nil:
            preconditionFailure("a finished batch has an outcome")
        }
    }
}
