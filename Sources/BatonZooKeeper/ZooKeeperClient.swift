import BatonNamespace
import BatonProtocol
import CZooKeeper
#if canImport(Glibc)
import Glibc
#endif

/// What happened to the ZooKeeper session, as the owner needs to know it.
public enum ZooKeeperSessionEvent: Sendable, Equatable {
    /// The session is established (and the chroot exists): requests are served.
    case connected(sessionID: UInt64, timeoutMilliseconds: Int32)
    /// The connection is gone; the C client is reconnecting and the session may still live (for up to
    /// its timeout). Requests in flight failed with `.storageFailure`; watches are kept.
    case suspended
    /// Connected again within the same session: its ephemerals and watches are intact.
    case reconnected
    /// The ensemble expired the session: its ephemerals are gone, its watches never fire. The client
    /// is dead; the owner opens a new one.
    case expired
    /// The ensemble refused the credentials, or the chroot could not be created: the client is dead.
    case failed(ReplyError)
}

/// What to wait for before calling `process`: the client's socket (if any) for reading and/or
/// writing, or the timeout, whichever comes first.
public struct ZooKeeperInterest: Sendable, Equatable {
    /// -1 when the client has no socket (between connection attempts).
    public var descriptor: Int32
    public var readable: Bool
    public var writable: Bool
    public var timeoutMilliseconds: Int
}

public struct ZooKeeperConfiguration: Sendable {
    public var address: ZooKeeperAddress
    /// Asked of the ensemble, which clamps it to [2, 20] ticks; `negotiatedTimeoutMilliseconds` says what it granted.
    public var sessionTimeoutMilliseconds: Int32
    /// "user:password" for ZooKeeper's digest scheme. With it, everything Baton creates gets the ACL
    /// "all rights to this identity only" (CREATOR_ALL); without it, the open ACL.
    public var digest: String?

    public init(address: ZooKeeperAddress, sessionTimeoutMilliseconds: Int32 = 10_000, digest: String? = nil) {
        self.address = address
        self.sessionTimeoutMilliseconds = sessionTimeoutMilliseconds
        self.digest = digest
    }
}

/// The official single-threaded ZooKeeper C client, run by its owner's event loop: nothing here
/// blocks (but see `close`). The owner asks `interest()`, waits for the descriptor or the timeout,
/// calls `process(readable:writable:)`, and asks again. Every completion and watch runs inside
/// `process` (or, for a request refused at once, before the call returns) on the owner's thread.
///
/// Guarantees are ZooKeeper's: requests are answered in order; a watch fires at most once, after the
/// reply that set it and before the reply of any later request that saw the change. Watches survive
/// reconnects within the session (the C client sets them again) and are dropped on expiry.
///
/// The chroot is Baton's: paths passed in are relative to it and paths coming back are stripped of
/// it, so the chroot can be created here first (the C client's own chroot requires it to exist).
/// Its creates are queued before any request of the owner, so they run first.
///
/// Not thread-safe. Host names are resolved by the C client with getaddrinfo (blocking for names
/// that are not IP literals: give addresses in production).
public final class ZooKeeperClient {
    public enum State: Sendable, Equatable {
        /// No session yet (or the chroot is being created).
        case connecting
        case connected
        /// Connection lost; the session may still live.
        case suspended
        /// Expired, refused, or closed: the client does nothing more.
        case dead
    }

    public let configuration: ZooKeeperConfiguration
    public private(set) var state: State = .connecting
    /// Called on every session change (see `ZooKeeperSessionEvent`).
    public var sessionEvents: ((ZooKeeperSessionEvent) -> Void)?
    /// Requests handed to the C client (for the benchmark's "requests per lock pair").
    public private(set) var requestCount: UInt64 = 0

    let handle: OpaquePointer
    let acl: UnsafeMutablePointer<ACL_vector>
    private var watches: [UInt: (WatchEventType) -> Void] = [:]
    private var nextWatch: UInt = 1
    private var chrootReady: Bool
    private var chrootInFlight = false
    private var closed = false

