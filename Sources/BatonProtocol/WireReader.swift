/// Why a frame could not be decoded. `code` is what the peer is told; `requestID` is known once the header was read.
public struct DecodeFailure: Error, Sendable, Equatable {
    public var code: ErrorCode
    public var requestID: UInt32?
    public var opcode: UInt8?
    public var message: String
    public init(_ code: ErrorCode, _ message: String, requestID: UInt32? = nil, opcode: UInt8? = nil) {
        self.code = code
        self.message = message
        self.requestID = requestID
        self.opcode = opcode
    }
}

/// Reads big-endian fields from one frame body; every read is bounds-checked and fails with `malformedFrame`.
/// Two forms, the same reads: over an array it keeps (the namespace's record and snapshot decoders, the
/// client), or in place over bytes it does not own (batond's requests, straight from the connection's
/// input: no copy, no retain), valid only while those bytes are (`Codec.decodeRequest(inPlace:)`).
public struct WireReader {
    /// The array form's bytes; nil in place.
    @usableFromInline let storage: [UInt8]?
    /// The in-place form's bytes; nil for an array.
    @usableFromInline let base: UnsafeRawPointer?
    @usableFromInline var index: Int
    @usableFromInline let end: Int
    /// The first field that failed with an error that keeps the connection open (a path that is not
    /// UTF-8): reported only if the rest of the frame decodes, because a malformed rest wins (§3.4).
    public private(set) var deferredFailure: DecodeFailure?
    /// The connection's strings (in place only, `Codec.decodeRequest(inPlace:strings:)`): a long string
    /// field with the bytes of one of them is that string. Not retained (the caller keeps it for the
    /// decode): a reader with a reference to destroy cost each request ~140 instructions.
    unowned(unsafe) var strings: StringMemo?

    public init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil) {
        self.storage = bytes
        self.base = nil
        self.index = start
        self.end = end ?? bytes.count
    }

    /// Reads `bytes` in place: the caller keeps them alive and unchanged while the reader is used.
    public init(inPlace bytes: UnsafeRawBufferPointer) {
        self.storage = nil
        self.base = bytes.baseAddress
        self.index = 0
        self.end = bytes.count
    }

    /// The byte at `offset`, already bounds-checked by `need`.
    @inline(__always) func byte(_ offset: Int) -> UInt8 {
        if let base { return base.load(fromByteOffset: offset, as: UInt8.self) }
        return storage.unsafelyUnwrapped[offset]
    }

    /// The big-endian integer at `offset`, already bounds-checked by `need`: one load, not a loop over
    /// its bytes each asking which form the reader has (callgrind: ~50 instructions a u32, now ~15).
    @inline(__always) func integer<T: FixedWidthInteger>(_ offset: Int, as _: T.Type) -> T {
        if let base { return T(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        return storage.unsafelyUnwrapped.withUnsafeBytes { T(bigEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }

    /// Calls `body` with `count` bytes from `start` (bounds-checked by `need`) as a buffer.
    @inline(__always) func withBytes<R>(_ start: Int, _ count: Int, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let base {
            return UnsafeRawBufferPointer(start: base + start, count: count).withMemoryRebound(to: UInt8.self, body)
        }
        // Straight from the array's storage (an ArraySlice takes a slower generic path).
        return storage.unsafelyUnwrapped.withUnsafeBufferPointer { body(UnsafeBufferPointer(rebasing: $0[start..<(start + count)])) }
    }

    public var remaining: Int { end - index }
    public var isAtEnd: Bool { index == end }

    // The fixed-width reads are inlined into the decoders with the failure built out of line: as
    // calls they were ~15 instructions each, ~10 a request (callgrind: u32 150, u8 87 a lock pair).
    @inline(__always) mutating func need(_ count: Int, _ field: StaticString) throws(DecodeFailure) {
        guard count <= end - index else { throw Self.truncated(field) }
    }
    @inline(never) static func truncated(_ field: StaticString) -> DecodeFailure {
        DecodeFailure(.malformedFrame, "truncated \(field)")
    }

    @inline(__always) public mutating func u8(_ field: StaticString = "u8") throws(DecodeFailure) -> UInt8 {
        try need(1, field)
        defer { index += 1 }
        return byte(index)
    }
    public mutating func bool(_ field: StaticString = "flag") throws(DecodeFailure) -> Bool {
        switch try u8(field) {
        case 0: return false
        case 1: return true
        default: throw DecodeFailure(.malformedFrame, "\(field) must be 0 or 1")
        }
    }
    @inline(__always) public mutating func u16(_ field: StaticString = "u16") throws(DecodeFailure) -> UInt16 {
        try need(2, field)
        defer { index += 2 }
        return integer(index, as: UInt16.self)
    }
    @inline(__always) public mutating func u32(_ field: StaticString = "u32") throws(DecodeFailure) -> UInt32 {
        try need(4, field)
        defer { index += 4 }
        return integer(index, as: UInt32.self)
    }
    public mutating func i32(_ field: StaticString = "i32") throws(DecodeFailure) -> Int32 {
        Int32(bitPattern: try u32(field))
    }
    @inline(__always) public mutating func u64(_ field: StaticString = "u64") throws(DecodeFailure) -> UInt64 {
        try need(8, field)
        defer { index += 8 }
        return integer(index, as: UInt64.self)
    }
    /// A u16-length UTF-8 string. Invalid UTF-8 fails with `invalidEncoding` (default `malformedFrame`).
    public mutating func string(_ field: StaticString = "string",
                                invalidEncoding: ErrorCode = .malformedFrame) throws(DecodeFailure) -> String {
        let count = Int(try u16(field))
        try need(count, field)
        let start = index
        index += count
        if let strings, let base {
            let field = UnsafeBufferPointer(start: (base + start).assumingMemoryBound(to: UInt8.self), count: count)
            if let kept = strings.string(matching: field) { return kept }
        }
        // ASCII (most paths and names) is valid UTF-8 as it stands: one pass to see that, and
        // `String(decoding:)`, about half of what `String(validating:)` costs; anything else is validated.
        let decoded = withBytes(start, count) { field -> String? in
            ByteWords.isASCII(field) ? String(decoding: field, as: UTF8.self) : String(validating: field, as: UTF8.self)
        }
        guard let value = decoded else {
            let failure = DecodeFailure(invalidEncoding, "\(field) is not valid UTF-8")
            guard !invalidEncoding.closesConnection else { throw failure }
            // The frame boundary is still known: read on, so a closing fault later in it wins.
            if deferredFailure == nil { deferredFailure = failure }
            return ""
        }
        strings?.decoded(value)
        return value
    }
    public mutating func blob(_ field: StaticString = "bytes") throws(DecodeFailure) -> [UInt8] {
        let count = Int(try u32(field))
        try need(count, field)
        defer { index += count }
        return withBytes(index, count) { Array($0) }
    }
    /// The frame must end here; then a deferred failure (if any) is the frame's error.
    public func expectEnd() throws(DecodeFailure) {
        guard index == end else { throw DecodeFailure(.malformedFrame, "\(end - index) trailing bytes") }
        if let deferredFailure { throw deferredFailure }
    }
}
