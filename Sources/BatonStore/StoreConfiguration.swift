public struct StoreConfiguration: Sendable, Equatable {
    public var fsyncPolicy: FsyncPolicy = .batch
    /// A segment rolls to a new file once the next record would take it past this size. A single
    /// record larger than this still gets a segment of its own.
    public var segmentBytesMax: Int = 64 * 1_048_576
    /// Largest payload `append` accepts: `StoreError.recordTooLarge`.
    public var recordBytesMax: Int = 16 * 1_048_576
    /// With `batch` and `none`, appends are buffered in memory until `commit`, or until this many
    /// bytes are waiting (then written, not fsynced), so a long turn does not hold an unbounded buffer.
    public var writeBufferBytesMax: Int = 1_048_576
    /// Snapshots kept by `pruneBefore`. At least 2, so a corrupt newest one falls back to the one
    /// before it, and the log is kept from that older snapshot on.
    public var snapshotsKept: Int = 2

    public init(fsyncPolicy: FsyncPolicy = .batch) {
        self.fsyncPolicy = fsyncPolicy
    }

    /// The relations that must hold; checked by `Store.open`.
    public func validate() {
        precondition(segmentBytesMax > StoreFormat.segmentHeaderBytes + StoreFormat.recordHeaderBytes,
                     "a segment must hold its header and a record")
        precondition(recordBytesMax > 0 && recordBytesMax <= StoreFormat.recordPayloadBytesLimit,
                     "recordBytesMax must be within what recovery accepts")
        precondition(writeBufferBytesMax > 0)
        precondition(snapshotsKept >= 2, "a corrupt newest snapshot must have one to fall back to")
    }
}
