import BatonProtocol

extension Engine {
    /// Requests the store cannot serve (PROTOCOL.md §16): the ZooKeeper C client this daemon links
    /// has no `addWatch` (3.6's persistent watches), and emulating one with re-armed one-shot watches
    /// would lose the changes made between a firing and the re-arm, so it is refused by name.
    func storeRefusal(_ request: Request) -> ReplyError? {
        guard backendState.backend != nil else { return nil }
        switch request {
        case .addWatch, .removeWatches:
            return ReplyError(.unsupportedByStore, "persistent and recursive watches need the embedded store")
        default:
            return nil
        }
    }
}
