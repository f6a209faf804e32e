import BatonProtocol
import Collections

enum WatchKind: Hashable {
    /// Set by get, or by exists (on an existing node, or on a missing one: then it fires `created`).
    case data
    /// Set by children.
    case children
}

struct WatchKey: Hashable {
    var path: String
    var kind: WatchKind
}

/// One-shot watches with ZooKeeper's rules: a registration fires at most once; the same watcher
/// on the same path and kind is registered once; a deletion notifies a watcher once even if it
/// watched both the data and the children. Paths match as Swift strings (canonically equivalent
/// spellings are one path, PROTOCOL.md §10.1); an event names the path as its watcher spelled it.
extension Namespace {
    func addWatch(_ watcher: Watcher, path: String, kind: WatchKind) throws(ReplyError) {
        let key = WatchKey(path: path, kind: kind)
        let registered = watchesByWatcher[watcher]
        if registered?.contains(key) == true { return }
        // Sessions are bounded; internal watchers are bounded by the lock layer's waiter limits.
        if case .session = watcher, watchCount(of: watcher) >= limits.watchesPerSessionMax {
            throw ReplyError(.tooManyWatches, "at most \(limits.watchesPerSessionMax) watches per session")
        }
        watchesByWatcher[watcher, default: []].insert(key)
        switch kind {
        case .data: dataWatches[path, default: [:]][watcher] = path
        case .children: childWatches[path, default: [:]][watcher] = path
        }
    }

    /// Number of watches a watcher has registered, one-shot and persistent.
    public func watchCount(of watcher: Watcher) -> Int {
        (watchesByWatcher[watcher]?.count ?? 0) + persistentWatchCount(of: watcher)
    }

    /// Drops every watch of a watcher (its session ended, or a lock waiter went away).
    public func removeWatches(of watcher: Watcher) {
        removePersistentWatches(of: watcher)
        guard let keys = watchesByWatcher.removeValue(forKey: watcher) else { return }
        for key in keys {
            switch key.kind {
            case .data: Self.remove(watcher, at: key.path, from: &dataWatches)
            case .children: Self.remove(watcher, at: key.path, from: &childWatches)
            }
        }
    }

    private static func remove(_ watcher: Watcher, at path: String, from table: inout [String: OrderedDictionary<Watcher, String>]) {
        table[path]?.removeValue(forKey: watcher)
        if table[path]?.isEmpty == true { table.removeValue(forKey: path) }
    }

    /// One change: each watcher it concerns hears of it once, whether through one-shot watches
    /// (fired first, and gone) or persistent ones (which stay), as ZooKeeper's `triggerWatch` does.
    func fireWatches(_ type: WatchEventType, path: String) {
        // Every change comes through here: with no watch of any kind set (a lock workload, say),
        // no path is hashed.
        guard !dataWatches.isEmpty || !childWatches.isEmpty || !persistentWatches.isEmpty else { return }
        var notified: Set<Watcher> = []
        switch type {
        case .created, .dataChanged:
            fire(dataWatches.removeValue(forKey: path), kind: .data, type: type, path: path, &notified)
        case .childrenChanged:
            fire(childWatches.removeValue(forKey: path), kind: .children, type: type, path: path, &notified)
        case .deleted:
            fire(dataWatches.removeValue(forKey: path), kind: .data, type: type, path: path, &notified)
            fire(childWatches.removeValue(forKey: path), kind: .children, type: type, path: path, &notified)
        }
        if !persistentWatches.isEmpty { firePersistentWatches(type, path: path, &notified) }
    }

    private func fire(_ watchers: OrderedDictionary<Watcher, String>?, kind: WatchKind, type: WatchEventType, path: String,
                      _ notified: inout Set<Watcher>) {
        guard let watchers else { return }
        let key = WatchKey(path: path, kind: kind)
        for (watcher, spelling) in watchers {
            watchesByWatcher[watcher]?.remove(key)
            if watchesByWatcher[watcher]?.isEmpty == true { watchesByWatcher.removeValue(forKey: watcher) }
            if notified.insert(watcher).inserted { outbox.append(.watch(watcher, type, path: spelling)) }
        }
    }
}
