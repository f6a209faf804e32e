import BatonEngine
import BatonProtocol
import CLibUV
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A listening socket: the owner stored in its handle's `data`, so accepts find the loop.
final class Listener {
    let transport: TransportKind
    let handle: UnsafeMutableRawPointer
    unowned let loop: ServerLoop
    /// The socket file to remove at shutdown (Unix only).
    let socketPath: String?
    var boundPort: UInt16?

    init(transport: TransportKind, handle: UnsafeMutableRawPointer, loop: ServerLoop, socketPath: String?) {
        self.transport = transport
        self.handle = handle
        self.loop = loop
        self.socketPath = socketPath
    }

    var description: String {
        if let socketPath { return "unix:\(socketPath)" }
        return "tcp:\(boundPort ?? 0)"
    }

    static let backlog: Int32 = 511

    /// Binds the Unix socket with `mode` from the first instant (umask around the bind, then chmod),
    /// after checking the path fits and that no live server owns it.
    static func bindUnix(path: String, mode: UInt32, loop: ServerLoop) throws(ServerError) -> Listener {
        let pathBytes = path.utf8.count
        guard pathBytes > 0 else { throw ServerError("the socket path is empty") }
        guard pathBytes <= Endpoint.unixPathBytesMax else {
            throw ServerError("socket path \(path) is \(pathBytes) bytes; a Unix socket path holds at most \(Endpoint.unixPathBytesMax)")
        }
        guard mode & ~0o777 == 0 else { throw ServerError("socket mode \(String(mode, radix: 8)) has bits beyond 0777") }
        try checkSocketLocation(path, logger: loop.logger)
        try removeStaleSocket(path)

        let pipe = LibUV.allocate(uv_pipe_t.self)
        var result = uv_pipe_init(loop.loop, pipe, 0)
        precondition(result == 0, "uv_pipe_init cannot fail on a live loop")
        let listener = Listener(transport: .unix, handle: UnsafeMutableRawPointer(pipe), loop: loop, socketPath: path)
        LibUV.setOwner(pipe, listener)

        // The socket is created with 0777 & ~umask: narrow the umask so it is never wider than `mode`.
        let previousMask = umask(mode_t(~mode & 0o777))
        result = uv_pipe_bind(pipe, path)
        umask(previousMask)
        if result < 0 {
            LibUV.close(pipe)
            throw ServerError("cannot bind \(path): \(LibUV.errorText(result))")
        }
        if chmod(path, mode_t(mode)) != 0 {
            let reason = String(cString: strerror(errno))
            LibUV.close(pipe)
            unlink(path)
            throw ServerError("cannot set mode \(String(mode, radix: 8)) on \(path): \(reason)")
        }
        result = uv_listen(baton_stream(pipe), backlog, onConnection)
        if result < 0 {
            LibUV.close(pipe)
            unlink(path)
            throw ServerError("cannot listen on \(path): \(LibUV.errorText(result))")
        }
        return listener
    }

    /// Serves a listening Unix socket someone else bound (systemd socket activation). It has no
    /// `socketPath`: its file is not this daemon's to remove.
    static func adoptUnix(descriptor: Int32, loop: ServerLoop) throws(ServerError) -> Listener {
        let pipe = LibUV.allocate(uv_pipe_t.self)
        var result = uv_pipe_init(loop.loop, pipe, 0)
        precondition(result == 0, "uv_pipe_init cannot fail on a live loop")
        let listener = Listener(transport: .unix, handle: UnsafeMutableRawPointer(pipe), loop: loop, socketPath: nil)
        LibUV.setOwner(pipe, listener)
        result = uv_pipe_open(pipe, descriptor)
        if result == 0 { result = uv_listen(baton_stream(pipe), backlog, onConnection) }
        if result < 0 {
            LibUV.close(pipe)
            throw ServerError("cannot listen on the socket passed as fd \(descriptor): \(LibUV.errorText(result))")
        }
        return listener
    }

