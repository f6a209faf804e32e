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

    /// One word for a whole request's ticket (an acquire's, but a lock set's): the connection and the
    /// request id folded into it (equal tickets fold alike). Synthesized, it was three words (the
    /// part's case one), hashed on every entry and removal of a waiting acquire's ticket (the
    /// manager's `tickets`), and again for the entries a removal moves.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(connection &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(requestID))
        if case .whole = part { return }
        hasher.combine(part)
    }
}

public enum LockTicketPart: Hashable, Sendable {
    case whole
    /// The acquire of the set's lock at this index of the request, in the set's session.
    case setAcquire(Int, session: UInt64)
    /// The sidecar's own release of that lock, after the set failed (its answer goes to nobody).
    case setRelease(Int)
}
