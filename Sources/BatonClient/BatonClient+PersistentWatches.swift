import BatonProtocol

extension Calls {
    static func addWatch(_ path: String, mode: WatchMode) -> Call<Void> {
        Call(request: .addWatch(path: path, mode: mode)) { body in if case .empty = body { return () } else { return nil } }
    }

    static func removeWatches(_ path: String, mode: WatchMode) -> Call<Void> {
        Call(request: .removeWatches(path: path, mode: mode)) { body in if case .empty = body { return () } else { return nil } }
    }
}

extension WatchMode {
    /// Whether an event about `eventPath` belongs to a watch of this mode on `watched` (the server
    /// names events as the watch was spelled, so bytes compare, PROTOCOL.md §11).
    func covers(_ eventPath: String, watched: String) -> Bool {
        let event = Array(eventPath.utf8), base = Array(watched.utf8)
        if event == base { return true }
        guard self == .recursive else { return false }
        if base == Array(NodePath.root.utf8) { return true }
        return event.count > base.count && event.starts(with: base) && event[base.count] == UInt8(ascii: "/")
    }
}

extension BatonClient {
    /// Registers a watch that stays after it fires (PROTOCOL.md §11.1): `.persistent` hears every
    /// event of `path`, `.recursive` the created/deleted/dataChanged events of `path` and its
    /// subtree. Events also go to `events()`, in order with every other event.
    public func addWatch(_ path: String, mode: WatchMode) async throws(BatonError) {
        try await perform(Calls.addWatch(path, mode: mode))
    }

    /// Removes the session's watch of `mode` on `path` (`noWatch` if there is none).
    public func removeWatch(_ path: String, mode: WatchMode) async throws(BatonError) {
        try await perform(Calls.removeWatches(path, mode: mode))
    }

    /// Registers a persistent (or recursive) watch and returns its events as a stream, from the
    /// registration on. The stream is subscribed before the request is sent, so no event is missed;
    /// it finishes when the connection closes. Ending the stream does not remove the watch
    /// (`removeWatch` does).
    public func watchEvents(_ path: String, mode: WatchMode) async throws(BatonError) -> AsyncStream<WatchEvent> {
        let events = connection.events()
        try await addWatch(path, mode: mode)
        return AsyncStream { continuation in
            let task = Task {
                for await event in events {
                    if case .watch(let type, let eventPath) = event, mode.covers(eventPath, watched: path) {
                        continuation.yield(WatchEvent(type: type, path: eventPath))
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}

extension BlockingClient {
    /// `BatonClient.addWatch`, blocking.
    public func addWatch(_ path: String, mode: WatchMode) throws(BatonError) {
        try perform(Calls.addWatch(path, mode: mode))
    }

    /// `BatonClient.removeWatch`, blocking.
    public func removeWatch(_ path: String, mode: WatchMode) throws(BatonError) {
        try perform(Calls.removeWatches(path, mode: mode))
    }
}
