import BatonProtocol

/// The name of a waiter node: `<marker>-<16 hex digits of the owner session>-<10-digit sequence>`, e.g.
/// `x-00000000000000a1-0000000041`. The marker says the kind, so every waiter can judge its entitlement
/// from the child list alone; the session lets a sidecar find its own node again after a create whose
/// reply was lost. Waiters are ordered by the sequence alone.
public struct WaiterName: Sendable, Equatable, Hashable, Comparable {
    public var kind: LockKind
    public var session: UInt64
    public var sequence: UInt64

    public init(kind: LockKind, session: UInt64, sequence: UInt64) {
        self.kind = kind
        self.session = session
        self.sequence = sequence
    }

    /// Queue order: by sequence. Two nodes with one sequence can only come from a node created without
    /// a sequential create (a forgery PROTOCOL.md §12.1 now refuses, or a process outside the sidecar);
    /// they are ordered by session, then marker, so that every pass judges them alike.
    public static func < (left: WaiterName, right: WaiterName) -> Bool {
        if left.sequence != right.sequence { return left.sequence < right.sequence }
        if left.session != right.session { return left.session < right.session }
        return marker(of: left.kind) < marker(of: right.kind)
    }

    /// 1 marker + dash + 16 hex + dash + 10 digits.
    static let nameBytes = 1 + 1 + 16 + 1 + 10
    static let sequenceDigits = 10

    public static func marker(of kind: LockKind) -> UInt8 {
        switch kind {
        case .exclusive: UInt8(ascii: "x")
        case .shared: UInt8(ascii: "r")
        case .semaphore: UInt8(ascii: "s")
        }
    }

    /// What the recipe passes to a sequential create: the lock path, a slash and the name without
    /// the sequence, made in one allocation (this runs on every acquire).
    public static func createPath(lockPath: String, kind: LockKind, session: UInt64) -> String {
        var lockPath = lockPath
        return lockPath.withUTF8 { lock in
            String(unsafeUninitializedCapacity: lock.count + 1 + nameBytes - sequenceDigits) { buffer in
                _ = UnsafeMutableBufferPointer(rebasing: buffer[..<lock.count]).initialize(from: lock)
                buffer[lock.count] = UInt8(ascii: "/")
                writePrefix(kind: kind, session: session, into: UnsafeMutableBufferPointer(rebasing: buffer[(lock.count + 1)...]))
                return buffer.count
            }
        }
    }

    public var name: String {
        String(unsafeUninitializedCapacity: WaiterName.nameBytes) { buffer in
            WaiterName.writePrefix(kind: kind, session: session, into: buffer)
            var value = sequence
            var index = WaiterName.nameBytes - 1
            while index >= WaiterName.nameBytes - WaiterName.sequenceDigits {
                buffer[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value % 10)
                value /= 10
                index -= 1
            }
            return WaiterName.nameBytes
        }
    }

    /// Marker, dash, 16 lower-case hex digits, dash (formatted by hand: this runs on every acquire).
    private static func writePrefix(kind: LockKind, session: UInt64, into buffer: UnsafeMutableBufferPointer<UInt8>) {
        let digits: StaticString = "0123456789abcdef"
        buffer[0] = marker(of: kind)
        buffer[1] = UInt8(ascii: "-")
        digits.withUTF8Buffer { hex in
            for index in 0..<16 {
                buffer[2 + index] = hex[Int(truncatingIfNeeded: (session >> UInt64(60 - 4 * index)) & 0xF)]
            }
        }
        buffer[18] = UInt8(ascii: "-")
    }

