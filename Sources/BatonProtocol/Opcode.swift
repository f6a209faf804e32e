/// Request opcodes. The byte values are the wire contract (Proto/PROTOCOL.md): never reuse one.
public enum Opcode: UInt8, Sendable, CaseIterable {
    case hello = 0x01
    case openSession = 0x02
    case resumeSession = 0x03
    case closeSession = 0x04
    case ping = 0x05
    case authenticate = 0x06

    case create = 0x10
    case delete = 0x11
    case exists = 0x12
    case get = 0x13
    case set = 0x14
    case children = 0x15
    case check = 0x16
    case multi = 0x17
    /// Registers a persistent or persistent-recursive watch (PROTOCOL.md §11.1).
    case addWatch = 0x18
    /// Removes one (PROTOCOL.md §11.1).
    case removeWatches = 0x19

    case acquire = 0x20
    case release = 0x21
    case cancel = 0x22
    case checkToken = 0x23
    case inspect = 0x24
    /// `acquire` naming an owner token: reentrant (PROTOCOL.md §12.9).
    case acquireOwned = 0x25
    /// Extends a held lease (PROTOCOL.md §12.5).
    case renew = 0x26
    /// Asks the holders of a lock to give it up (PROTOCOL.md §12.11).
    case requestRevocation = 0x27
    /// Acquires several locks, all or none (PROTOCOL.md §12.14).
    case acquireAll = 0x28
    /// Ends another session's hold or wait of a lock; needs the `admin` permission (PROTOCOL.md §12.13).
    case forceRelease = 0x2A

    case backup = 0x30
}

/// Server frame kinds: the first byte of every frame the server sends.
public enum ServerFrameKind: UInt8, Sendable {
    case reply = 0x01
    case event = 0x02
}

/// Kinds of server-pushed events.
public enum EventKind: UInt8, Sendable, CaseIterable {
    case watch = 0x01
    case lockLost = 0x02
    case lockSuspended = 0x03
    case sessionExpired = 0x04
    /// Only to holds acquired revocable (an opt-in inside version 1, PROTOCOL.md §3.3, §12.11).
    case revocationRequested = 0x05
    /// Only to sessions opened with the `resumedEvents` flag (an opt-in inside version 1, PROTOCOL.md §3.3, §12.8).
    case lockResumed = 0x06
}
