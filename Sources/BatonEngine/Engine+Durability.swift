import BatonProtocol

/// What the server's durability layer needs from the engine (docs/STORAGE.md, "Marks" and
/// "Storage failure").
extension Engine {
    /// The namespace's counter marks (transactions, sequences): the server keeps them durable
    /// outside the log before any reply carrying a value beyond them is sent.
    public var counterMarks: (transactions: UInt64, sequences: UInt64) { namespace.counterMarks }

    /// After recovery: restart the counters at or above marks kept outside the log.
    public func raiseCounters(transactions: UInt64, sequences: UInt64?) {
        namespace.raiseCounters(transactions: transactions, sequences: sequences)
    }

    /// While set, requests whose change would be logged are refused with this error; reads,
    /// heartbeats, sessions and lock operations that log nothing go on.
    public var writeRefusal: ReplyError? {
        get { namespace.writeRefusal }
        set { namespace.writeRefusal = newValue }
    }
}