    /// Whether the node at `path` (created with `sequential`: its name plus the 10-digit suffix) would
    /// have a waiter node's name. Such nodes belong to the lock manager (PROTOCOL.md §12.1): a client
    /// may not create, delete or change one, so a lock's queue holds only the manager's own nodes,
    /// each an ephemeral of a live session. Runs on every write: reads the last component in place.
    public static func isReserved(path: String, sequential: Bool) -> Bool {
        var path = path
        return path.withUTF8 { bytes in
            var start = bytes.count
            while start > 0 && bytes[start - 1] != UInt8(ascii: "/") { start -= 1 }
            let name = UnsafeBufferPointer(rebasing: bytes[start...])
            guard sequential else { return name.count == nameBytes && parse(name) != nil }
            guard name.count == nameBytes - sequenceDigits else { return false }
            return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: nameBytes) { buffer in
                _ = buffer.initialize(from: name)
                for index in (nameBytes - sequenceDigits)..<nameBytes { buffer[index] = UInt8(ascii: "0") }
                return parse(UnsafeBufferPointer(buffer)) != nil
            }
        }
    }

    /// Whether any component of `path` is a waiter node's name: such a path is no lock path (its lock
    /// node would sit in another lock's queue). Runs on every acquire: scans in place.
    public static func passesThroughReserved(path: String) -> Bool {
        var path = path
        return path.withUTF8 { bytes in
            var start = 0
            for end in 0...bytes.count where end == bytes.count || bytes[end] == UInt8(ascii: "/") {
                if end - start == nameBytes && parse(UnsafeBufferPointer(rebasing: bytes[start..<end])) != nil { return true }
                start = end + 1
            }
            return false
        }
    }

    /// Parses the last component of a node path in place (no string made for it); nil if it is not a waiter name.
    public init?(lastComponentOf path: String) {
        var path = path
        guard let parsed = path.withUTF8({ bytes -> WaiterName? in
            // A waiter name has `nameBytes`, none a slash: it starts there, after a slash (or the
            // path is just the name). No scan back for the slash.
            let start = bytes.count - WaiterName.nameBytes
            guard start >= 0, start == 0 || bytes[start - 1] == UInt8(ascii: "/") else { return nil }
            return WaiterName.parse(UnsafeBufferPointer(rebasing: bytes[start...]))
        }) else { return nil }
        self = parsed
    }

    /// Parses a child name; nil for anything that is not a waiter name (such children are ignored).
    public init?(parsing name: String) {
        var name = name
        guard let parsed = name.withUTF8({ WaiterName.parse($0) }) else { return nil }
        self = parsed
    }

    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> WaiterName? {
        guard bytes.count == nameBytes, bytes[1] == UInt8(ascii: "-"), bytes[18] == UInt8(ascii: "-") else { return nil }
        let kind: LockKind
        switch bytes[0] {
        case UInt8(ascii: "x"): kind = .exclusive
        case UInt8(ascii: "r"): kind = .shared
        case UInt8(ascii: "s"): kind = .semaphore
        default: return nil
        }
        // The 16 hex digits, 8 at a time (this runs on every acquire).
        let raw = UnsafeRawBufferPointer(bytes)
        guard let high = hexWord(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt64.self))),
              let low = hexWord(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 10, as: UInt64.self))) else { return nil }
        let session = high << 32 | low
        // The sequence's first 8 digits at once, then the last two.
        guard var sequence = decimalWord(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 19, as: UInt64.self))) else { return nil }
        for index in 27..<nameBytes {
            let byte = bytes[index]
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            sequence = sequence * 10 + UInt64(byte &- UInt8(ascii: "0"))
        }
        return WaiterName(kind: kind, session: session, sequence: sequence)
    }

    /// The value of 8 lower-case hex digits (the first in the lowest byte), or nil if any byte is not
    /// one: every byte judged at once (SWAR; a byte below 0x80 plus 0x80 - k has its top bit set
    /// exactly when it is at least k, and carries into no other byte).
    static func hexWord(_ word: UInt64) -> UInt64? {
        let ones: UInt64 = 0x0101_0101_0101_0101, tops: UInt64 = 0x8080_8080_8080_8080
        guard word & tops == 0 else { return nil }
        func atLeast(_ k: UInt64) -> UInt64 { (word &+ (0x80 &- k) &* ones) & tops }
        let digit = atLeast(0x30) & ~atLeast(0x3A), letter = atLeast(0x61) & ~atLeast(0x67)
        guard digit | letter == tops else { return nil }
        // Each byte's value: its low nibble, plus 9 for a letter ("a" is 0x61).
        var value = (word & 0x0F0F_0F0F_0F0F_0F0F) &+ (letter >> 7) &* 9
        // Pairs of digits into bytes, pairs of bytes into 16 bits, then the two halves (the first digit highest).
        value = ((value << 4) | (value >> 8)) & 0x00FF_00FF_00FF_00FF
        value = ((value << 8) | (value >> 16)) & 0x0000_FFFF_0000_FFFF
        return ((value << 16) | (value >> 32)) & 0xFFFF_FFFF
    }

    /// The value of 8 decimal digits (the first in the lowest byte), or nil if any byte is not one (as `hexWord`).
    static func decimalWord(_ word: UInt64) -> UInt64? {
        let ones: UInt64 = 0x0101_0101_0101_0101, tops: UInt64 = 0x8080_8080_8080_8080
        guard word & tops == 0 else { return nil }
        func atLeast(_ k: UInt64) -> UInt64 { (word &+ (0x80 &- k) &* ones) & tops }
        guard atLeast(0x30) & ~atLeast(0x3A) == tops else { return nil }
        // Pairs of digits (at most 99 a byte), then fours (9999), then the eight.
        var value = word &- 0x30 &* ones
        value = (value &* 10 &+ (value >> 8)) & 0x00FF_00FF_00FF_00FF
        value = (value &* 100 &+ (value >> 16)) & 0x0000_FFFF_0000_FFFF
        return (value &* 10000 &+ (value >> 32)) & 0xFFFF_FFFF
    }

    /// A semaphore waiter's node data: its permit count, 4 bytes big-endian, so that a waiter asking
    /// for a different count is refused with `lockKindMismatch`.
    public static func permitData(_ permits: UInt32) -> [UInt8] {
        [UInt8(truncatingIfNeeded: permits >> 24), UInt8(truncatingIfNeeded: permits >> 16),
         UInt8(truncatingIfNeeded: permits >> 8), UInt8(truncatingIfNeeded: permits)]
    }

    public static func permits(fromData data: [UInt8]) -> UInt32? {
        guard data.count == 4 else { return nil }
        return data.reduce(0) { $0 << 8 | UInt32($1) }
    }
}
