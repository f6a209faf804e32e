/// The names of a node's children, kept in order so a listing costs no sort: sorted runs ("chunks")
/// of at most `chunkMax` names, in order, none empty. Insert and remove are a binary search over the
/// chunks and within one, plus a move of at most `chunkMax` names, so a node with a million children
/// costs no more per change than one with a thousand; a copy shared with a snapshot copies only the
/// chunk list and the touched chunk. No children: no memory.
///
/// Ordered by UTF-8 bytes (PROTOCOL.md §5.2: Swift's own `<` on strings orders by Unicode
/// normalization, which a client in another language cannot reproduce). Names are kept as their
/// nodes were created; `remove` also finds a name by another spelling that Swift's `==` (canonical
/// equivalence, as for the node paths) takes for the same.
public struct ChildNames: Sendable, Sequence, Equatable, ExpressibleByArrayLiteral {
    static let chunkMax = 512

    private var chunks: [[String]] = []

    /// O(chunks): not stored, a node keeps its count in its stat (one word less per node).
    public var count: Int { chunks.reduce(0) { $0 + $1.count } }

    public init() {}

    public init(arrayLiteral names: String...) {
        for name in names { insert(name) }
    }

    public var isEmpty: Bool { chunks.isEmpty }

    private func chunkIndex(for name: String) -> Int { Self.chunkIndex(for: name, in: chunks) { $0 } }

    private static func position(of name: String, in chunk: [String]) -> Int { position(of: name, in: chunk) { $0 } }

    /// The chunk of `chunks` (each sorted by `key`, in order) that holds `name` or would: the first
    /// whose last name is not below it, else the last. Shared with `NodeTree.Directory`.
    static func chunkIndex<Element>(for name: String, in chunks: [[Element]], key: (Element) -> String) -> Int {
        chunkIndex(in: chunks) { precedes(key($0), name) }
    }

