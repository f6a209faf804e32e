/// Names one request for the lock manager in the engine: the connection and the request id to answer.
/// The engine's own type, declared here so that the recipe's generic functions that no caller
/// specializes (those the namespace's answers and watches reach: `LockManager.ticketSpecialized`)
/// are specialized for it.
public struct LockTicket: Hashable, Sendable {
    /// The engine's `ConnectionID`.
    public var connection: UInt64
    public var requestID: UInt32
    /// Which part of an `acquireAll` this names (the engine's lock sets); `.whole` for every other request.
    public var part: LockTicketPart

    public init(connection: UInt64, requestID: UInt32, part: LockTicketPart = .whole) {
        self.connection = connection
        self.requestID = requestID
        self.part = part
    }
}

public enum LockTicketPart: Hashable, Sendable {
    case whole
    /// The acquire of the set's lock at this index of the request, in the set's session.
    case setAcquire(Int, session: UInt64)
    /// The sidecar's own release of that lock, after the set failed (its answer goes to nobody).
    case setRelease(Int)
}
