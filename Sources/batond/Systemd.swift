import BatonServer
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The two systemd protocols batond speaks, without libsystemd: readiness (`sd_notify`, for
/// `Type=notify`) and socket activation (`LISTEN_FDS`, for a .socket unit). deploy/systemd uses both.
enum Systemd {
    /// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
    static let firstPassedDescriptor: Int32 = 3

    /// The Unix listener systemd passed, with the path it is bound to; nil when this process was
    /// not socket-activated (`LISTEN_PID` names another process, or no `LISTEN_FDS`). Refuses
    /// anything but exactly one listening Unix stream socket.
    static func passedListener(environment: [String: String]) throws(ServerError) -> (descriptor: Int32, path: String)? {
        guard let pidText = environment["LISTEN_PID"], let countText = environment["LISTEN_FDS"] else { return nil }
        guard let pid = Int32(pidText), pid == getpid() else { return nil }
        guard let count = Int(countText), count >= 1 else { return nil }
        guard count == 1 else {
            throw ServerError("systemd passed \(count) sockets (LISTEN_FDS); batond takes exactly one, its Unix socket "
                + "(give TCP with --listen): list one ListenStream= in the .socket unit")
        }
        let descriptor = firstPassedDescriptor
        var type: Int32 = 0, listening: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_TYPE, &type, &length) == 0 else {
            throw ServerError("fd 3 passed by systemd (LISTEN_FDS) is not a socket: \(String(cString: strerror(errno)))")
        }
        length = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(descriptor, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length)
        var address = sockaddr_un()
        var addressLength = socklen_t(MemoryLayout<sockaddr_un>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &addressLength) }
        }
        guard named == 0, address.sun_family == sa_family_t(AF_UNIX), type == Int32(SOCK_STREAM.rawValue), listening != 0 else {
            throw ServerError("fd 3 passed by systemd (LISTEN_FDS) must be a listening Unix stream socket "
                + "(ListenStream=/path in the .socket unit)")
        }
        let path = withUnsafeBytes(of: address.sun_path) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        guard path.hasPrefix("/") else {
            throw ServerError("the socket systemd passed is not bound to a file path (abstract or unnamed sockets are not served)")
        }
        // Not inherited by anything batond might start.
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        return (descriptor, path)
    }

    /// Tells systemd the service state (`READY=1`, `STOPPING=1`) on `$NOTIFY_SOCKET`, a datagram
    /// socket path (`@` for the abstract namespace). Without the variable it does nothing; a
    /// failure is returned for the log, never fatal.
    @discardableResult
    static func notify(_ state: String, environment: [String: String]) -> String? {
        guard let target = environment["NOTIFY_SOCKET"], !target.isEmpty else { return nil }
        guard target.hasPrefix("/") || target.hasPrefix("@") else { return "NOTIFY_SOCKET \(target) is not a socket path" }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(target.utf8)
        if pathBytes[0] == UInt8(ascii: "@") { pathBytes[0] = 0 }
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return "NOTIFY_SOCKET path too long" }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in pathBytes.enumerated() { raw[index] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count)
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return "socket: \(String(cString: strerror(errno)))" }
        defer { close(descriptor) }
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                message.withUnsafeBytes { sendto(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), socketAddress, length) }
            }
        }
        return sent == message.count ? nil : "sendto \(target): \(String(cString: strerror(errno)))"
    }
}
