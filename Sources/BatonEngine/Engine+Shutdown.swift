import BatonLocks
import BatonProtocol

extension Engine {
    /// The daemon is stopping (PROTOCOL.md §4.6). Every connection, in id order, gets: a `shuttingDown`
    /// reply to each of its waiting acquires (oldest first), then the unattributed `shuttingDown`
    /// reply (request id 0, opcode `hello`), then `.close`. Then every session ends (attached or
    /// not): its ephemeral nodes are deleted and its holds end, without telling anyone, since no
    /// connection is left to tell. Connections opened afterwards are refused with `shuttingDown`.
    ///
    /// The server calls this once, routes `takeOutputs()` as usual (log records still go to the
    /// store), and sends nothing else itself; `connectionClosed` for these connections is then a no-op.
    public func shutdown(now: Time) {
        guard !isShutDown else { return }
        isShutDown = true
        // Anything already routed went out before; nothing is pending across calls, but be sure.
        drain(now: now)
        let open = connections.keys.sorted()
        let goodbye = ReplyError(.shuttingDown, "batond is shutting down")
        for connection in open {
            for requestID in lockPendingAcquires(on: connection) {
                outputs.append(.send(connection, .reply(Reply(requestID: requestID, opcode: .acquire, result: .failure(goodbye)))))
            }
            outputs.append(.send(connection, .reply(Reply(requestID: 0, opcode: .hello, result: .failure(goodbye)))))
            outputs.append(.close(connection))
        }
        // Let go of every connection before any session ends, so that no frame follows a goodbye.
        var abandoned: [(ConnectionID, SmallSet<UInt32>)] = []
        for connection in open {
            guard let state = connections.removeValue(forKey: connection) else { continue }
            abandoned.append((connection, state.pendingAcquires))
            if let sessionID = state.sessionID, sessions[sessionID]?.connection == connection {
                sessions[sessionID]!.connection = nil
            }
        }
        // The acquires were answered above; the recipe deletes their waiter nodes. All at once: a
        // cancel may entitle a waiter of another connection, whose grant must find no one to answer.
        lockAbandonAcquires(of: abandoned, now: now)
        for sessionID in sessions.keys.sorted() {
            endSession(sessionID, reason: .shutdown, now: now)
            drain(now: now)
        }
    }

    /// True once `shutdown` ran.
    public var isShuttingDown: Bool { isShutDown }
}
