import BatonProtocol

public struct NamespaceConfiguration: Sendable {
    public var limits: Limits = .default
    /// Session timeout used when a client asks for 0.
    public var defaultSessionTimeoutMilliseconds: UInt32 = 10_000
    /// An emptied container is deleted once it has stayed empty this long.
    public var containerGraceMilliseconds: UInt64 = 10_000
    /// How far ahead of use the transaction counter is reserved in the log (one record per this many
    /// writes, a lock pair being two). Each reservation also costs a MARKS write (4 fsyncs on the
    /// loop, docs/STORAGE.md), so it is large: zxids are 64 bits and need only increase, and a
    /// restart skips at most this many.
    public var transactionReserveAhead: UInt64 = 100_000
    /// How far ahead of use a parent's sequence counter is reserved in the log. A new highest
    /// reservation also costs a MARKS write, and one lock's node takes a sequence number per waiter,
    /// so this is large too: numbers have 10 digits and need only increase, and a restart skips at
    /// most this many under each parent.
    public var sequenceReserveAhead: UInt64 = 100_000
    /// false: nothing keeps the log records (`batond --in-memory` has no log), so none is made,
    /// encoded or handed out (`.persist`); the namespace's state and its replies are the same.
    public var logsRecords = true
    public init() {}
}
