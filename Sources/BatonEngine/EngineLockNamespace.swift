import BatonLocks
import BatonNamespace
import BatonProtocol

/// The lock recipe's view of the embedded namespace: every operation answers at once, and watches
/// are internal watchers (`Watcher.internal(token)`) whose firing the engine routes back here.
final class EngineLockNamespace: ImmediateLockNamespace {
    let namespace: Namespace
    /// The time of the engine call in progress: stamps nodes the recipe creates.
    var now: Time
    private var nextToken: UInt64 = 1
    private var watches: [UInt64: LockWatch] = [:]

    init(namespace: Namespace, now: Time) {
        self.namespace = namespace
        self.now = now
    }

    /// Internal watches registered and not fired yet (for tests: they must not leak).
    var watchCount: Int { watches.count }

    /// Only the recipe deletes waiter nodes here (client requests may not, `Engine.lockNodeRefusal`),
    /// besides a session's end, which the manager hears of first, and an operator's forceRelease,
    /// which tells it (`Engine.deleteLockNode`): the manager needs no watch on its own nodes.
    var reportsDeletions: Bool { true }

    /// An internal watch fired: hand it to the recipe (once).
    func fire(token: UInt64, type: WatchEventType) {
        watches.removeValue(forKey: token)?(type)
    }

    private func register(_ watch: LockWatch?) -> Watcher? {
        guard let watch else { return nil }
        let token = nextToken
        nextToken += 1
        watches[token] = watch
        return .internal(token)
    }

    private func forget(_ watcher: Watcher?) {
        guard let watcher, case .internal(let token) = watcher else { return }
        watches[token] = nil
        namespace.removeWatches(of: watcher)
    }

    func create(path: String, data: [UInt8], mode: CreateMode, owner: UInt64,
                completion: @escaping (Result<LockCreatedNode, ReplyError>) -> Void) {
        completion(create(path: path, data: data, mode: mode, owner: owner))
    }

    func create(path: String, data: [UInt8], mode: CreateMode, owner: UInt64) -> Result<LockCreatedNode, ReplyError> {
        do throws(ReplyError) {
            // Every path the recipe creates or deletes is proven valid but for its length (a waiter's
            // name under a lock path `lockRefusal` checked, its ancestors, or a path the namespace gave).
            let created = try namespace.createLockNode(path, data: data, mode: mode, session: owner, now: now)
            return .success(LockCreatedNode(path: created.path, stat: created.stat,
                                            parentCreatedTransaction: created.parentCreatedTransaction))
        } catch {
            return .failure(error)
        }
    }

    func children(path: String, watch: LockWatch?, completion: @escaping (Result<[String], ReplyError>) -> Void) {
        let watcher = register(watch)
        do throws(ReplyError) {
            completion(.success(try namespace.children(path, watcher: watcher).names))
        } catch {
            forget(watcher)
            completion(.failure(error))
        }
    }

    func exists(path: String, watch: LockWatch?, completion: @escaping (Result<Stat?, ReplyError>) -> Void) {
        let watcher = register(watch)
        do throws(ReplyError) {
            let stat = try namespace.exists(path, watcher: watcher)
            // The recipe only watches nodes for their deletion; a watch on a missing waiter node would
            // wait for a creation that never comes (sequence names are not reused), so drop it.
            if stat == nil { forget(watcher) }
            completion(.success(stat))
        } catch {
            forget(watcher)
            completion(.failure(error))
        }
    }

    func getData(path: String, completion: @escaping (Result<[UInt8], ReplyError>) -> Void) {
        do throws(ReplyError) {
            completion(.success(try namespace.get(path).data))
        } catch {
            completion(.failure(error))
        }
    }

    func delete(path: String, expectedVersion: Int32, completion: @escaping (Result<Void, ReplyError>) -> Void) {
        completion(delete(path: path, expectedVersion: expectedVersion))
    }

    func delete(path: String, expectedVersion: Int32) -> Result<Void, ReplyError> {
        do throws(ReplyError) {
            try namespace.deleteLockNode(path, expectedVersion: expectedVersion, now: now)
            return .success(())
        } catch {
            return .failure(error)
        }
    }
}
