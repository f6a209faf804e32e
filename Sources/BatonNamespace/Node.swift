import BatonProtocol

/// One node of the tree. `stat.dataLength` and `stat.childrenCount` are kept in step with
/// `data` and `children`.
public struct Node: Sendable, Equatable {
    public var data: [UInt8]
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
        self.data = data
        self.stat = stat
        self.children = children
        self.sequenceNext = sequenceNext
        self.sequenceReserved = sequenceReserved
        self.creator = creator
    }

    public var kind: NodeKind { stat.kind }

    /// The node's state: everything but `creator`.
    public static func == (left: Node, right: Node) -> Bool {
        left.data == right.data && left.stat == right.stat && left.children == right.children
            && left.sequenceNext == right.sequenceNext && left.sequenceReserved == right.sequenceReserved
    }
}
