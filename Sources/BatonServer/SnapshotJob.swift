import Dispatch

/// A snapshot being written on a background thread; shutdown waits for it before closing the store.
///
/// The job, not the thread, owns the snapshot, and the loop drops it (`releaseSource`) once the
/// thread is done with it. The snapshot shares nodes with the live namespace (copy-on-write chunks of entries under a hash trie of parents, NodeTree.swift): if the
/// thread dropped the last reference, nodes the loop has replaced since would be freed on the
/// thread while the loop may be reading them. swift-collections' `TreeDictionary` reads a node it
/// has just copied away from (an `assert` in `_UnsafePath.descendToChild`, debug builds), so a
/// debug batond died under the crash test when the snapshot thread freed that node meanwhile.
final class SnapshotJob: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    /// Set on the loop, called on the writer thread, cleared on the loop after the writer is done.
    private var serializer: (@Sendable (_ emit: ([UInt8]) throws -> Void) throws -> Void)?

    /// `serializer` streams the bytes to `emit` in pieces (`NamespaceSnapshot.serialize(pieceBytes:into:)`),
    /// so the writer thread holds one piece at a time, not the whole snapshot.
    init(serializing serializer: @escaping @Sendable (_ emit: ([UInt8]) throws -> Void) throws -> Void) {
        self.serializer = serializer
    }

    /// On the writer thread: streams the bytes to `emit` (a `SnapshotWriter.Payload`), without
    /// keeping a reference to the snapshot past the call.
    func serialize(into emit: ([UInt8]) throws -> Void) throws {
        guard let serializer else { preconditionFailure("the snapshot was released before it was written") }
        try serializer(emit)
    }

    func finish() { done.signal() }

    /// On the loop thread, after the writer reported back: the last reference goes here.
    func releaseSource() { serializer = nil }

    func waitUntilFinished() {
        done.wait()
        done.signal()
    }
}
