import BatonProtocol

/// One waiter node of a lock as the namespace shows it.
public struct LockQueueEntry: Sendable, Equatable {
    public var name: WaiterName
    public var path: String
    /// nil when only entitled nodes were read (`LockQueueRead.Scope.entitled`) and this one is not.
    public var stat: Stat?
    public var entitled: Bool
}

/// Reads a lock's queue from the namespace itself rather than from a sidecar's own waiters, so that a
/// sidecar can answer `checkToken` and `inspect` for holders on other sidecars (ZooKeeper store,
/// PROTOCOL.md §16): the lock node's children, the entitlement rule, and the stats (czxid = token) of
/// the nodes asked for.
///
/// The children and the stats are separate reads: if a node whose stat is needed is gone by then, the
/// queue changed under the read and it starts again, at most `attemptsMax` times; then it fails with
/// `storageFailure` (a lock that busy is better asked again than answered from a torn view).
public final class LockQueueRead {
    public enum Scope: Sendable { case entitled, all }

    public static let attemptsMax = 4

    private let namespace: LockNamespace
    private let lockPath: String
    private let scope: Scope
    private let completion: (Result<[LockQueueEntry], ReplyError>) -> Void
    private var attempt = 0
    private var finished = false

    /// Reads the queue of the lock at `lockPath`; `completion` runs exactly once. `.noNode` if the lock
    /// node does not exist.
    public static func read(_ namespace: LockNamespace, lockPath: String, scope: Scope,
                            completion: @escaping (Result<[LockQueueEntry], ReplyError>) -> Void) {
        LockQueueRead(namespace: namespace, lockPath: lockPath, scope: scope, completion: completion).start()
    }

    private init(namespace: LockNamespace, lockPath: String, scope: Scope,
                 completion: @escaping (Result<[LockQueueEntry], ReplyError>) -> Void) {
        self.namespace = namespace
        self.lockPath = lockPath
        self.scope = scope
        self.completion = completion
    }

    private func finish(_ result: Result<[LockQueueEntry], ReplyError>) {
        guard !finished else { return }
        finished = true
        completion(result)
    }

    private func nodePath(_ name: WaiterName) -> String {
        (lockPath == "/" ? "" : lockPath) + "/" + name.name
    }

    private func start() {
        attempt += 1
        guard attempt <= Self.attemptsMax else {
            return finish(.failure(ReplyError(.storageFailure, "the queue of \(lockPath) kept changing while it was read")))
        }
        // The read holds itself (self) in its completions until it finishes.
        namespace.children(path: lockPath, watch: nil) { result in
            switch result {
            case .success(let names): self.listed(names.compactMap(WaiterName.init(parsing:)).sorted())
            case .failure(let error): self.finish(.failure(error))
            }
        }
    }

    private func listed(_ sorted: [WaiterName]) {
        guard let first = sorted.first else { return finish(.success([])) }
        guard first.kind == .semaphore else { return judged(sorted, permits: nil) }
        namespace.getData(path: nodePath(first)) { result in
            switch result {
            case .success(let data): self.judged(sorted, permits: WaiterName.permits(fromData: data) ?? 0)
            case .failure(let error) where error.code == .noNode: self.start()
            case .failure(let error): self.finish(.failure(error))
            }
        }
    }

    private func judged(_ sorted: [WaiterName], permits: UInt32?) {
        let entitled = LockEntitlement.entitled(sorted, permits: permits)
        var entries = zip(sorted, entitled).map { name, entitled in
            LockQueueEntry(name: name, path: nodePath(name), stat: nil, entitled: entitled)
        }
        let wanted = entries.indices.filter { scope == .all || entries[$0].entitled }
        guard !wanted.isEmpty else { return finish(.success(entries)) }
        var outstanding = wanted.count
        var changed = false
        var failure: ReplyError?
        for index in wanted {
            namespace.exists(path: entries[index].path, watch: nil) { result in
                switch result {
                case .success(let stat?): entries[index].stat = stat
                case .success(nil): changed = true
                case .failure(let error): failure = failure ?? error
                }
                outstanding -= 1
                guard outstanding == 0 else { return }
                if let failure { return self.finish(.failure(failure)) }
                if changed { return self.start() }
                self.finish(.success(entries))
            }
        }
    }
}
