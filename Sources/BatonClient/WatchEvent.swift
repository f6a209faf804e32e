import BatonProtocol

/// A one-shot watch fired: what happened and to which node.
public struct WatchEvent: Sendable, Equatable, CustomStringConvertible {
    public var type: WatchEventType
    public var path: String
    public init(type: WatchEventType, path: String) {
        self.type = type
        self.path = path
    }
    public var description: String { "\(type) \(path)" }
}

/// Called once when the watch set by the call that took it fires. Runs on the client's serial event
/// queue, in the order the server sent the events; it may call the client (async or blocking).
public typealias WatchCallback = @Sendable (WatchEvent) -> Void

/// Which table a watch lives in, as in ZooKeeper: `exists`/`get` set data watches, `children` sets child watches.
enum WatchKind: Sendable {
    case data
    case children

    /// The tables an event of `type` fires: creation and data changes fire data watches, children
    /// changes fire child watches, deletion fires both.
    static func kinds(firedBy type: WatchEventType) -> (data: Bool, children: Bool) {
        switch type {
        case .created, .dataChanged: return (true, false)
        case .childrenChanged: return (false, true)
        case .deleted: return (true, true)
        }
    }
}

/// A watch to record when the reply that sets it arrives (events for it can only follow that reply).
struct WatchRegistration: Sendable {
    var kind: WatchKind
    var path: String
    var callback: WatchCallback
}
