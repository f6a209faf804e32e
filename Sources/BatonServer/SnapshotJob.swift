import Dispatch

/// A snapshot being written on a background thread; shutdown waits for it before closing the store.
final class SnapshotJob: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)

    func finish() { done.signal() }

    func waitUntilFinished() {
        done.wait()
        done.signal()
    }
}
