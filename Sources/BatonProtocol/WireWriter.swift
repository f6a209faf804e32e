/// Appends big-endian fields to a byte array. Strings are u16-length UTF-8; byte blobs are u32-length.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Empties the writer; keeping the capacity lets a server reuse one output buffer per connection.
    public mutating func removeAll(keepingCapacity: Bool) { bytes.removeAll(keepingCapacity: keepingCapacity) }

    /// Drops everything after the first `count` bytes (an encoded frame taken back).
    public mutating func truncate(to count: Int) {
        precondition(count >= 0 && count <= bytes.count)
        bytes.removeSubrange(count...)
    }

    public mutating func u8(_ value: UInt8) { bytes.append(value) }
    public mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }
    // Fixed-width fields go in with one append each (not one per byte): the encoder's hot path.
    public mutating func u16(_ value: UInt16) { appendBigEndian(value) }
    public mutating func u32(_ value: UInt32) { appendBigEndian(value) }
    public mutating func i32(_ value: Int32) { u32(UInt32(bitPattern: value)) }
    public mutating func u64(_ value: UInt64) { appendBigEndian(value) }

    /// As typed bytes: an append from contiguous typed storage is one copy.
    @inline(__always) private mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0.assumingMemoryBound(to: UInt8.self)) }
    }
    /// A u16-length UTF-8 string. Callers bound lengths by `Limits`; longer strings are a programming error.
    public mutating func string(_ value: String) {
        let utf8 = value.utf8
        let count = utf8.count
        precondition(count <= Int(UInt16.max), "string longer than a u16 length")
        // Length and bytes put together on the stack and appended at once: a length append and
        // then the UTF-8 view's append (its generic copy) were ~300 instructions a string (callgrind).
        let appended: Void? = utf8.withContiguousStorageIfAvailable { contiguous in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 2 + count) { buffer in
                buffer[0] = UInt8(truncatingIfNeeded: count >> 8)
                buffer[1] = UInt8(truncatingIfNeeded: count)
                if count > 0 { (buffer.baseAddress! + 2).initialize(from: contiguous.baseAddress!, count: count) }
                bytes.append(contentsOf: UnsafeBufferPointer(buffer))
            }
        }
        guard appended == nil else { return }
        u16(UInt16(count))
        bytes.append(contentsOf: utf8)
    }
    public mutating func blob(_ value: [UInt8]) {
        precondition(value.count <= Int(UInt32.max))
        u32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }
    public mutating func raw(_ value: [UInt8]) { bytes.append(contentsOf: value) }

    /// Appends exactly `count` bytes of fixed-width fields written by `fill` straight into the
    /// array's storage: one growth check for a whole record (a stat is 11 fields) instead of one per field.
    /// The fields are written on the stack and copied in with one append: appending `count` zeros
    /// to write over went through the generic sequence path a byte at a time (1.6 % of a pipelined get).
    public mutating func fixed(_ count: Int, _ fill: (inout FixedFields) -> Void) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: count) { buffer in
            var fields = FixedFields(base: UnsafeMutableRawPointer(buffer.baseAddress!), count: count)
            fill(&fields)
            precondition(fields.offset == count, "fixed fields wrote \(fields.offset) of \(count) bytes")
            bytes.append(contentsOf: UnsafeBufferPointer(buffer))
        }
    }

    /// Room for a typical frame when the writer holds no storage yet (a server's output buffer after
    /// each write): one allocation instead of one per growing field. Only from empty: reserving on
    /// every frame would reallocate a pipelined burst's buffer without geometric growth.
    public mutating func reserveIfEmpty(_ count: Int) {
        if bytes.capacity == 0 { bytes.reserveCapacity(count) }
    }

    /// Reserves a u32 length prefix; `finishFrame` fills it in.
    public mutating func beginFrame() -> Int {
        let start = bytes.count
        u32(0)
        return start
    }
    public mutating func finishFrame(_ start: Int) {
        let length = UInt32(bytes.count - start - 4)
        precondition(start >= 0 && start + 4 <= bytes.count, "a frame's length prefix lies inside the writer")
        // One store (one uniqueness check), not four subscripts each checked.
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: length.bigEndian, toByteOffset: start, as: UInt32.self) }
    }
}

/// Big-endian fields written into bytes `WireWriter.fixed` reserved; every write is bounds-checked.
public struct FixedFields {
    let base: UnsafeMutableRawPointer
    let count: Int
    var offset = 0

    @inline(__always) private mutating func store<T: FixedWidthInteger>(_ value: T) {
        let size = MemoryLayout<T>.size
        precondition(offset + size <= count, "fixed fields overflow their reservation")
        base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)  // unaligned stores are allowed
        offset += size
    }

    public mutating func u8(_ value: UInt8) { store(value) }
    public mutating func u16(_ value: UInt16) { store(value) }
    public mutating func u32(_ value: UInt32) { store(value) }
    public mutating func i32(_ value: Int32) { store(UInt32(bitPattern: value)) }
    public mutating func u64(_ value: UInt64) { store(value) }
}
