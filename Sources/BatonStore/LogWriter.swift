import Dispatch

/// The `batch` policy's log writer: `write(2)` and fsync of one committed batch at a time, on a
/// thread of its own, so that the event loop keeps serving while the disk syncs (as ZooKeeper's
/// SyncRequestProcessor does). Groups form by themselves: records appended while a batch syncs go
/// into the next one, handed over as soon as this one is done.
///
/// The loop thread and the writer share only this hand-off, and only one batch is ever in flight:
/// `start` is called while the writer is idle; the writer touches nothing but the batch it was
/// given (the descriptor and the bytes) and the outcome, which the loop reads after `finished`
/// says it is done (the semaphore orders the accesses). The writer never touches the `Store`.
final class LogWriter: @unchecked Sendable {
    /// One batch: the records from `firstLSN` to `lastLSN`, encoded, for the current segment.
    struct Batch {
        let descriptor: Int32
        let bytes: [UInt8]
        let lastLSN: LogSequenceNumber
        /// For an error message only (built if a write fails, not for every batch).
        let directory: String
        let segmentFirstLSN: LogSequenceNumber

        var path: String { FileSystem.join(directory, StoreFormat.segmentFileName(firstLSN: segmentFirstLSN)) }
    }

    enum Outcome {
        case synced(fsyncNanoseconds: UInt64)
        case failed(any Error)
    }

    private let queue = DispatchQueue(label: "batond-log-writer")
    private let finished = DispatchSemaphore(value: 0)
    /// Written by the writer before `finished` is signalled; read by the loop after it waited on it.
    private var outcome: Outcome?
    /// Called on the writer's thread after each batch (the server wakes its loop with it).
    let notify: @Sendable () -> Void

    init(notify: @escaping @Sendable () -> Void) {
        self.notify = notify
    }

    /// Hands `batch` to the writer. The caller guarantees that no batch is in flight.
    func start(_ batch: Batch) {
        queue.async { [self] in
            let started = LatencyHistogram.now()
            do {
                try FileSystem.writeAll(batch.descriptor, batch.bytes, path: batch.path)
                try FileSystem.sync(batch.descriptor, path: batch.path)
                outcome = .synced(fsyncNanoseconds: LatencyHistogram.now() &- started)
            } catch {
                outcome = .failed(error)
            }
            finished.signal()
            notify()
        }
    }

    /// The in-flight batch's outcome if it is done (`wait` false), or once it is (`wait` true).
    func takeOutcome(wait: Bool) -> Outcome? {
        if wait {
            finished.wait()
        } else if finished.wait(timeout: .now()) == .timedOut {
            return nil
        }
        defer { outcome = nil }
        return outcome
    }
}