    /// Starts connecting (returns at once). Throws if the C client refuses the configuration.
    public init(_ configuration: ZooKeeperConfiguration) throws(ReplyError) {
        ZooKeeperClient.quieten()
        self.configuration = configuration
        guard let handle = zookeeper_init(configuration.address.hosts, sessionWatcher,
                                          configuration.sessionTimeoutMilliseconds, nil, nil, 0) else {
            throw ReplyError(.invalidArgument, "ZooKeeper client refused \(configuration.address): \(String(cString: strerror(errno)))")
        }
        self.handle = handle
        acl = configuration.digest == nil ? baton_zookeeper_open_acl() : baton_zookeeper_creator_acl()
        chrootReady = configuration.address.chroot.isEmpty
        zoo_set_context(handle, Unmanaged.passUnretained(self).toOpaque())
        if let digest = configuration.digest {
            // Queued: the C client sends it first on every (re)connection.
            let code = zoo_add_auth(handle, "digest", digest, Int32(digest.utf8.count), nil, nil)
            guard code == ZOK.rawValue else {
                zookeeper_close(handle)
                throw ZooKeeperError.replyError(code, "digest authentication")
            }
        }
        ensureChroot()
    }

    deinit {
        // Callbacks during the close must not reach a half-destroyed client.
        zoo_set_context(handle, nil)
        if !closed { zookeeper_close(handle) }
    }

    /// Ends the session (its ephemerals go at once) and answers every pending request with
    /// `.storageFailure`. This one call blocks: the C client flushes its close request for up to 3 s
    /// (on a live connection it is one small write).
    public func close() {
        guard !closed else { return }
        closed = true
        state = .dead
        watches.removeAll()
        zookeeper_close(handle)
    }

    /// The session's id (0 before the first connection).
    public var sessionID: UInt64 {
        guard let id = zoo_client_id(handle) else { return 0 }
        return UInt64(bitPattern: id.pointee.client_id)
    }

    /// The session timeout the ensemble granted (the requested one before the first connection).
    public var negotiatedTimeoutMilliseconds: Int32 { zoo_recv_timeout(handle) }

    /// The "host:port" the client is connected (or connecting) to: for logs and tests.
    public var currentServer: String? {
        // The C client's own (static) buffer: copied, never freed.
        zoo_get_current_server(handle).map { String(cString: $0) }
    }

    /// One-shot watches registered and not fired yet.
    public var watchCount: Int { watches.count }

    // MARK: Driving

    public func interest() -> ZooKeeperInterest {
        guard !closed else { return ZooKeeperInterest(descriptor: -1, readable: false, writable: false, timeoutMilliseconds: 1_000) }
        var descriptor: Int32 = -1, interest: Int32 = 0
        var wait = timeval()
        let code = zookeeper_interest(handle, &descriptor, &interest, &wait)
        var milliseconds = max(0, Int(wait.tv_sec) * 1_000 + Int(wait.tv_usec) / 1_000)
        // Between connection attempts (or once dead) the C client may answer "no socket, no wait":
        // poll again shortly instead of spinning.
        if code != ZOK.rawValue && descriptor < 0 { milliseconds = max(milliseconds, 50) }
        return ZooKeeperInterest(descriptor: descriptor, readable: interest & ZOOKEEPER_READ != 0,
                                 writable: interest & ZOOKEEPER_WRITE != 0, timeoutMilliseconds: milliseconds)
    }

    /// Lets the client read, write, ping and time out as due; runs completions and watches.
    public func process(readable: Bool, writable: Bool) {
        guard !closed else { return }
        var events: Int32 = 0
        if readable { events |= ZOOKEEPER_READ }
        if writable { events |= ZOOKEEPER_WRITE }
        _ = zookeeper_process(handle, events)
    }

    // MARK: Session events (from the C client's watcher)

