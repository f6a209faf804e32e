/// The modes of `addWatch` (PROTOCOL.md §11.1), ZooKeeper 3.6's `AddWatchMode`.
public enum WatchMode: UInt8, Sendable, Equatable, CaseIterable {
    /// Every event of the node itself (`created`, `deleted`, `dataChanged`, `childrenChanged`), every time.
    case persistent = 1
    /// `created`, `deleted` and `dataChanged` of the node and every descendant, every time; not
    /// `childrenChanged` (a child's `created` or `deleted` says it), as in ZooKeeper.
    case recursive = 2
}
