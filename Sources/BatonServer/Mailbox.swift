import BatonEngine
import CLibUV

/// Why a backup could not be written (the store's error, as text).
struct BackupFailure: Error, Sendable {
    let message: String
}

/// What other threads may ask of the loop.
enum LoopMessage: Sendable {
    case stop
    /// The background snapshot writer finished (`failure` nil) or gave up.
    case snapshotFinished(lsn: UInt64, bytes: Int, milliseconds: UInt64, failure: String?)
    /// The backup writer finished: the file's size, or why it failed.
    case backupFinished(BackupRequest, number: Int, lsn: UInt64, result: Result<Int, BackupFailure>)
}

/// The one door into the loop thread: messages plus `uv_async_send`, with the send and the
/// "closed" state under the same lock, so nothing is ever sent to a closed async handle.
final class Mailbox: @unchecked Sendable {
    private let lock = Lock()
    private var messages: [LoopMessage] = []
    private var async: UnsafeMutablePointer<uv_async_t>?
    private var isClosed = false

    /// Called on the loop thread once the async handle is initialized; wakes it for early messages.
    func open(_ handle: UnsafeMutablePointer<uv_async_t>) {
        lock.withLock {
            async = handle
            if !messages.isEmpty { uv_async_send(handle) }
        }
    }

    /// Returns false once the loop no longer listens. Messages posted before `open` wait for it.
    @discardableResult
    func post(_ message: LoopMessage) -> Bool {
        lock.withLock {
            guard !isClosed else { return false }
            messages.append(message)
            if let async { uv_async_send(async) }
            return true
        }
    }

    func take() -> [LoopMessage] {
        lock.withLock {
            defer { messages.removeAll() }
            return messages
        }
    }

    /// Called on the loop thread before the async handle is closed.
    func close() {
        lock.withLock {
            isClosed = true
            async = nil
        }
    }
}
