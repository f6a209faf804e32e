import BatonProtocol

/// Sessions: identity, secret and liveness. Ending one (close or expiry) drops its watches and
/// deletes its ephemeral nodes, which fires the watches of others.
extension Namespace {
    /// Opens a session; the timeout is clamped into the configured range (0 asks for the default).
    public func openSession(timeoutMilliseconds requested: UInt32, now: Time) throws(ReplyError) -> SessionInfo {
        guard sessions.count < limits.sessionsMax else {
            throw ReplyError(.tooManySessions, "at most \(limits.sessionsMax) sessions")
        }
        let timeout = min(max(requested == 0 ? configuration.defaultSessionTimeoutMilliseconds : requested,
                              limits.sessionTimeoutMillisecondsMin), limits.sessionTimeoutMillisecondsMax)
        var id = nextSessionID
        while id == 0 || sessions[id] != nil { id &+= 1 }
        nextSessionID = id &+ 1
        let secret = SessionSecret(high: random.next(), low: random.next())
        let session = SessionInfo(id: id, secret: secret, timeoutMilliseconds: timeout,
                                  deadlineMilliseconds: now.monotonicMilliseconds + UInt64(timeout))
        sessions[id] = session
        sessionNodes[id] = SessionNodes()
        sessionDeadlines.insert(SessionDeadline(deadlineMilliseconds: session.deadlineMilliseconds, sessionID: id))
        return session
    }

    public func session(_ id: UInt64) -> SessionInfo? { sessions[id] }

    public var sessionCount: Int { sessions.count }

    /// Pushes the session's deadline a full timeout past `now`; false if it is not open.
    @discardableResult
    public func touch(_ id: UInt64, now: Time) -> Bool {
        // One hash of the id (every request of a session comes through here): changed in place at
        // its index (`sessions[id]?.…` went through the optional `_modify`, which moves the entry out
        // and back: ~380 instructions a call against ~150). The heap keeps the old, earlier deadline;
        // `dueSessions` re-files the session when it pops.
        guard let index = sessions.index(forKey: id) else { return false }
        sessions.values[index].extendDeadline(now: now)
        return true
    }

    /// Ends a session now: its watches go, then its ephemeral nodes are deleted (oldest first),
    /// firing the watches of others. Nothing is logged except counter reservations.
    public func closeSession(_ id: UInt64, now: Time) {
        guard sessions.removeValue(forKey: id) != nil else { return }
        removeWatches(of: .session(id))
        // Oldest first: by creation transaction, the set's keys (no node lookups to sort).
        let owned = (sessionNodes[id]?.ephemerals ?? [:]).sorted { $0.key < $1.key }
        var changes = makeChanges()
        for (_, path) in owned {
            // Ephemerals have no children, so the delete always applies.
            removeNode(path, sweep: false, &changes)
        }
        commit(changes, asOneRecord: false, now: now)
        precondition(sessionNodes[id]?.ephemerals.isEmpty ?? true, "ephemerals left behind by session \(id)")
        sessionNodes[id] = nil
    }

    /// Sessions whose deadline has passed, earliest first. They are still open: the caller ends
    /// each one (`closeSession`) after doing its own bookkeeping.
    public func dueSessions(now: Time) -> [UInt64] {
        var due: [UInt64] = []
        while let first = sessionDeadlines.min, first.deadlineMilliseconds <= now.monotonicMilliseconds {
            _ = sessionDeadlines.popMin()
            guard let session = sessions[first.sessionID] else { continue }
            if session.deadlineMilliseconds <= now.monotonicMilliseconds {
                due.append(first.sessionID)
            } else {
                sessionDeadlines.insert(SessionDeadline(deadlineMilliseconds: session.deadlineMilliseconds,
                                                        sessionID: first.sessionID))
            }
        }
        return due
    }

    /// Runs what is due: expires sessions (returned, already ended) and sweeps containers.
    @discardableResult
    public func tick(now: Time) -> [UInt64] {
        let expired = dueSessions(now: now)
        for id in expired { closeSession(id, now: now) }
        sweepContainers(now: now)
        return expired
    }

    /// The earliest monotonic time at which `tick` may have work. It can be early (a refreshed
    /// session is re-filed when its old deadline comes up), never late.
    public var nextDeadlineMilliseconds: UInt64? {
        let session = sessionDeadlines.min?.deadlineMilliseconds
        let container = writeRefusal == nil ? containerSweepQueue.first?.deadlineMilliseconds : nil
        switch (session, container) {
        case let (session?, container?): return min(session, container)
        case let (session?, nil): return session
        case let (nil, container?): return container
        case (nil, nil): return nil
        }
    }
}

extension SessionInfo {
    /// A full timeout past `now`, never earlier than it was.
    mutating func extendDeadline(now: Time) {
        deadlineMilliseconds = max(deadlineMilliseconds, now.monotonicMilliseconds + UInt64(timeoutMilliseconds))
    }
}
