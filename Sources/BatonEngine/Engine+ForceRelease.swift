import BatonLocks
import BatonNamespace
import BatonProtocol

// `forceRelease` (Proto/PROTOCOL.md §12.13): an operator ends another session's hold or wait of a
// lock. It deletes the waiter's node, the one thing the recipe already answers for every store: a
// holder whose node is deleted hears `lockLost(nodeDeleted)`, a waiter's acquire is answered
// `lockLost`, and the next waiter is granted with a higher fencing token. The `admin` permission
// on the path is checked before this runs (Engine+Access.swift).

extension Engine {
    func forceRelease(_ path: String, victim: UInt64, requestID: UInt32, connection: ConnectionID, session: UInt64,
                      now: Time) {
        do throws(ReplyError) {
            try NamespacePath.validate(path, limits: limits)
            if let backend {
                return forceReleaseOnBackend(backend, path, victim: victim, requestID: requestID, connection: connection, now: now)
            }
            guard namespace.node(at: path) != nil else { throw ReplyError(.noNode, path) }
        } catch {
            reply(connection, requestID, .forceRelease, .failure(error), now: now)
            return
        }
        let entries = locks.manager?.inspect(path: path, now: now) ?? []
        // Without a session: the current holders (what an operator unjams); with one: all it has there.
        let targets = victim == 0 ? entries.filter { $0.position == .holder } : entries.filter { $0.sessionID == victim }
        var ended: UInt32 = 0
        for target in targets where deleteLockNode(target.node, now: now) {
            ended += 1
        }
        reply(connection, requestID, .forceRelease, .success(.forceReleased(ended: ended)), now: now)
    }

    /// Deletes a waiter node of the embedded namespace behind the recipe and tells the recipe (the
    /// embedded namespace `reportsDeletions`: the manager watches none of its own nodes), which
    /// answers in this drain: a holder's `lockLost(nodeDeleted)`, a waiter's `lockLost`, the next
    /// grant. False if the node was gone already (its session just ended): nothing left to end.
    func deleteLockNode(_ path: String, now: Time) -> Bool {
        guard (try? namespace.delete(path, expectedVersion: anyVersion, now: now)) != nil else { return false }
        if locks.manager != nil {
            applyLockInput(.nodeDeleted(path: path), now: now)
        } else {
            drain(now: now)
        }
        return true
    }
}

extension Engine {
    /// Over ZooKeeper (PROTOCOL.md §16) the queue is read from the ensemble, so session 0 ends the
    /// holders of every sidecar; a session id names one of this sidecar's sessions. Each node is
    /// deleted in ZooKeeper: the sidecar serving it sees its own node go (the recipe watches it)
    /// and tells its holder `lockLost`; the next waiter's sidecar grants it. Answered when all the
    /// deletes are (like `inspect`, it takes no place in the reply order).
    func forceReleaseOnBackend(_ backend: NamespaceBackend, _ path: String, victim: UInt64, requestID: UInt32,
                               connection: ConnectionID, now: Time) {
        backendState.now = now
        beginPendingRequest(on: connection)
        let finish: (Result<ReplyBody, ReplyError>) -> Void = { [weak self] result in
            guard let self else { return }
            endPendingRequest(on: connection)
            guard connections[connection] != nil else { return }
            reply(connection, requestID, .forceRelease, result, now: backendState.now)
        }
        LockQueueRead.read(backend.lockNamespace, lockPath: path, scope: .all) { [weak self] result in
            guard let self else { return }
            let entries: [LockQueueEntry]
            switch result {
            case .failure(let error): return finish(.failure(error))
            case .success(let read): entries = read
            }
            let local = Set(locks.manager?.inspect(path: path, now: backendState.now)
                .filter { $0.sessionID == victim }.map(\.node) ?? [])
            let targets = entries.filter { entry in
                entry.stat != nil && (victim == 0 ? entry.entitled : local.contains(entry.path))
            }
            guard !targets.isEmpty else { return finish(.success(.forceReleased(ended: 0))) }
            var remaining = targets.count
            var ended: UInt32 = 0
            for target in targets {
                backend.lockNamespace.delete(path: target.path, expectedVersion: anyVersion) { result in
                    // Gone already (its session ended meanwhile): not counted.
                    if case .success = result { ended += 1 }
                    remaining -= 1
                    if remaining == 0 { finish(.success(.forceReleased(ended: ended))) }
                }
            }
        }
    }
}