    fileprivate func sessionChanged(_ zooState: Int32) {
        if zooState == ZOO_CONNECTED_STATE {
            switch state {
            case .connecting:
                if chrootReady { becomeConnected() } else { ensureChroot() }
            case .suspended:
                state = .connected
                sessionEvents?(.reconnected)
            case .connected, .dead:
                break
            }
        } else if zooState == ZOO_CONNECTING_STATE || zooState == ZOO_ASSOCIATING_STATE || zooState == ZOO_NOTCONNECTED_STATE {
            if state == .connected {
                state = .suspended
                sessionEvents?(.suspended)
            }
        } else if zooState == ZOO_EXPIRED_SESSION_STATE {
            die(.expired)
        } else if zooState == ZOO_AUTH_FAILED_STATE {
            die(.failed(ReplyError(.notAuthorized, "ZooKeeper refused the digest credentials")))
        }
    }

    private func becomeConnected() {
        state = .connected
        sessionEvents?(.connected(sessionID: sessionID, timeoutMilliseconds: negotiatedTimeoutMilliseconds))
    }

    private func die(_ event: ZooKeeperSessionEvent) {
        guard state != .dead else { return }
        state = .dead
        watches.removeAll()
        sessionEvents?(event)
    }

    /// Creates the chroot's components (persistent, with the configured ACL), then reports `connected`.
    private func ensureChroot() {
        guard !chrootReady, !chrootInFlight else { return }
        chrootInFlight = true
        var prefixes: [String] = []
        var prefix = ""
        for component in configuration.address.chroot.split(separator: "/") {
            prefix += "/" + component
            prefixes.append(prefix)
        }
        var remaining = prefixes.count
        var failure: ReplyError?
        for path in prefixes {
            rawCreate(path, data: [], flags: 0) { [weak self] code, _, _ in
                guard let self else { return }
                if code != ZOK.rawValue && code != ZNODEEXISTS.rawValue && failure == nil {
                    failure = ZooKeeperError.replyError(code, "chroot \(path)")
                }
                remaining -= 1
                guard remaining == 0 else { return }
                chrootInFlight = false
                if let failure {
                    // Lost connection: try again on the next one. Anything else is definitive.
                    if failure.code != .storageFailure { die(.failed(failure)) }
                } else {
                    chrootReady = true
                    if state == .connecting && zoo_state(handle) == ZOO_CONNECTED_STATE { becomeConnected() }
                }
            }
        }
    }

    // MARK: Paths

    func fullPath(_ path: String) -> String {
        let chroot = configuration.address.chroot
        if chroot.isEmpty { return path }
        return path == "/" ? chroot : chroot + path
    }

    func relativePath(_ path: String) -> String {
        let chroot = configuration.address.chroot
        guard !chroot.isEmpty, path.hasPrefix(chroot) else { return path }
        let rest = String(path.dropFirst(chroot.utf8.count))
        return rest.isEmpty ? "/" : rest
    }

    // MARK: Watches

    private func register(_ watch: ((WatchEventType) -> Void)?) -> UnsafeMutableRawPointer? {
        guard let watch else { return nil }
        let id = nextWatch
        nextWatch += 1
        watches[id] = watch
        return UnsafeMutableRawPointer(bitPattern: id)
    }

    private func unregister(_ context: UnsafeMutableRawPointer?) {
        guard let context else { return }
        watches[UInt(bitPattern: context)] = nil
    }

    fileprivate func fire(_ context: UnsafeMutableRawPointer?, type: Int32) {
        guard let context, let watch = watches.removeValue(forKey: UInt(bitPattern: context)) else { return }
        let mapped: WatchEventType
        switch type {
        case ZOO_CREATED_EVENT: mapped = .created
        case ZOO_DELETED_EVENT: mapped = .deleted
        case ZOO_CHANGED_EVENT: mapped = .dataChanged
        case ZOO_CHILD_EVENT: mapped = .childrenChanged
        default: return
        }
        watch(mapped)
    }

    // MARK: Operations

    /// A request the C client refused at once never gets its completion from the library: answer it here.
    private func started(_ code: Int32, _ path: String, release: () -> Void, fail: (ReplyError) -> Void) {
        if code == ZOK.rawValue {
            requestCount += 1
        } else {
            release()
            fail(ZooKeeperError.replyError(code, path))
        }
    }