    /// The chunk of `chunks` (in order) whose last element is the first not `before` the sought
    /// name, else the last. `before`: the element's name precedes the sought one.
    static func chunkIndex<Element>(in chunks: [[Element]], before: (Element) -> Bool) -> Int {
        var low = 0, high = chunks.count - 1
        while low < high {
            let middle = (low + high) / 2
            if before(chunks[middle][chunks[middle].count - 1]) { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// The first position in `chunk` (sorted by `key`) whose name is not below `name`.
    static func position<Element>(of name: String, in chunk: [Element], key: (Element) -> String) -> Int {
        position(in: chunk) { precedes(key($0), name) }
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
    static func same(_ left: String, _ right: String) -> Bool { order(left, right) == 0 }

    /// The names' byte order: negative, zero or positive. Over the strings' own UTF-8 storage (native
    /// and small strings have it): the generic `utf8` sequence comparison cost more than the hash it
    /// replaces on every tree lookup (`NodeTree`).
    static func order(_ left: String, _ right: String) -> Int {
        let direct = left.utf8.withContiguousStorageIfAvailable { leftBytes in
            right.utf8.withContiguousStorageIfAvailable { rightBytes -> Int in
                for index in 0..<Swift.min(leftBytes.count, rightBytes.count) where leftBytes[index] != rightBytes[index] {
                    return Int(leftBytes[index]) - Int(rightBytes[index])
                }
                return leftBytes.count - rightBytes.count
            }
        }
        if let direct, let direct { return direct }
        if left.utf8.lexicographicallyPrecedes(right.utf8) { return -1 }
        return left.utf8.elementsEqual(right.utf8) ? 0 : 1
    }

    /// `order` against a name given as bytes (a path's last segment, read in place by `NodeTree`).
    static func order(_ left: String, _ right: UnsafeBufferPointer<UInt8>) -> Int {
        if let direct = left.utf8.withContiguousStorageIfAvailable({ leftBytes -> Int in
            for index in 0..<Swift.min(leftBytes.count, right.count) where leftBytes[index] != right[index] {
                return Int(leftBytes[index]) - Int(right[index])
            }
            return leftBytes.count - right.count
        }) { return direct }
        if left.utf8.lexicographicallyPrecedes(right) { return -1 }
        return left.utf8.elementsEqual(right) ? 0 : 1
    }

    /// Only ASCII bytes (then byte equality is Swift's `==`).
    static func isASCII(_ name: String) -> Bool {
        name.utf8.withContiguousStorageIfAvailable { bytes in bytes.allSatisfy { $0 < 0x80 } } ?? name.utf8.allSatisfy { $0 < 0x80 }
    }

    /// Where `name` is (chunk, position), by its bytes.
    private func find(_ name: String) -> (chunk: Int, position: Int)? {
        guard !chunks.isEmpty else { return nil }
        let index = chunkIndex(for: name)
        let position = Self.position(of: name, in: chunks[index])
        guard position < chunks[index].count && Self.same(chunks[index][position], name) else { return nil }
        return (index, position)
    }

    public func contains(_ name: String) -> Bool { find(name) != nil }

    /// Adds `name`; false if it was there.
    @discardableResult
    public mutating func insert(_ name: String) -> Bool {
        guard !chunks.isEmpty else {
            chunks = [[name]]
            return true
        }
        // After the last name (a snapshot read in order, a lock's next waiter): no search.
        let last = chunks.count - 1
        let index: Int, position: Int
        if Self.precedes(chunks[last][chunks[last].count - 1], name) {
            (index, position) = (last, chunks[last].count)
        } else {
            index = chunkIndex(for: name)
            position = Self.position(of: name, in: chunks[index])
        }
        if position < chunks[index].count && Self.same(chunks[index][position], name) { return false }
        chunks[index].insert(name, at: position)
        if chunks[index].count > Self.chunkMax {
            let upper = Array(chunks[index][(Self.chunkMax / 2)...])
            chunks[index].removeSubrange((Self.chunkMax / 2)...)
            chunks.insert(upper, at: index + 1)
        }
        return true
    }

    /// Removes `name` (or the name Swift's `==` takes for it: a path spelled another way); false if
    /// neither is there.
    @discardableResult
    public mutating func remove(_ name: String) -> Bool {
        guard let (index, position) = find(name) ?? findEquivalent(name) else { return false }
        chunks[index].remove(at: position)
        if chunks[index].isEmpty {
            chunks.remove(at: index)
            if chunks.isEmpty { chunks = [] }  // gives the memory back
        }
        return true
    }

    /// Rare (a name not in NFC, deleted by another spelling): a scan.
    private func findEquivalent(_ name: String) -> (chunk: Int, position: Int)? {
        for (index, chunk) in chunks.enumerated() {
            if let position = chunk.firstIndex(of: name) { return (index, position) }
        }
        return nil
    }

    /// Up to `limit` names after `cursor` (all from the first when nil), in order, and whether more follow.
    public func names(after cursor: String?, limit: Int) -> (names: [String], more: Bool) {
        precondition(limit >= 0)
        guard !chunks.isEmpty else { return ([], false) }
        var chunkIndex = 0, position = 0
        if let cursor {
            chunkIndex = self.chunkIndex(for: cursor)
            position = Self.position(of: cursor, in: chunks[chunkIndex])
            let chunk = chunks[chunkIndex]
            if position < chunk.count && Self.same(chunk[position], cursor) { position += 1 }
            if position == chunk.count { chunkIndex += 1; position = 0 }
        }
        var result: [String] = []
        result.reserveCapacity(Swift.min(limit, chunks.count * Self.chunkMax))
        while chunkIndex < chunks.count && result.count < limit {
            let chunk = chunks[chunkIndex]
            let taken = Swift.min(chunk.count - position, limit - result.count)
            result.append(contentsOf: chunk[position..<(position + taken)])
            position += taken
            if position == chunk.count { chunkIndex += 1; position = 0 }
        }
        return (result, chunkIndex < chunks.count)
    }

    public func makeIterator() -> FlattenSequence<[[String]]>.Iterator { chunks.joined().makeIterator() }

    /// Same names (same bytes), however they are chunked.
    public static func == (left: ChildNames, right: ChildNames) -> Bool {
        left.count == right.count && left.elementsEqual(right, by: same)
    }
}
