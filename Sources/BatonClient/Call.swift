import BatonProtocol

/// One client operation, written once for both APIs: the request, the watch it sets, and how its
/// reply body becomes the caller's value.
struct Call<Value: Sendable>: Sendable {
    var request: Request
    var watch: WatchRegistration? = nil
    /// False for `acquire`: the server bounds it with the wait the caller asked for.
    var usesRequestTimeout = true
    var decode: @Sendable (ReplyBody) -> Value?

    static func unexpected(_ body: ReplyBody, for request: Request) -> BatonError {
        .protocolViolation("unexpected reply body \(body) to \(request.opcode)")
    }
}

/// The operations. Paths are sent as given: the server validates them and answers `invalidPath`.
enum Calls {
    static func ping() -> Call<Void> {
        Call(request: .ping) { body in if case .empty = body { return () } else { return nil } }
    }

    static func create(_ path: String, data: [UInt8], mode: CreateMode) -> Call<String> {
        Call(request: .create(path: path, data: data, mode: mode)) { body in
            if case .created(let created, _) = body { return created } else { return nil }
        }
    }

    static func createReturningStat(_ path: String, data: [UInt8], mode: CreateMode) -> Call<(path: String, stat: Stat)> {
        Call(request: .create(path: path, data: data, mode: mode)) { body in
            if case .created(let created, let stat) = body { return (created, stat) } else { return nil }
        }
    }

    static func delete(_ path: String, version: Int32) -> Call<Void> {
        Call(request: .delete(path: path, expectedVersion: version)) { body in
            if case .empty = body { return () } else { return nil }
        }
    }

    static func exists(_ path: String, watch: Bool, callback: WatchCallback?) -> Call<Stat?> {
        Call(request: .exists(path: path, watch: watch || callback != nil),
             watch: callback.map { WatchRegistration(kind: .data, path: path, callback: $0) }) { body in
            if case .exists(let stat) = body { return .some(stat) } else { return nil }
        }
    }

    static func get(_ path: String, watch: Bool, callback: WatchCallback?) -> Call<(data: [UInt8], stat: Stat)> {
        Call(request: .get(path: path, watch: watch || callback != nil),
             watch: callback.map { WatchRegistration(kind: .data, path: path, callback: $0) }) { body in
            if case .data(let stat, let data) = body { return (data, stat) } else { return nil }
        }
    }

    static func set(_ path: String, data: [UInt8], version: Int32) -> Call<Stat> {
        Call(request: .set(path: path, data: data, expectedVersion: version)) { body in
            if case .stat(let stat) = body { return stat } else { return nil }
        }
    }

    /// One page of child names after `after` (nil: from the first). Only the first page sets the
    /// watch: it then covers every change after the listing began.
    static func children(_ path: String, watch: Bool, callback: WatchCallback?, after: String? = nil,
                         limit: UInt32 = 0) -> Call<(names: [String], stat: Stat, more: Bool)> {
        let watches = after == nil && (watch || callback != nil)
        return Call(request: .children(path: path, watch: watches, after: after ?? "", limit: limit),
                    watch: after == nil ? callback.map { WatchRegistration(kind: .children, path: path, callback: $0) } : nil) { body in
            if case .children(let stat, let names, let more) = body { return (names, stat, more) } else { return nil }
        }
    }

    static func check(_ path: String, version: Int32) -> Call<Void> {
        Call(request: .check(path: path, expectedVersion: version)) { body in
            if case .empty = body { return () } else { return nil }
        }
    }

    static func multi(_ operations: [MultiOperation]) -> Call<[MultiResult]> {
        Call(request: .multi(operations)) { body in
            if case .multi(let results) = body { return results } else { return nil }
        }
    }

    static func acquire(_ lock: LockRequest) -> Call<LockGrant> {
        Call(request: .acquire(lock), usesRequestTimeout: false) { body in
            switch body {
            case .granted(let node, let token) where lock.owner.isEmpty:
                return LockGrant(path: lock.path, node: node, token: token, kind: lock.kind)
            case .held(let node, let token, let holdCount) where !lock.owner.isEmpty:
                return LockGrant(path: lock.path, node: node, token: token, kind: lock.kind,
                                 owner: lock.owner, holdCount: holdCount)
            default:
                return nil
            }
        }
    }

    static func renew(_ grant: LockGrant, leaseMilliseconds: UInt32) -> Call<Void> {
        Call(request: .renew(node: grant.node, token: grant.token, leaseMilliseconds: leaseMilliseconds)) { body in
            if case .empty = body { return () } else { return nil }
        }
    }

    /// A lease for `renew`: positive, in wire milliseconds.
    static func leaseMilliseconds(_ lease: Duration) throws(BatonError) -> UInt32 {
        guard let milliseconds = lease.wireMilliseconds, milliseconds > 0 else {
            throw .invalidArgument("lease must be positive and fit in UInt32 milliseconds: \(lease)")
        }
        return milliseconds
    }

