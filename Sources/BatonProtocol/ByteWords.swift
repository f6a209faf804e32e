/// Byte comparisons and checks eight bytes at a time, for the hot paths that look at paths and names
/// (a request's strings, a directory's names, a waiter's node under its lock): byte loops there cost
/// ~100 instructions a path each (callgrind). Inlinable: each caller gets them specialised in place.
public enum ByteWords {
    /// Whether every byte is ASCII (below 0x80).
    @inlinable
    public static func isASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let raw = UnsafeRawPointer(base)
        var highBits: UInt64 = 0
        var index = 0
        while index + 8 <= bytes.count {
            highBits |= raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            index += 8
        }
        while index < bytes.count {
            highBits |= UInt64(base[index])
            index += 1
        }
        return highBits & 0x8080_8080_8080_8080 == 0
    }

    /// The byte order of two buffers (only the sign is meant): eight bytes at a time, big-endian so
    /// that the first differing byte decides, then byte by byte; a prefix orders first.
    @inlinable @inline(__always)
    public static func order(_ left: UnsafeBufferPointer<UInt8>, _ right: UnsafeBufferPointer<UInt8>) -> Int {
        let common = Swift.min(left.count, right.count)
        guard common > 0, let leftBase = left.baseAddress, let rightBase = right.baseAddress else {
            return left.count - right.count
        }
        let leftRaw = UnsafeRawPointer(leftBase), rightRaw = UnsafeRawPointer(rightBase)
        var index = 0
        while index + 8 <= common {
            let leftWord = leftRaw.loadUnaligned(fromByteOffset: index, as: UInt64.self).bigEndian
            let rightWord = rightRaw.loadUnaligned(fromByteOffset: index, as: UInt64.self).bigEndian
            if leftWord != rightWord { return leftWord < rightWord ? -1 : 1 }
            index += 8
        }
        while index < common {
            let leftByte = leftBase[index], rightByte = rightBase[index]
            if leftByte != rightByte { return Int(leftByte) - Int(rightByte) }
            index += 1
        }
        return left.count - right.count
    }
}