    /// A numeric IPv4 or IPv6 address (or `localhost`) and a port; `option` names the flag in errors.
    static func socketAddress(host: String, port: UInt16, option: String) throws(ServerError) -> sockaddr_storage {
        var address = sockaddr_storage()
        let numericHost = host == "localhost" ? "127.0.0.1" : host
        let parsed = withUnsafeMutableBytes(of: &address) { raw -> Int32 in
            if numericHost.contains(":") {
                return uv_ip6_addr(numericHost, Int32(port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self))
            }
            return uv_ip4_addr(numericHost, Int32(port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self))
        }
        guard parsed == 0 else { throw ServerError("\(option) needs a numeric IPv4 or IPv6 address, not \(host)") }
        return address
    }

    static func bindTCP(host: String, port: UInt16, loop: ServerLoop) throws(ServerError) -> Listener {
        var address = try socketAddress(host: host, port: port, option: "--listen")

        let tcp = LibUV.allocate(uv_tcp_t.self)
        var result = uv_tcp_init(loop.loop, tcp)
        precondition(result == 0, "uv_tcp_init cannot fail on a live loop")
        let listener = Listener(transport: .tcp, handle: UnsafeMutableRawPointer(tcp), loop: loop, socketPath: nil)
        LibUV.setOwner(tcp, listener)
        result = withUnsafeBytes(of: &address) { uv_tcp_bind(tcp, baton_sockaddr($0.baseAddress), 0) }
        if result == 0 { result = uv_listen(baton_stream(tcp), backlog, onConnection) }
        if result < 0 {
            LibUV.close(tcp)
            throw ServerError("cannot listen on \(Endpoint.tcp(host: host, port: port)): \(LibUV.errorText(result))")
        }
        listener.boundPort = localPort(tcp)
        return listener
    }

    /// Refuses a socket place another user controls (PROTOCOL.md §13): a directory owned by someone
    /// other than this user or root, or a file already at the path that belongs to another user (an
    /// impostor that got there first, e.g. in /tmp without $XDG_RUNTIME_DIR). A directory others may
    /// write without the sticky bit (a Kubernetes emptyDir shared by a pod's containers) is allowed
    /// with a warning: whoever replaces the socket there is refused by the clients (SO_PEERCRED).
    static func checkSocketLocation(_ path: String, logger: Logger) throws(ServerError) {
        let ownUserID = geteuid()
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        var information = stat()
        guard stat(directory, &information) == 0 else {
            throw ServerError("cannot inspect socket directory \(directory): \(String(cString: strerror(errno)))")
        }
        guard information.st_mode & S_IFMT == S_IFDIR else { throw ServerError("\(directory) is not a directory") }
        guard information.st_uid == ownUserID || information.st_uid == 0 else {
            throw ServerError("socket directory \(directory) belongs to uid \(information.st_uid), not to you (uid \(ownUserID)) "
                + "or root: its owner could replace the socket; use a directory of your own (--socket PATH, $XDG_RUNTIME_DIR)")
        }
        if information.st_mode & 0o022 != 0 && information.st_mode & S_ISVTX == 0 {
            logger.warning("the socket directory is writable by others and not sticky: they could replace the socket (clients refuse a server of another user)", metadata: [
                    "directory": "\(directory)", "mode": "\(String(information.st_mode & 0o7777, radix: 8))"])
        }
        guard lstat(path, &information) == 0 else { return }
        guard information.st_uid == ownUserID else {
            throw ServerError("\(path) already exists and belongs to uid \(information.st_uid), not to you (uid \(ownUserID)): "
                + "another user may be impersonating batond; have it removed, or use another socket path")
        }
    }

    /// If a socket file is already there: refuse when a server answers on it, remove it when none does.
    static func removeStaleSocket(_ path: String) throws(ServerError) {
        var information = stat()
        guard lstat(path, &information) == 0 else {
            if errno == ENOENT { return }
            throw ServerError("cannot inspect \(path): \(String(cString: strerror(errno)))")
        }
        guard information.st_mode & S_IFMT == S_IFSOCK else {
            throw ServerError("\(path) exists and is not a socket; refusing to replace it")
        }
        switch probe(path) {
        case .accepting:
            throw ServerError("batond is already running on \(path)")
        case .refused:
            guard unlink(path) == 0 || errno == ENOENT else {
                throw ServerError("cannot remove stale socket \(path): \(String(cString: strerror(errno)))")
            }
        case .failed(let reason):
            throw ServerError("cannot tell whether \(path) is in use: \(reason)")
        }
    }