    /// A create of `fullPath` (already under the chroot).
    private func rawCreate(_ fullPath: String, data: [UInt8], flags: Int32,
                           completion: @escaping (Int32, String?, Stat?) -> Void) {
        let box = Box<(Int32, String?, Stat?) -> Void>(completion)
        let context = Unmanaged.passRetained(box).toOpaque()
        let code = data.withUnsafeBytes { bytes in
            zoo_acreate2(handle, fullPath, bytes.cValue, bytes.cLength, acl, flags, { code, value, stat, context in
                let box = Unmanaged<Box<(Int32, String?, Stat?) -> Void>>.fromOpaque(context!).takeRetainedValue()
                box.value(code, value.map { String(cString: $0) }, stat.map { Stat(zooKeeper: $0.pointee) })
            }, context)
        }
        if code != ZOK.rawValue {
            Unmanaged<Box<(Int32, String?, Stat?) -> Void>>.fromOpaque(context).release()
            completion(code, nil, nil)
        } else {
            requestCount += 1
        }
    }

    /// Creates a node in any mode; the created path (with its sequence suffix) and stat.
    public func create(path: String, data: [UInt8], mode: CreateMode,
                       completion: @escaping (Result<(path: String, stat: BatonProtocol.Stat), ReplyError>) -> Void) {
        rawCreate(fullPath(path), data: data, flags: ZooKeeperClient.flags(mode)) { [weak self] code, created, stat in
            guard code == ZOK.rawValue, let created, let self else {
                completion(.failure(ZooKeeperError.replyError(code == ZOK.rawValue ? ZCLOSING.rawValue : code, path)))
                return
            }
            completion(.success((relativePath(created), stat ?? Stat())))
        }
    }

    static func flags(_ mode: CreateMode) -> Int32 {
        var flags: Int32
        switch mode.kind {
        case .persistent: flags = ZOO_PERSISTENT
        case .ephemeral: flags = ZOO_EPHEMERAL
        case .container: flags = ZOO_CONTAINER
        }
        if mode.sequential { flags |= ZOO_SEQUENCE }
        return flags
    }

    public func delete(path: String, expectedVersion: Int32, completion: @escaping (Result<Void, ReplyError>) -> Void) {
        typealias Callback = (Int32) -> Void
        let context = Unmanaged.passRetained(Box<Callback> { code in
            completion(code == ZOK.rawValue ? .success(()) : .failure(ZooKeeperError.replyError(code, path)))
        }).toOpaque()
        let code = zoo_adelete(handle, fullPath(path), expectedVersion, { code, context in
            Unmanaged<Box<Callback>>.fromOpaque(context!).takeRetainedValue().value(code)
        }, context)
        started(code, path, release: { Unmanaged<Box<Callback>>.fromOpaque(context).release() },
                fail: { completion(.failure($0)) })
    }

    public func setData(path: String, data: [UInt8], expectedVersion: Int32,
                        completion: @escaping (Result<BatonProtocol.Stat, ReplyError>) -> Void) {
        typealias Callback = (Int32, Stat?) -> Void
        let context = Unmanaged.passRetained(Box<Callback> { code, stat in
            completion(code == ZOK.rawValue ? .success(stat ?? Stat()) : .failure(ZooKeeperError.replyError(code, path)))
        }).toOpaque()
        let code = data.withUnsafeBytes { bytes in
            zoo_aset(handle, fullPath(path), bytes.cValue, bytes.cLength, expectedVersion, { code, stat, context in
                Unmanaged<Box<Callback>>.fromOpaque(context!).takeRetainedValue().value(code, stat.map { Stat(zooKeeper: $0.pointee) })
            }, context)
        }
        started(code, path, release: { Unmanaged<Box<Callback>>.fromOpaque(context).release() },
                fail: { completion(.failure($0)) })
    }

