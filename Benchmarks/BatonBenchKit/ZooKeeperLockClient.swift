import CZooKeeper
#if canImport(Glibc)
import Glibc
#endif

/// ZooKeeper's standard lock recipe through the official single-threaded C client: create an
/// ephemeral sequential child, list the children, and if not the lowest set an exists-watch on the
/// predecessor and wait for it to go; release deletes the child. The client's fd is driven by poll.
public final class ZooKeeperLockClient: LockClient {
    /// State the C callbacks write; reached through an unmanaged pointer.
    final class CallbackState {
        var connected = false
        var expired = false
        var completed = false
        var resultCode: Int32 = 0
        var createdPath = ""
        var children: [String] = []
        var watchFired = false
        var wakeups = 0
    }

    let handle: OpaquePointer
    let state = CallbackState()
    var readyDirectories: Set<String> = []
    public var wakeups: Int { state.wakeups }

    nonisolated(unsafe) static var quietened = false

    /// `connect`: one member ("127.0.0.1:2181") or an ensemble ("h1:p1,h2:p2,h3:p3"; the client picks one).
    public init(connect: String, sessionTimeoutMilliseconds: Int32) throws(BenchError) {
        if !Self.quietened {
            zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR)
            Self.quietened = true
        }
        let context = Unmanaged.passUnretained(state).toOpaque()
        guard let handle = zookeeper_init(connect, { _, type, connectionState, _, context in
            guard let context else { return }
            let state = Unmanaged<CallbackState>.fromOpaque(context).takeUnretainedValue()
            if type == ZOO_SESSION_EVENT {
                if connectionState == ZOO_CONNECTED_STATE { state.connected = true }
                if connectionState == ZOO_EXPIRED_SESSION_STATE { state.expired = true }
            }
        }, sessionTimeoutMilliseconds, nil, context, 0) else {
            throw systemError("zookeeper_init \(connect)")
        }
        self.handle = handle
        let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
        try run { state in state.connected || MonotonicClock.nanoseconds() > deadline }
        guard state.connected else { throw BenchError("zookeeper: no session with \(connect) within 10 s") }
    }

    deinit { zookeeper_close(handle) }

    /// The negotiated session timeout (the server clamps the requested one).
    public var sessionTimeoutMilliseconds: Int32 { zoo_recv_timeout(handle) }

    /// Drives the client's socket until `done` holds.
    func run(until done: (CallbackState) -> Bool) throws(BenchError) {
        while !done(state) {
            if state.expired { throw BenchError("zookeeper: session expired") }
            var descriptor: Int32 = -1, interest: Int32 = 0
            var wait = timeval()
            _ = zookeeper_interest(handle, &descriptor, &interest, &wait)
            var entry = pollfd(fd: descriptor, events: 0, revents: 0)
            if interest & ZOOKEEPER_READ != 0 { entry.events |= Int16(POLLIN) }
            if interest & ZOOKEEPER_WRITE != 0 { entry.events |= Int16(POLLOUT) }
            let timeoutMilliseconds = Int32(min(wait.tv_sec * 1_000 + wait.tv_usec / 1_000, 100))
            _ = poll(&entry, descriptor >= 0 ? 1 : 0, timeoutMilliseconds)
            var events: Int32 = 0
            if entry.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { events |= ZOOKEEPER_READ }
            if entry.revents & Int16(POLLOUT) != 0 { events |= ZOOKEEPER_WRITE }
            _ = zookeeper_process(handle, events)
        }
    }

    var context: UnsafeRawPointer { UnsafeRawPointer(Unmanaged.passUnretained(state).toOpaque()) }

    func create(_ path: String, mode: Int32, data: [UInt8]? = nil) throws(BenchError) -> Int32 {
        state.completed = false
        let completion: string_completion_t = { resultCode, value, data in
            let state = Unmanaged<CallbackState>.fromOpaque(data!).takeUnretainedValue()
            state.resultCode = resultCode
            state.createdPath = value.map { String(cString: $0) } ?? ""
            state.completed = true
        }
        let code: Int32
        if let data {
            code = data.withUnsafeBufferPointer { bytes in
                bytes.withMemoryRebound(to: CChar.self) {
                    zoo_acreate(handle, path, $0.baseAddress, Int32($0.count), baton_zookeeper_open_acl(), mode, completion, context)
                }
            }
        } else {
            code = zoo_acreate(handle, path, nil, -1, baton_zookeeper_open_acl(), mode, completion, context)
        }
        guard code == ZOK.rawValue else { throw BenchError("zoo_acreate \(path): \(code)") }
        try run { $0.completed }
        return state.resultCode
    }

    func ensureDirectory(_ path: String) throws(BenchError) {
        guard !readyDirectories.contains(path) else { return }
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            let code = try create(prefix, mode: ZOO_PERSISTENT)
            guard code == ZOK.rawValue || code == ZNODEEXISTS.rawValue else { throw BenchError("zookeeper create \(prefix): \(code)") }
        }
        readyDirectories.insert(path)
    }

    func children(_ path: String) throws(BenchError) -> [String] {
        state.completed = false
        let code = zoo_aget_children(handle, path, 0, { resultCode, strings, data in
            let state = Unmanaged<CallbackState>.fromOpaque(data!).takeUnretainedValue()
            state.resultCode = resultCode
            state.children = []
            if let strings {
                for index in 0..<Int(strings.pointee.count) {
                    if let name = strings.pointee.data[index] { state.children.append(String(cString: name)) }
                }
            }
            state.completed = true
        }, context)
        guard code == ZOK.rawValue else { throw BenchError("zoo_aget_children \(path): \(code)") }
        try run { $0.completed }
        guard state.resultCode == ZOK.rawValue else { throw BenchError("zookeeper children \(path): \(state.resultCode)") }
        return state.children
    }

    /// Sets an exists-watch; returns false when the node is already gone.
    func watchExists(_ path: String) throws(BenchError) -> Bool {
        state.completed = false
        state.watchFired = false
        let code = zoo_awexists(handle, path, { _, type, _, _, watcherContext in
            guard let watcherContext else { return }
            let state = Unmanaged<CallbackState>.fromOpaque(watcherContext).takeUnretainedValue()
            state.watchFired = true
            state.wakeups += 1
            _ = type
        }, UnsafeMutableRawPointer(mutating: context), { resultCode, _, data in
            let state = Unmanaged<CallbackState>.fromOpaque(data!).takeUnretainedValue()
            state.resultCode = resultCode
            state.completed = true
        }, context)
        guard code == ZOK.rawValue else { throw BenchError("zoo_awexists \(path): \(code)") }
        try run { $0.completed }
        if state.resultCode == ZNONODE.rawValue { return false }
        guard state.resultCode == ZOK.rawValue else { throw BenchError("zookeeper exists \(path): \(state.resultCode)") }
        return true
    }

    /// Creates a persistent node with `data` (the request scenario's key); an existing one is kept.
    public func createNode(_ path: String, data: [UInt8]) throws(BenchError) {
        let parent = String(path[..<path.lastIndex(of: "/")!])
        if !parent.isEmpty { try ensureDirectory(parent) }
        let code = try create(path, mode: ZOO_PERSISTENT, data: data)
        guard code == ZOK.rawValue || code == ZNODEEXISTS.rawValue else { throw BenchError("zookeeper create \(path): \(code)") }
    }

    /// One `get` of `path`, waited for (the request scenario).
    public func get(_ path: String) throws(BenchError) {
        state.completed = false
        let code = zoo_aget(handle, path, 0, { resultCode, _, _, _, data in
            let state = Unmanaged<CallbackState>.fromOpaque(data!).takeUnretainedValue()
            state.resultCode = resultCode
            state.completed = true
        }, context)
        guard code == ZOK.rawValue else { throw BenchError("zoo_aget \(path): \(code)") }
        try run { $0.completed }
        guard state.resultCode == ZOK.rawValue else { throw BenchError("zookeeper get \(path): \(state.resultCode)") }
    }

    public func acquire(_ lock: String) throws(BenchError) -> String {
        try ensureDirectory(lock)
        guard try create(lock + "/lock-", mode: ZOO_EPHEMERAL_SEQUENTIAL) == ZOK.rawValue else {
            throw BenchError("zookeeper create under \(lock): \(state.resultCode)")
        }
        let mine = state.createdPath
        let myName = String(mine[mine.index(after: mine.lastIndex(of: "/")!)...])
        while true {
            // Sequence suffixes are 10 zero-padded digits, so names sort by their suffix.
            let sorted = try children(lock).sorted { $0.suffix(10) < $1.suffix(10) }
            guard let position = sorted.firstIndex(of: myName) else { throw BenchError("zookeeper: own node \(mine) vanished") }
            if position == 0 { return mine }
            if try watchExists(lock + "/" + sorted[position - 1]) {
                try run { $0.watchFired }
            }
        }
    }

    public func release(_ lock: String, hold: String) throws(BenchError) {
        state.completed = false
        let code = zoo_adelete(handle, hold, -1, { resultCode, data in
            let state = Unmanaged<CallbackState>.fromOpaque(data!).takeUnretainedValue()
            state.resultCode = resultCode
            state.completed = true
        }, context)
        guard code == ZOK.rawValue else { throw BenchError("zoo_adelete \(hold): \(code)") }
        try run { $0.completed }
        guard state.resultCode == ZOK.rawValue else { throw BenchError("zookeeper delete \(hold): \(state.resultCode)") }
    }
}
