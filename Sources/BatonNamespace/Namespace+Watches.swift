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
        if case .session = watcher, (registered?.count ?? 0) >= limits.watchesPerSessionMax {
            throw ReplyError(.tooManyWatches, "at most \(limits.watchesPerSessionMax) watches per session")
        }
        watchesByWatcher[watcher, default: []].insert(key)
        switch kind {
        case .data: dataWatches[path, default: [:]][watcher] = path
        case .children: childWatches[path, default: [:]][watcher] = path
        }
    }

    /// Number of watches a watcher has registered.
    public func watchCount(of watcher: Watcher) -> Int { watchesByWatcher[watcher]?.count ?? 0 }

    /// Drops every watch of a watcher (its session ended, or a lock waiter went away).
    public func removeWatches(of watcher: Watcher) {
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

    func fireWatches(_ type: WatchEventType, path: String) {
        switch type {
        case .created, .dataChanged:
            fire(dataWatches.removeValue(forKey: path), kind: .data, type: type, path: path, skipping: [:])
        case .childrenChanged:
            fire(childWatches.removeValue(forKey: path), kind: .children, type: type, path: path, skipping: [:])
        case .deleted:
            let dataWatchers = dataWatches.removeValue(forKey: path)
            fire(dataWatchers, kind: .data, type: type, path: path, skipping: [:])
            fire(childWatches.removeValue(forKey: path), kind: .children, type: type, path: path,
                 skipping: dataWatchers ?? [:])
        }
    }

    private func fire(_ watchers: OrderedDictionary<Watcher, String>?, kind: WatchKind, type: WatchEventType, path: String,
                      skipping alreadyNotified: OrderedDictionary<Watcher, String>) {
        guard let watchers else { return }
        let key = WatchKey(path: path, kind: kind)
        for (watcher, spelling) in watchers {
            watchesByWatcher[watcher]?.remove(key)
            if watchesByWatcher[watcher]?.isEmpty == true { watchesByWatcher.removeValue(forKey: watcher) }
            if alreadyNotified[watcher] == nil { outbox.append(.watch(watcher, type, path: spelling)) }
        }
    }
}