    static func release(_ grant: LockGrant) -> Call<Void> {
        Call(request: .release(node: grant.node, token: grant.token)) { body in
            if case .empty = body { return () } else { return nil }
        }
    }

    static func requestRevocation(_ path: String) -> Call<UInt32> {
        Call(request: .requestRevocation(path: path)) { body in
            if case .revocation(let count) = body { return count } else { return nil }
        }
    }

    static func forceRelease(_ path: String, session: UInt64) -> Call<UInt32> {
        Call(request: .forceRelease(path: path, sessionID: session)) { body in
            if case .forceReleased(let ended) = body { return ended } else { return nil }
        }
    }

    static func checkToken(_ path: String, token: UInt64) -> Call<Bool> {
        Call(request: .checkToken(path: path, token: token)) { body in
            if case .tokenStatus(let current) = body { return current } else { return nil }
        }
    }

    static func inspect(_ path: String) -> Call<[LockEntry]> {
        Call(request: .inspect(path: path)) { body in
            if case .lockEntries(let entries) = body { return entries } else { return nil }
        }
    }

    static func backup(to file: String) -> Call<(lsn: UInt64, bytes: UInt64)> {
        Call(request: .backup(file: file)) { body in
            if case .backedUp(let lsn, let bytes) = body { return (lsn, bytes) } else { return nil }
        }
    }

    static func closeSession() -> Call<Void> {
        Call(request: .closeSession) { body in if case .empty = body { return () } else { return nil } }
    }

    static func hello(clientName: String) -> Call<(version: UInt16, serverName: String, frameBytesMax: UInt32)> {
        Call(request: .hello(version: ProtocolVersion.current, clientName: clientName)) { body in
            if case .hello(let version, let name, let frameBytesMax) = body { return (version, name, frameBytesMax) }
            return nil
        }
    }

    static func authenticate(token: [UInt8]) -> Call<Void> {
        Call(request: .authenticate(token: token)) { body in if case .empty = body { return () } else { return nil } }
    }

    static func openSession(timeoutMilliseconds: UInt32, flags: SessionFlags) -> Call<SessionInfo> {
        Call(request: .openSession(timeoutMilliseconds: timeoutMilliseconds, flags: flags)) { body in
            if case .session(let id, let secret, let timeout) = body {
                return SessionInfo(id: id, secret: secret, timeoutMilliseconds: timeout)
            }
            return nil
        }
    }

    static func resumeSession(id: UInt64, secret: SessionSecret) -> Call<UInt32> {
        Call(request: .resumeSession(sessionID: id, secret: secret)) { body in
            if case .resumed(let timeout) = body { return timeout } else { return nil }
        }
    }

    /// The lock request for the public parameters; durations become wire milliseconds.
    static func lockRequest(_ path: String, kind: LockKind, permits: UInt32, timeout: Duration?,
                            lease: Duration?, owner: String? = nil, revocable: Bool = false,
                            lockDelay: Duration? = nil) throws(BatonError) -> LockRequest {
        var wait = LockRequest.waitForever
        if let timeout {
            // `waitForever` is the sentinel, so the longest real wait is one millisecond less.
            guard let milliseconds = timeout.wireMilliseconds, milliseconds < LockRequest.waitForever else {
                throw .invalidArgument("lock wait timeout out of range: \(timeout)")
            }
            wait = milliseconds
        }
        var leaseMilliseconds: UInt32 = 0
        if let lease { leaseMilliseconds = try Self.leaseMilliseconds(lease) }
        if let owner, owner.isEmpty || owner.utf8.count > LockRequest.ownerBytesMax {
            throw .invalidArgument("an owner token is 1...\(LockRequest.ownerBytesMax) bytes")
        }
        if revocable && owner == nil { throw .invalidArgument("a revocable acquire names an owner token") }
        var delayMilliseconds: UInt32 = 0
        if let lockDelay {
            guard owner != nil else { throw .invalidArgument("a lock-delayed acquire names an owner token") }
            guard let milliseconds = lockDelay.wireMilliseconds else {
                throw .invalidArgument("lock-delay out of range: \(lockDelay)")
            }
            delayMilliseconds = milliseconds
        }
        let effectivePermits = kind == .semaphore ? permits : 1
        guard effectivePermits >= 1 else { throw .invalidArgument("a semaphore needs at least one permit") }
        return LockRequest(path: path, kind: kind, permits: effectivePermits, waitMilliseconds: wait,
                           leaseMilliseconds: leaseMilliseconds, owner: owner ?? "", revocable: revocable,
                           lockDelayMilliseconds: delayMilliseconds)
    }
}
