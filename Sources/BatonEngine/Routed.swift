import BatonLocks
import BatonNamespace
import BatonProtocol

/// Something that happened inside the engine and waits in its one routing queue (`Engine.drain`),
/// so that everything leaves in the order it happened.
enum Routed {
    /// A log record or a fired watch, from the namespace.
    case namespace(NamespaceOutput)
    /// A reply or event the lock manager asked for.
    case lock(LockEffect<LockTicket>)
    /// A frame whose place is after what was queued before it (the `sessionExpired` event).
    case send(ConnectionID, ServerMessage)
}
