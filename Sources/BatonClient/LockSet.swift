import BatonProtocol

// acquireAll (PROTOCOL.md §12.14): several locks, all or none.

extension Calls {
    static func acquireAll(_ locks: [LockSetMember], timeout: Duration?, lease: Duration?) throws(BatonError) -> Call<[LockGrant]> {
        guard (1...LockSetMember.countMax).contains(locks.count) else {
            throw .invalidArgument("acquireAll takes 1 to \(LockSetMember.countMax) locks")
        }
        // The wait and the lease are checked as for one acquire.
        let shape = try lockRequest(locks[0].path, kind: .exclusive, permits: 1, timeout: timeout, lease: lease)
        return Call(request: .acquireAll(locks: locks, waitMilliseconds: shape.waitMilliseconds,
                                         leaseMilliseconds: shape.leaseMilliseconds),
                    usesRequestTimeout: false) { body in
            guard case .grantedAll(let holds) = body, holds.count == locks.count else { return nil }
            return zip(locks, holds).map { lock, hold in
                LockGrant(path: lock.path, node: hold.node, token: hold.token, kind: lock.kind)
            }
        }
    }
}

extension BatonClient {
    /// Acquires every lock of `locks` or none, and returns one grant per lock in the same order (each
    /// with its own fencing token; release each). The server takes them in path order, so sets never
    /// deadlock with each other. `timeout` bounds the whole set (nil: forever; zero: try each once);
    /// `lease` bounds each hold from its own grant. On any failure nothing is held.
    public func acquireAll(_ locks: [LockSetMember], timeout: Duration? = nil, lease: Duration? = nil)
        async throws(BatonError) -> [LockGrant] {
        try await perform(try Calls.acquireAll(locks, timeout: timeout, lease: lease))
    }

    /// `acquireAll` of exclusive locks.
    public func acquireAll(_ paths: [String], timeout: Duration? = nil, lease: Duration? = nil)
        async throws(BatonError) -> [LockGrant] {
        try await acquireAll(paths.map { LockSetMember(path: $0) }, timeout: timeout, lease: lease)
    }
}

extension BlockingClient {
    /// See `BatonClient.acquireAll`. Blocks the calling thread until every lock is held or the set failed.
    public func acquireAll(_ locks: [LockSetMember], timeout: Duration? = nil, lease: Duration? = nil)
        throws(BatonError) -> [LockGrant] {
        try perform(try Calls.acquireAll(locks, timeout: timeout, lease: lease))
    }

    /// `acquireAll` of exclusive locks.
    public func acquireAll(_ paths: [String], timeout: Duration? = nil, lease: Duration? = nil) throws(BatonError) -> [LockGrant] {
        try acquireAll(paths.map { LockSetMember(path: $0) }, timeout: timeout, lease: lease)
    }
}
