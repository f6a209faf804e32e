import BatonProtocol

/// What the lock manager tells its owner (the engine), in the order it happened.
/// `Ticket` is the owner's name for a request (e.g. connection + request id); the manager never looks inside.
public enum LockEffect<Ticket: Hashable>: Equatable {
    /// The acquire `ticket` is granted: the delayed reply to the acquire request.
    case granted(ticket: Ticket, node: String, token: UInt64)
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
