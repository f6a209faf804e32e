import BatonProtocol

/// A one-shot watch: called at most once, with what happened to the node (or its children).
public typealias LockWatch = (WatchEventType) -> Void

/// A created node as the namespace reports it: the full path (with the sequence suffix) and its stat.
public struct LockCreatedNode: Sendable, Equatable {
    public var path: String
    public var stat: Stat
    /// The parent's (the lock node's) creation transaction when the node was created, or nil if the
    /// namespace cannot tell. It tells the recipe whether the lock node is the one it knows: a lock node
    /// deleted and created again restarts its sequence numbers, so the recipe's queue of it is void.
    public var parentCreatedTransaction: UInt64?
    public init(path: String, stat: Stat, parentCreatedTransaction: UInt64? = nil) {
        self.path = path
        self.stat = stat
        self.parentCreatedTransaction = parentCreatedTransaction
    }
}

/// The few namespace operations the lock recipe needs. The embedded namespace answers at once; a
/// ZooKeeper-backed one answers later from its completion thread (hopped onto the event loop first).
///
/// Contract, modelled on ZooKeeper's so the C client can implement it directly:
/// - Every completion runs exactly once, either before the call returns or later, always on the
///   thread that drives the `LockManager`. A watch runs at most once, on that thread too.
/// - Requests are served in the order they were made, and a watch event is delivered after the reply
///   of the request that set it and before the reply of any request served after the change
///   (ZooKeeper's ordering guarantee). The recipe relies on this and on nothing else about timing.
/// - Errors are `ReplyError`s. `.storageFailure` means "the store could not be reached: the operation
///   may or may not have happened" (ZooKeeper's connection loss and operation timeout); the recipe
///   retries those. Other codes are definitive (`.noNode`, `.nodeExists`, ...).
/// - `Stat.ephemeralOwner` is reported in the same terms as the `owner` passed to `create`. (A ZooKeeper
///   adapter that multiplexes clients onto one ZooKeeper session reports the client session named in
///   the waiter node's name when the node's ZooKeeper owner is its current ZooKeeper session, else 0.)
public protocol LockNamespace: AnyObject {
    /// Creates a node. With a sequential mode the namespace appends the 10-digit sequence to `path`.
    /// `owner` is the session that owns an ephemeral node (ignored for other kinds).
    func create(path: String, data: [UInt8], mode: CreateMode, owner: UInt64,
                completion: @escaping (Result<LockCreatedNode, ReplyError>) -> Void)

    /// The names (last path components) of `path`'s children, in any order; optionally sets a
    /// children watch (fires on the next change of the child list or when `path` is deleted).
    func children(path: String, watch: LockWatch?,
                  completion: @escaping (Result<[String], ReplyError>) -> Void)

    /// The node's stat, or nil if it does not exist; optionally sets a watch that fires when the node
    /// is deleted or changed. The recipe treats nil as "gone" and never waits for a creation, so a
    /// namespace may drop a watch set on a missing node (the embedded adapter does, to not leak it).
    func exists(path: String, watch: LockWatch?,
                completion: @escaping (Result<Stat?, ReplyError>) -> Void)

    /// The node's data.
    func getData(path: String, completion: @escaping (Result<[UInt8], ReplyError>) -> Void)

    /// Deletes a node if its version matches (`anyVersion` matches all).
    func delete(path: String, expectedVersion: Int32,
                completion: @escaping (Result<Void, ReplyError>) -> Void)

    /// True if the manager's own nodes (its waiters' and holders') are never deleted behind its back
    /// untold: the only deletions are the manager's own, those of a session's end (which the manager
    /// hears of first, `LockInput.sessionEnded`), and those its owner reports with
    /// `LockInput.nodeDeleted`. The manager then sets no watch on its own nodes (a waiter behind
    /// one is told by the manager when it goes) and reads none at a grant. The embedded
    /// namespace: yes (no client request may delete a waiter node, PROTOCOL.md §12.1). ZooKeeper: no
    /// (a client outside the sidecar may). Defaults to false.
    var reportsDeletions: Bool { get }
}

extension LockNamespace {
    public var reportsDeletions: Bool { false }
}

/// A `LockNamespace` that answers every call before it returns (the embedded namespace). The recipe's
/// hot calls (the waiter node's create, the delete) then go through these plain
/// calls instead of a completion closure each; the answers are still applied after the step that
/// asked, in the order asked, exactly as `LockNamespace`'s immediate completions are.
public protocol ImmediateLockNamespace: LockNamespace {
    func create(path: String, data: [UInt8], mode: CreateMode, owner: UInt64) -> Result<LockCreatedNode, ReplyError>
    func delete(path: String, expectedVersion: Int32) -> Result<Void, ReplyError>
}
