import BatonProtocol

/// The order of child names (PROTOCOL.md §5.2): by their UTF-8 bytes. Swift's own `<` on strings
/// orders by Unicode normalization, which a client in another language cannot reproduce. And the
/// searches over sorted chunks that `NodeTree.Directory` keeps its entries in.
enum NameOrder {
    /// The chunk of `chunks` (in order, none empty) whose last element is the first not `before`
    /// the sought name, else the last. `before`: the element's name precedes the sought one.
    static func chunkIndex<Element>(in chunks: [[Element]], before: (Element) -> Bool) -> Int {
        var low = 0, high = chunks.count - 1
        while low < high {
            let middle = (low + high) / 2
            if before(chunks[middle][chunks[middle].count - 1]) { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// The first position in `chunk` (in order) not `before` the sought name.
    static func position<Element>(in chunk: [Element], before: (Element) -> Bool) -> Int {
        var low = 0, high = chunk.count
        while low < high {
            let middle = (low + high) / 2
            if before(chunk[middle]) { low = middle + 1 } else { high = middle }
        }
        return low
    }

    static func precedes(_ left: String, _ right: String) -> Bool { order(left, right) < 0 }

    /// The names' byte order: negative, zero or positive. Over the strings' own UTF-8 storage (native
    /// and small strings have it): the generic `utf8` sequence comparison cost more than the hash it
    /// replaces on every tree lookup (`NodeTree`).
    static func order(_ left: String, _ right: String) -> Int {
        let direct = left.utf8.withContiguousStorageIfAvailable { leftBytes in
            right.utf8.withContiguousStorageIfAvailable { rightBytes in order(leftBytes, rightBytes) }
        }
        if let direct, let direct { return direct }
        if left.utf8.lexicographicallyPrecedes(right.utf8) { return -1 }
        return left.utf8.elementsEqual(right.utf8) ? 0 : 1
    }

    /// `order` against a name given as bytes (a path's last segment, read in place by `NodeTree`).
    static func order(_ left: String, _ right: UnsafeBufferPointer<UInt8>) -> Int {
        if let direct = left.utf8.withContiguousStorageIfAvailable({ order($0, right) }) { return direct }
        if left.utf8.lexicographicallyPrecedes(right) { return -1 }
        return left.utf8.elementsEqual(right) ? 0 : 1
    }

    /// Whether every byte is ASCII (every create of a new name asks).
    static func isASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool { ByteWords.isASCII(bytes) }

    /// Byte order of two buffers (names share long prefixes: a lock's waiters, numbered children);
    /// only the sign is meant.
    @inline(__always)
    static func order(_ left: UnsafeBufferPointer<UInt8>, _ right: UnsafeBufferPointer<UInt8>) -> Int {
        ByteWords.order(left, right)
    }
}
