import BatonProtocol

/// What the lock manager tells its owner (the engine), in the order it happened.
/// `Ticket` is the owner's name for a request (e.g. connection + request id); the manager never looks inside.
public enum LockEffect<Ticket: Hashable>: Equatable {
    /// The acquire `ticket` is granted: the delayed reply to the acquire request. `hold` names the hold
    /// for the manager: given back with its release (`LockInput.release`), it finds the hold at once.
    case granted(ticket: Ticket, node: String, token: UInt64, hold: LockHold)
    /// The acquire `ticket` (with an owner token) found its owner's hold: the same node and token, counted again.
    case reentered(ticket: Ticket, node: String, token: UInt64, holdCount: UInt32)
    /// The acquire or release `ticket` failed. For a release, the failure may be
    /// `.storageFailure` while the manager keeps retrying the delete on the client's behalf.
    case failed(ticket: Ticket, error: ReplyError)
    /// The release `ticket` is done: the holder's node is gone.
    case released(ticket: Ticket)
    /// A hold ended other than by the holder's own release: tell the session's connection.
    case lost(session: UInt64, node: String, token: UInt64, reason: LockLostReason)
}

/// What moves the lock manager (`LockManager.apply`): the owner's requests and the passing of time.
/// The namespace's answers are the third kind of input, which the manager's own callbacks apply
/// (`NamespaceAnswer`). Each is applied as one step; the manager reads no clock.
public enum LockInput<Ticket: Hashable> {
    /// Starts an acquire; answered by a later `granted`, `reentered` or `failed` effect for `ticket`.
    case acquire(LockRequest, ticket: Ticket, session: UInt64, clientName: String)
    /// Releases the hold (or waiting acquire) of `session` named by its node (full path) and fencing
    /// `token`. Answered `released(ticket)` once the node is gone, `failed(ticket, .notHolder)` if the
    /// session has no such node, `failed(ticket, .lockLost)` if the node is the session's but of a
    /// later acquire (its token differs: node paths repeat when a lock node is deleted and created
    /// again), or `failed(ticket, .storageFailure)` if the store cannot be reached (the manager keeps
    /// retrying). Releasing a node still waiting cancels its acquire (`lockCancelled`).
    /// `hold`: the handle its grant gave (`LockEffect.granted`), if the owner kept it: the node is then
    /// found without a lookup of its lock's path or its name (the path, session and token still decide).
    case release(node: String, token: UInt64, session: UInt64, ticket: Ticket, hold: LockHold? = nil)
    /// Cancels a pending acquire: it fails with `lockCancelled` and its node is deleted.
    case cancel(ticket: Ticket)
    /// The session ended (closed or expired): its pending acquires fail with `sessionExpired`, its
    /// holds end with `lost(sessionExpired)`, and its nodes are deleted (the namespace may have done it
    /// already). Holds with a lock-delay start it here: apply this before the namespace deletes the
    /// session's nodes (the engine does), or a waiter may be granted on seeing the node go, before the delay.
    case sessionEnded(UInt64)
    /// Time passed: wait timeouts, leases and retries that are due run.
    case tick
    /// The owner deleted the node at `path` itself, bypassing the recipe (an operator's forceRelease,
    /// PROTOCOL.md §12.13): what a watch on it would have said. Required of a namespace that
    /// `reportsDeletions` (the manager watches none of its own nodes there); harmless otherwise.
    case nodeDeleted(path: String)
}

/// Every namespace answer and watch event the recipe asks for, with what it needs to find the step
/// that asked. Each step re-finds its waiter by id and checks it is still in the state that asked:
/// answers for waiters that moved on are dropped.
enum NamespaceAnswer {
    /// The immediate answers of the hot path carry their waiter (no lookup by id; `Waiter.forgotten`).
    case created(Waiter, Result<LockCreatedNode, ReplyError>)
    case ensured(WaiterID, path: String, Result<LockCreatedNode, ReplyError>)
    case recoveryListed(WaiterID, Result<[String], ReplyError>)
    case recoveryChecked(WaiterID, path: String, Result<Stat?, ReplyError>)
    case listed(LockState, serial: UInt64, watchGeneration: UInt64?, judging: Set<WaiterID>, everyone: Bool,
                Result<[String], ReplyError>)
    case childrenChanged(LockState, generation: UInt64)
    case permitsRead(WaiterID, Result<[UInt8], ReplyError>)
    /// A node watch was set; `grant`: the read is also that waiter's grant check.
    case watchSet(path: String, generation: UInt64, grant: WaiterID?, Result<Stat?, ReplyError>)
    case watchFired(path: String, generation: UInt64, WatchEventType)
    /// A local waiter's node that others wait behind (`interested`) is gone, over a namespace that
    /// reports deletions (queued by `forget`, as a watch's `.deleted` would be).
    case ownNodeDeleted(path: String, lock: LockState, name: WaiterName, interested: WaiterIDs)
    case grantChecked(Waiter, Result<Stat?, ReplyError>)
    case deleted(Waiter, Result<Void, ReplyError>)
}

/// A hold as the manager knows it (`LockEffect.granted`), for its owner to give back with the release:
/// a reference to the waiter, so a release needs no lookup of the lock's path, the node's name or its
/// sequence. Opaque; two are equal if they name one waiter.
public struct LockHold: Equatable {
    let waiter: Waiter

    init(_ waiter: Waiter) { self.waiter = waiter }

    public static func == (left: LockHold, right: LockHold) -> Bool { left.waiter === right.waiter }
}
