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

    public init(data: [UInt8], stat: Stat, children: ChildNames = [], sequenceNext: UInt64 = 0,
                sequenceReserved: UInt64 = 0) {
        self.data = data
        self.stat = stat
        self.children = children
        self.sequenceNext = sequenceNext
        self.sequenceReserved = sequenceReserved
    }

    public var kind: NodeKind { stat.kind }
}
