import Foundation
import Glibc
import BatonProtocol

/// Paths of the executables built next to this test bundle (`batond`, `baton`).
enum BuiltProducts {
    static var directory: URL {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    }
    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}

/// A real batond for one test: in memory, on a fresh socket in a temporary directory, optionally on TCP.
final class LiveDaemon {
    let directory: URL
    let socketPath: String
    let tcpPort: UInt16?
    private let process = Process()

    var endpoint: Endpoint { .unix(path: socketPath) }
    var tcpEndpoint: Endpoint? { tcpPort.map { .tcp(host: "127.0.0.1", port: $0) } }

    init(tcp: Bool = false, extraArguments: [String] = []) throws {
        directory = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("baton-client-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        socketPath = directory.appendingPathComponent("s").path
        tcpPort = tcp ? try LiveDaemon.freePort() : nil
        process.executableURL = URL(fileURLWithPath: BuiltProducts.path("batond"))
        var arguments = ["--socket", socketPath, "--in-memory", "--session-timeout-min-ms", "200", "--log-level", "error"]
        if let tcpPort { arguments += ["--listen", "127.0.0.1:\(tcpPort)"] }
        process.arguments = arguments + extraArguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        try waitUntilAccepting()
    }

    deinit { stop() }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    private func waitUntilAccepting() throws {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            guard process.isRunning else { throw LiveDaemonError("batond exited with \(process.terminationStatus)") }
            if canConnect() { return }
            usleep(10_000)
        }
        throw LiveDaemonError("batond did not accept connections on \(socketPath)")
    }

    private func canConnect() -> Bool {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(socketPath.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let unixOK = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
        guard unixOK, let tcpPort else { return unixOK }
        let tcpDescriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(tcpDescriptor) }
        var tcpAddress = sockaddr_in()
        tcpAddress.sin_family = sa_family_t(AF_INET)
        tcpAddress.sin_port = tcpPort.bigEndian
        tcpAddress.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return withUnsafePointer(to: &tcpAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(tcpDescriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    /// A loopback port that was free a moment ago (bind to 0, read it back, release it).
    static func freePort() throws -> UInt16 {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0
            }
        }
        guard bound else { throw LiveDaemonError("no free port") }
        return UInt16(bigEndian: address.sin_port)
    }
}

struct LiveDaemonError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
