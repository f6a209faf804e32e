/// Counters since `Store.open` (recovery's own writes included), for the server's metrics endpoint.
public struct StoreMetrics: Sendable, Equatable {
    /// Bytes written to log segments: headers and records.
    public var bytesWritten: UInt64 = 0
    /// fsync calls on log segments and on the data directory (snapshot writes not included: they
    /// run on another thread and are the writer's).
    public var fsyncCount: UInt64 = 0
    /// How long the fsyncs of the log (segment and directory) took: what a write waits for.
    public var fsyncDurations = LatencyHistogram(boundsNanoseconds: LatencyHistogram.serviceBounds)
    public var recordsAppended: UInt64 = 0
    /// The segment being appended to.
    public var segmentFileName: String = ""
    public var segmentFirstLSN: LogSequenceNumber = 0
    /// Size of the current segment, buffered bytes not included.
    public var segmentBytes: UInt64 = 0
    /// Segments on disk, the current one included.
    public var segmentCount: Int = 0
    /// The last LSN assigned.
    public var lastLSN: LogSequenceNumber = 0
    /// The last LSN written to the kernel.
    public var writtenLSN: LogSequenceNumber = 0
    /// The last LSN known to be on stable storage.
    public var durableLSN: LogSequenceNumber = 0
}
