import BatonProtocol

/// One node of the tree, laid out small: a million nodes are a million of these. The stat's fields
/// are stored one by one (packed, the 32-bit ones together), `stat.dataLength` is the data's own
/// count and `stat.childrenCount` is kept in step with the children in the tree (a node holds no
/// list of them: its directory in `NodeTree` is that list); sequence counters take memory only on
/// a parent that handed out a sequence number.
public struct Node: Sendable, Equatable {
    /// The node's data (small data is kept inside the node: `NodeData`).
    public var data: [UInt8] {
        get { payload.bytes }
        set { payload = NodeData(newValue) }
    }
    private var payload: NodeData
    public private(set) var kind: NodeKind
    var version: Int32
    var childrenVersion: Int32
    var childrenCount: UInt32
    var createdTransaction: UInt64
    var modifiedTransaction: UInt64
    var childrenTransaction: UInt64
    var createdMilliseconds: UInt64
    var modifiedMilliseconds: UInt64
    var ephemeralOwner: UInt64
    /// Quotas (PROTOCOL.md §8): the session that created the node while it was open, 0 for none. It
    /// stays after that session ends (and then counts for no one). Bookkeeping, not state: not
    /// logged, not in snapshots, not compared. Kept here rather than in a table of its own keyed by
    /// path: no second tree entry per node, no second path hash per create and delete.
    public var creator: UInt64
    /// [sequenceNext, sequenceReserved], or empty for (0, 0): one word (an empty array allocates
    /// nothing) instead of two on every node, and copy-on-write like the rest.
    private var sequence: [UInt64]

    /// Next sequence number handed to a sequential child.
    public var sequenceNext: UInt64 {
        get { sequence.isEmpty ? 0 : sequence[0] }
        set { setSequence(newValue, sequenceReserved) }
    }
    /// Sequence numbers below this may have been handed out: a log record says so.
    /// Recovery restarts `sequenceNext` here.
    public var sequenceReserved: UInt64 {
        get { sequence.isEmpty ? 0 : sequence[1] }
        set { setSequence(sequenceNext, newValue) }
    }

    private mutating func setSequence(_ next: UInt64, _ reserved: UInt64) {
        if next == 0 && reserved == 0 { sequence = [] } else if sequence.isEmpty { sequence = [next, reserved] } else {
            sequence[0] = next
            sequence[1] = reserved
        }
    }

    public init(data: [UInt8], stat: Stat, sequenceNext: UInt64 = 0,
                sequenceReserved: UInt64 = 0, creator: UInt64 = 0) {
        self.payload = NodeData(data)
        self.kind = stat.kind
        self.version = stat.version
        self.childrenVersion = stat.childrenVersion
        self.childrenCount = stat.childrenCount
        self.createdTransaction = stat.createdTransaction
        self.modifiedTransaction = stat.modifiedTransaction
        self.childrenTransaction = stat.childrenTransaction
        self.createdMilliseconds = stat.createdMilliseconds
        self.modifiedMilliseconds = stat.modifiedMilliseconds
        self.ephemeralOwner = stat.ephemeralOwner
        self.creator = creator
        self.sequence = []
        setSequence(sequenceNext, sequenceReserved)
    }

    /// The stat as the protocol has it. Setting it sets every field but `dataLength` (the data's).
    public var stat: Stat {
        get {
            Stat(createdTransaction: createdTransaction, modifiedTransaction: modifiedTransaction,
                 childrenTransaction: childrenTransaction, createdMilliseconds: createdMilliseconds,
                 modifiedMilliseconds: modifiedMilliseconds, version: version, childrenVersion: childrenVersion,
                 ephemeralOwner: ephemeralOwner, dataLength: UInt32(payload.count), childrenCount: childrenCount,
                 kind: kind)
        }
        set {
            kind = newValue.kind
            version = newValue.version
            childrenVersion = newValue.childrenVersion
            childrenCount = newValue.childrenCount
            createdTransaction = newValue.createdTransaction
            modifiedTransaction = newValue.modifiedTransaction
            childrenTransaction = newValue.childrenTransaction
            createdMilliseconds = newValue.createdMilliseconds
            modifiedMilliseconds = newValue.modifiedMilliseconds
            ephemeralOwner = newValue.ephemeralOwner
        }
    }

    /// The data's length without building the array.
    var dataLength: Int { payload.count }

    /// The node's own state: everything but `creator` (its children are the tree's).
    public static func == (left: Node, right: Node) -> Bool {
        left.payload == right.payload && left.stat == right.stat
            && left.sequenceNext == right.sequenceNext && left.sequenceReserved == right.sequenceReserved
    }
}

/// A node's data: up to `inlineBytesMax` bytes inside the node itself, more in an array. A million
/// small nodes then hold no array each (a 48-byte allocation for 16 bytes of data, more than the data
/// and its stat); a read of small data builds its array when asked.
struct NodeData: Sendable, Equatable {
    static let inlineBytesMax = 16

    private enum Storage: Sendable, Equatable {
        /// The bytes in memory order in two words, and how many there are. Only when they fit, so
        /// equal data has one representation.
        case inline(UInt64, UInt64, count: UInt8)
        case array([UInt8])
    }

    private let storage: Storage

    init(_ bytes: [UInt8]) {
        guard bytes.count <= Self.inlineBytesMax else {
            storage = .array(bytes)
            return
        }
        var words: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &words) { destination in
            bytes.withUnsafeBytes { destination.copyMemory(from: $0) }
        }
        storage = .inline(words.0, words.1, count: UInt8(bytes.count))
    }

    var count: Int {
        switch storage {
        case .array(let bytes): return bytes.count
        case .inline(_, _, let count): return Int(count)
        }
    }

    var bytes: [UInt8] {
        switch storage {
        case .array(let bytes):
            return bytes
        case .inline(_, _, count: 0):
            return []
        case .inline(let first, let second, let count):
            let words = (first, second)
            return withUnsafeBytes(of: words) { Array($0.prefix(Int(count))) }
        }
    }
}

extension Optional where Wrapped == Node {
    /// Whether a node is there. `node != nil` may resolve to the `Equatable` comparison of two
    /// optional nodes (a copy of the node, and its release, on every set: seen in a profile).
    var isSome: Bool {
        if case .some = self { return true }
        return false
    }
}
