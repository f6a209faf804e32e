#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import BatonProtocol

/// Blocking POSIX stream sockets: just enough for one client connection.
enum Socket {
    /// Connects to `endpoint`; the descriptor is close-on-exec so commands that `baton run` spawns
    /// never inherit the connection (a session must end with the process that opened it).
    static func connect(to endpoint: Endpoint) throws(BatonError) -> Int32 {
        switch endpoint {
        case .unix(let path): return try connectUnix(path: path)
        case .tcp(let host, let port): return try connectTCP(host: host, port: port)
        }
    }

    private static func errorText(_ what: String) -> String {
        "\(what): \(String(cString: strerror(errno)))"
    }

    static func connectUnix(path: String) throws(BatonError) -> Int32 {
        let pathBytes = Array(path.utf8)
        guard !pathBytes.isEmpty, pathBytes.count <= Endpoint.unixPathBytesMax else {
            throw .connectFailed("socket path must be 1...\(Endpoint.unixPathBytesMax) bytes: \(path)")
        }
        let descriptor = socket(AF_UNIX, Int32(socketStreamType), 0)
        guard descriptor >= 0 else { throw .connectFailed(errorText("socket")) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in pathBytes.enumerated() { buffer[index] = byte }
            buffer[pathBytes.count] = 0
        }
        let status = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                retryingInterrupts { Glibc.connect(descriptor, socketAddress, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
        }
        guard status == 0 else {
            let text = errorText("\(path)")
            closeDescriptor(descriptor)
            throw .connectFailed(text)
        }
        do {
            try checkPeerIsTrusted(descriptor, path: path)
        } catch {
            closeDescriptor(descriptor)
            throw error
        }
        return descriptor
    }

    /// Before anything is sent: the process listening on a Unix socket must run as this user, as
    /// root, or as the owner of the socket's directory when no one else may write there (a service
    /// user's /run/baton shared with a group). Another user could have created the socket first (in
    /// /tmp, say) and would otherwise be told session secrets and answer with fake grants.
    static func checkPeerIsTrusted(_ descriptor: Int32, path: String) throws(BatonError) {
        #if os(Linux)
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }: Glibc's module does not export it.
        var credentials: (Int32, UInt32, UInt32) = (0, 0, 0)
        var length = socklen_t(MemoryLayout.size(ofValue: credentials))
        guard getsockopt(descriptor, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 else {
            throw .untrustedServer("\(path): cannot read the server's credentials: \(String(cString: strerror(errno)))")
        }
        let serverUserID = credentials.1, ownUserID = UInt32(geteuid())
        guard serverUserID == ownUserID || serverUserID == 0 || ownsPrivateDirectory(serverUserID, of: path) else {
            throw .untrustedServer("\(path) is served by process \(credentials.0) of uid \(serverUserID), not by your "
                + "uid \(ownUserID) or root: another user may be impersonating batond")
        }
        #endif
    }

    /// Whether `userID` owns the directory of `path` and only it (and root) may write there.
    static func ownsPrivateDirectory(_ userID: UInt32, of path: String) -> Bool {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        var information = stat()
        guard stat(directory, &information) == 0 else { return false }
        return information.st_uid == userID && information.st_mode & 0o022 == 0
    }

    static func connectTCP(host: String, port: UInt16) throws(BatonError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(plainStreamType)  // getaddrinfo refuses SOCK_CLOEXEC here
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw .connectFailed("\(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address for \(host)"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let current = entry {
            entry = current.pointee.ai_next
            let descriptor = socket(current.pointee.ai_family, Int32(socketStreamType), current.pointee.ai_protocol)
            guard descriptor >= 0 else { lastError = errorText("socket"); continue }
            if retryingInterrupts({ Glibc.connect(descriptor, current.pointee.ai_addr, current.pointee.ai_addrlen) }) == 0 {
                // Requests are small and latency-bound: never wait to coalesce them.
                var one: Int32 = 1
                setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return descriptor
            }
            lastError = errorText("\(host):\(port)")
            closeDescriptor(descriptor)
        }
        throw .connectFailed(lastError)
    }

    #if canImport(Glibc)
    static let plainStreamType = Int32(SOCK_STREAM.rawValue)
    static let socketStreamType = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
    #else
    static let plainStreamType = SOCK_STREAM
    static let socketStreamType = SOCK_STREAM
    #endif

    static func closeDescriptor(_ descriptor: Int32) {
        #if canImport(Glibc)
        _ = Glibc.close(descriptor)
        #else
        _ = Darwin.close(descriptor)
        #endif
    }

    static func retryingInterrupts(_ call: () -> Int32) -> Int32 {
        while true {
            let result = call()
            if result == -1 && errno == EINTR { continue }
            return result
        }
    }

    /// Writes all of `bytes`; false when the peer is gone.
    static func sendAll(_ descriptor: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { buffer in
                send(descriptor, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }
}
