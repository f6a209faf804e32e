import BatonProtocol
import Collections

/// Persistent and recursive watches (ZooKeeper 3.6 `addWatch`, PROTOCOL.md §11.1): registrations
/// that stay after they fire, until removed or their session ends. A persistent watch hears every
/// event of its node (what a data, exists and child watch would together); a recursive one hears
/// `created`, `deleted` and `dataChanged` of its node and every descendant, never `childrenChanged`
/// (the child's own `created`/`deleted` says it), as in ZooKeeper. They count against
/// `watchesPerSessionMax` with the one-shot ones.
struct PersistentWatches {
    /// Per mode, per path: each watcher with the path as it spelled it.
    var exact: [String: OrderedDictionary<Watcher, String>] = [:]
    var recursive: [String: OrderedDictionary<Watcher, String>] = [:]
    var byWatcher: [Watcher: Set<PersistentWatchKey>] = [:]

    var isEmpty: Bool { byWatcher.isEmpty }

    subscript(mode: WatchMode) -> [String: OrderedDictionary<Watcher, String>] {
        get { mode == .persistent ? exact : recursive }
        set { if mode == .persistent { exact = newValue } else { recursive = newValue } }
    }
}

struct PersistentWatchKey: Hashable {
    var path: String
    var mode: WatchMode
}

extension Namespace {
    /// Registers a persistent or recursive watch; the node need not exist (as in ZooKeeper). Adding
    /// one the watcher holds already changes nothing.
    public func addPersistentWatch(_ watcher: Watcher, path: String, mode: WatchMode) throws(ReplyError) {
        try NamespacePath.validate(path, limits: limits)
        let key = PersistentWatchKey(path: path, mode: mode)
        if persistentWatches.byWatcher[watcher]?.contains(key) == true { return }
        if case .session = watcher, watchCount(of: watcher) >= limits.watchesPerSessionMax {
            throw ReplyError(.tooManyWatches, "at most \(limits.watchesPerSessionMax) watches per session")
        }
        persistentWatches.byWatcher[watcher, default: []].insert(key)
        switch mode {
        case .persistent: persistentWatches.exact[path, default: [:]][watcher] = path
        case .recursive: persistentWatches.recursive[path, default: [:]][watcher] = path
        }
    }

    /// Removes the watcher's watch of that mode on `path`; `noWatch` if it holds none.
    public func removePersistentWatch(_ watcher: Watcher, path: String, mode: WatchMode) throws(ReplyError) {
        try NamespacePath.validate(path, limits: limits)
        let key = PersistentWatchKey(path: path, mode: mode)
        guard persistentWatches.byWatcher[watcher]?.remove(key) != nil else {
            throw ReplyError(.noWatch, "no \(mode) watch on \(path)")
        }
        if persistentWatches.byWatcher[watcher]?.isEmpty == true { persistentWatches.byWatcher.removeValue(forKey: watcher) }
        removeRegistration(watcher, key)
    }

    func persistentWatchCount(of watcher: Watcher) -> Int { persistentWatches.byWatcher[watcher]?.count ?? 0 }

    func removePersistentWatches(of watcher: Watcher) {
        guard let keys = persistentWatches.byWatcher.removeValue(forKey: watcher) else { return }
        for key in keys { removeRegistration(watcher, key) }
    }

    private func removeRegistration(_ watcher: Watcher, _ key: PersistentWatchKey) {
        persistentWatches[key.mode][key.path]?.removeValue(forKey: watcher)
        if persistentWatches[key.mode][key.path]?.isEmpty == true { persistentWatches[key.mode].removeValue(forKey: key.path) }
    }

    /// After the one-shot watches of the same change (`fireWatches`): persistent watches on the path,
    /// then recursive ones on the path and its ancestors, nearest first. A recursive watch names the
    /// changed node as its watcher spelled the watched one, followed by the rest of the change's path.
    func firePersistentWatches(_ type: WatchEventType, path: String, _ notified: inout Set<Watcher>) {
        if let watchers = persistentWatches.exact[path] {
            for (watcher, spelling) in watchers where notified.insert(watcher).inserted {
                outbox.append(.watch(watcher, type, path: spelling))
            }
        }
        guard type != .childrenChanged, !persistentWatches.recursive.isEmpty else { return }
        var ancestor = path
        while true {
            if let watchers = persistentWatches.recursive[ancestor] {
                // `ancestor` was cut from `path`, so its bytes are a prefix of the path's.
                let rest = String(decoding: path.utf8.dropFirst(ancestor.utf8.count), as: UTF8.self)
                for (watcher, spelling) in watchers where notified.insert(watcher).inserted {
                    // The root has one spelling, and the rest of the path keeps its leading "/" only below it.
                    let named = ancestor == NamespacePath.root ? path : spelling + rest
                    outbox.append(.watch(watcher, type, path: named))
                }
            }
            if ancestor == NamespacePath.root { return }
            ancestor = NamespacePath.parent(of: ancestor)
        }
    }
}