    enum ProbeResult { case accepting, refused, failed(String) }

    /// Connects without blocking: a full backlog (EAGAIN) also means someone is listening.
    static func probe(_ path: String) -> ProbeResult {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { return .failed(String(cString: strerror(errno))) }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if result == 0 { return .accepting }
        switch errno {
        case EAGAIN, EINPROGRESS: return .accepting
        case ECONNREFUSED, ENOENT: return .refused
        default: return .failed(String(cString: strerror(errno)))
        }
    }

    static func localPort(_ tcp: UnsafeMutablePointer<uv_tcp_t>) -> UInt16? {
        var address = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutableBytes(of: &address) { raw in
            uv_tcp_getsockname(tcp, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
        }
        guard result == 0 else { return nil }
        return port(of: address)
    }

    static func port(of address: sockaddr_storage) -> UInt16? {
        var copy = address
        return withUnsafeBytes(of: &copy) { raw -> UInt16? in
            switch Int32(address.ss_family) {
            case AF_INET: return UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
            case AF_INET6: return UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
            default: return nil
            }
        }
    }

    /// "host:port" of a TCP peer, "pid=N uid=N" of a Unix peer: for logs only.
    static func describePeer(_ connectionHandle: UnsafeMutableRawPointer, transport: TransportKind) -> String {
        switch transport {
        case .tcp:
            var address = sockaddr_storage()
            var length = Int32(MemoryLayout<sockaddr_storage>.size)
            let tcp = connectionHandle.assumingMemoryBound(to: uv_tcp_t.self)
            let result = withUnsafeMutableBytes(of: &address) { raw in
                uv_tcp_getpeername(tcp, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
            }
            guard result == 0 else { return "tcp:?" }
            var name = [CChar](repeating: 0, count: 64)
            let port = port(of: address) ?? 0
            var copy = address
            withUnsafeBytes(of: &copy) { raw in
                if Int32(address.ss_family) == AF_INET6 {
                    _ = uv_ip6_name(raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self), &name, name.count)
                } else {
                    _ = uv_ip4_name(raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self), &name, name.count)
                }
            }
            let host = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix:
            var descriptor = uv_os_fd_t()
            guard uv_fileno(baton_handle(connectionHandle), &descriptor) == 0 else { return "unix:?" }
            var processID: Int32 = 0
            var userID: UInt32 = 0
            guard baton_peer_credentials(descriptor, &processID, &userID) == 0 else { return "unix:?" }
            return "pid=\(processID) uid=\(userID)"
        }
    }
}

extension Listener {
    /// The address part of a TCP peer as `describePeer` writes it ("host:port", "[v6]:port").
    static func host(ofPeer peer: String) -> String {
        guard let colon = peer.lastIndex(of: ":") else { return peer }
        return String(peer[..<colon])
    }

    /// The identity per-peer quotas count by: `uid:N` (SO_PEERCRED) on the Unix socket, `tcp:ADDRESS`.
    static func identity(ofPeer peer: String, transport: TransportKind) -> String {
        switch transport {
        case .tcp: return "tcp:" + host(ofPeer: peer)
        case .unix:
            guard let field = peer.split(separator: " ").first(where: { $0.hasPrefix("uid=") }) else { return "unix:?" }
            return "uid:" + field.dropFirst(4)
        }
    }
}

/// A client is waiting on a listener.
func onConnection(_ server: UnsafeMutablePointer<uv_stream_t>?, _ status: Int32) {
    guard let listener = LibUV.owner(server, as: Listener.self) else { return }
    listener.loop.accept(on: listener, status: status)
}
