import BatonProtocol

/// One node of the tree. `stat.dataLength` and `stat.childrenCount` are kept in step with
/// `data` and `children`.
public struct Node: Sendable, Equatable {
    /// The node's data (small data is kept inside the node: `NodeData`).
    public var data: [UInt8] {
        get { payload.bytes }
        set { payload = NodeData(newValue) }
    }
    private var payload: NodeData
    public var stat: Stat
    /// Names (last segments) of the children, in order (no sort per listing).
    public var children: ChildNames
    /// Next sequence number handed to a sequential child.
    public var sequenceNext: UInt64
    /// Sequence numbers below this may have been handed out: a log record says so.
    /// Recovery restarts `sequenceNext` here.
    public var sequenceReserved: UInt64
    /// Quotas (PROTOCOL.md §8): the session that created the node while it was open, 0 for none. It
    /// stays after that session ends (and then counts for no one). Bookkeeping, not state: not
    /// logged, not in snapshots, not compared. Kept here rather than in a table of its own keyed by
    /// path: no second tree entry per node, no second path hash per create and delete.
    public var creator: UInt64

    public init(data: [UInt8], stat: Stat, children: ChildNames = [], sequenceNext: UInt64 = 0,
                sequenceReserved: UInt64 = 0, creator: UInt64 = 0) {
        self.payload = NodeData(data)
        self.stat = stat
        self.children = children
        self.sequenceNext = sequenceNext
        self.sequenceReserved = sequenceReserved
        self.creator = creator
    }

    public var kind: NodeKind { stat.kind }

    /// The node's state: everything but `creator`.
    public static func == (left: Node, right: Node) -> Bool {
        left.payload == right.payload && left.stat == right.stat && left.children == right.children
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
