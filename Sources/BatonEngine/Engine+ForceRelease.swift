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
            if backend != nil {
                // The queue lives in ZooKeeper, shared with other sidecars (PROTOCOL.md §16).
                throw ReplyError(.invalidArgument, "forceRelease is not available with the zookeeper store")
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
        for target in targets {
            // Gone already (its session just ended): nothing left to end.
            guard (try? namespace.delete(target.node, expectedVersion: -1, now: now)) != nil else { continue }
            ended += 1
            // The recipe hears of the deletion through its watch, in this drain: lockLost, next grant.
            drain(now: now)
        }
        reply(connection, requestID, .forceRelease, .success(.forceReleased(ended: ended)), now: now)
    }
}