    /// The node's stat, or nil if it does not exist. A watch set on a missing node fires on its
    /// creation (ZooKeeper's semantics) unless `watchesCreation` is false: then it is dropped here
    /// (the C client and the server keep a small entry until the session ends; it fires nothing).
    public func exists(path: String, watch: ((WatchEventType) -> Void)?, watchesCreation: Bool = true,
                       completion: @escaping (Result<BatonProtocol.Stat?, ReplyError>) -> Void) {
        typealias Callback = (Int32, Stat?) -> Void
        let watchContext = register(watch)
        let context = Unmanaged.passRetained(Box<Callback> { [weak self] code, stat in
            if code == ZOK.rawValue { return completion(.success(stat)) }
            if code == ZNONODE.rawValue {
                if !watchesCreation { self?.unregister(watchContext) }
                return completion(.success(nil))
            }
            self?.unregister(watchContext)
            completion(.failure(ZooKeeperError.replyError(code, path)))
        }).toOpaque()
        let code = zoo_awexists(handle, fullPath(path), watchContext == nil ? nil : oneShotWatcher, watchContext, { code, stat, context in
            Unmanaged<Box<Callback>>.fromOpaque(context!).takeRetainedValue().value(code, stat.map { Stat(zooKeeper: $0.pointee) })
        }, context)
        started(code, path, release: { Unmanaged<Box<Callback>>.fromOpaque(context).release(); unregister(watchContext) },
                fail: { completion(.failure($0)) })
    }

    public func getData(path: String, watch: ((WatchEventType) -> Void)?,
                        completion: @escaping (Result<(data: [UInt8], stat: BatonProtocol.Stat), ReplyError>) -> Void) {
        typealias Callback = (Int32, [UInt8], Stat?) -> Void
        let watchContext = register(watch)
        let context = Unmanaged.passRetained(Box<Callback> { [weak self] code, data, stat in
            if code == ZOK.rawValue { return completion(.success((data, stat ?? Stat()))) }
            self?.unregister(watchContext)
            completion(.failure(ZooKeeperError.replyError(code, path)))
        }).toOpaque()
        let code = zoo_awget(handle, fullPath(path), watchContext == nil ? nil : oneShotWatcher, watchContext, { code, value, length, stat, context in
            var data: [UInt8] = []
            if let value, length > 0 {
                data = Array(UnsafeRawBufferPointer(start: value, count: Int(length)))
            }
            Unmanaged<Box<Callback>>.fromOpaque(context!).takeRetainedValue().value(code, data, stat.map { Stat(zooKeeper: $0.pointee) })
        }, context)
        started(code, path, release: { Unmanaged<Box<Callback>>.fromOpaque(context).release(); unregister(watchContext) },
                fail: { completion(.failure($0)) })
    }

    /// The names of the node's children (in ZooKeeper's order: none promised) and its stat.
    public func children(path: String, watch: ((WatchEventType) -> Void)?,
                         completion: @escaping (Result<(names: [String], stat: BatonProtocol.Stat), ReplyError>) -> Void) {
        typealias Callback = (Int32, [String], Stat?) -> Void
        let watchContext = register(watch)
        let context = Unmanaged.passRetained(Box<Callback> { [weak self] code, names, stat in
            if code == ZOK.rawValue { return completion(.success((names, stat ?? Stat()))) }
            self?.unregister(watchContext)
            completion(.failure(ZooKeeperError.replyError(code, path)))
        }).toOpaque()
        let code = zoo_awget_children2(handle, fullPath(path), watchContext == nil ? nil : oneShotWatcher, watchContext, { code, strings, stat, context in
            var names: [String] = []
            if let strings, let data = strings.pointee.data {
                names.reserveCapacity(Int(strings.pointee.count))
                for index in 0..<Int(strings.pointee.count) {
                    if let name = data[index] { names.append(String(cString: name)) }
                }
            }
            Unmanaged<Box<Callback>>.fromOpaque(context!).takeRetainedValue().value(code, names, stat.map { Stat(zooKeeper: $0.pointee) })
        }, context)
        started(code, path, release: { Unmanaged<Box<Callback>>.fromOpaque(context).release(); unregister(watchContext) },
                fail: { completion(.failure($0)) })
    }

