import BatonProtocol

/// Who a watch notifies. Session watchers are clients; internal watchers serve the lock recipe
/// inside the daemon (the token names the waiter that watches its predecessor).
public enum Watcher: Hashable, Sendable {
    case session(UInt64)
    case `internal`(UInt64)
}

/// What the namespace produces, in order. It never calls out: its owner drains these.
public enum NamespaceOutput: Sendable, Equatable {
    /// A write-ahead log record (opaque bytes, see docs/RECORDS.md) that must be durable before
    /// any reply depending on it is sent.
    case persist([UInt8])
    /// A one-shot watch fired.
    case watch(Watcher, WatchEventType, path: String)
}