    /// All operations or none. On failure, the index of the operation that failed (nil when the multi
    /// as a whole failed, e.g. connection loss). A create's result carries no stat (the C client's multi
    /// does not return one): its stat is zero.
    public func multi(_ operations: [MultiOperation], completion: @escaping (Result<[MultiResult], MultiFailure>) -> Void) {
        guard !operations.isEmpty else { return completion(.success([])) }
        let batch = MultiBatch(operations, client: self)
        typealias Callback = (Int32) -> Void
        let context = Unmanaged.passRetained(Box<Callback> { [weak self] code in
            defer { batch.deallocate() }
            completion(batch.outcome(code, client: self))
        }).toOpaque()
        let code = zoo_amulti(handle, Int32(operations.count), batch.operations, batch.results, { code, context in
            Unmanaged<Box<Callback>>.fromOpaque(context!).takeRetainedValue().value(code)
        }, context)
        if code != ZOK.rawValue {
            Unmanaged<Box<Callback>>.fromOpaque(context).release()
            batch.deallocate()
            completion(.failure(MultiFailure(index: nil, error: ZooKeeperError.replyError(code))))
        } else {
            requestCount += 1
        }
    }

    nonisolated(unsafe) private static var quietened = false
    /// The C client logs to stderr at INFO by default; Baton logs what matters itself.
    private static func quieten() {
        guard !quietened else { return }
        quietened = true
        zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR)
    }
}

extension UnsafeRawBufferPointer {
    /// Node data as the C client takes it: empty data is sent as ZooKeeper's null data (length -1),
    /// which reads back as empty.
    var cValue: UnsafePointer<CChar>? { count > 0 ? baseAddress?.assumingMemoryBound(to: CChar.self) : nil }
    var cLength: Int32 { count > 0 ? Int32(count) : -1 }
}

/// A completion kept alive across the C call (retained into the context, released when it runs).
final class Box<Value> {
    let value: Value
    init(_ value: Value) { self.value = value }
}

private func client(of handle: OpaquePointer?) -> ZooKeeperClient? {
    guard let handle, let context = zoo_get_context(handle) else { return nil }
    return Unmanaged<ZooKeeperClient>.fromOpaque(context).takeUnretainedValue()
}

/// The session watcher: the C client delivers session changes here (node events only go to the
/// one-shot watchers, as Baton never sets the default watch).
private let sessionWatcher: watcher_fn = { handle, type, state, _, _ in
    guard type == ZOO_SESSION_EVENT, let client = client(of: handle) else { return }
    client.sessionChanged(state)
}

/// A one-shot watch: its context is the watch's number in its client's table (never a pointer to
/// memory, so a late or repeated call after expiry or close is harmless). The C client also calls it
/// with session events (it stays registered then): those are ignored here.
private let oneShotWatcher: watcher_fn = { handle, type, _, _, context in
    guard type != ZOO_SESSION_EVENT, let client = client(of: handle) else { return }
    client.fire(context, type: type)
}

extension Stat {
    /// ZooKeeper's stat in Baton's terms. ZooKeeper does not report a node's kind: ephemeral when it
    /// has an owner, else persistent (containers read as persistent; Proto/PROTOCOL.md lists this).
    init(zooKeeper stat: CZooKeeper.Stat) {
        self.init(createdTransaction: UInt64(bitPattern: stat.czxid), modifiedTransaction: UInt64(bitPattern: stat.mzxid),
                  childrenTransaction: UInt64(bitPattern: stat.pzxid),
                  createdMilliseconds: UInt64(max(0, stat.ctime)), modifiedMilliseconds: UInt64(max(0, stat.mtime)),
                  version: stat.version, childrenVersion: stat.cversion,
                  ephemeralOwner: UInt64(bitPattern: stat.ephemeralOwner),
                  dataLength: UInt32(max(0, stat.dataLength)), childrenCount: UInt32(max(0, stat.numChildren)),
                  kind: stat.ephemeralOwner != 0 ? .ephemeral : .persistent)
    }
}
