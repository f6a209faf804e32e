import Foundation
import BatonProtocol

/// The physical floor: a small frame bounced between two processes over a Unix socket or loopback TCP.
public struct FloorResult: Sendable {
    public var roundTrips: Int
    public var elapsedSeconds: Double
    public var latency: LatencySummary
    /// The echo process's CPU over the measured interval (from /proc).
    public var serverCPUNanoseconds: UInt64?
    public var roundTripsPerSecond: Double { Double(roundTrips) / elapsedSeconds }
    /// Echo server CPU per message (one frame in, the same frame out).
    public var serverCPUNanosecondsPerMessage: Double? {
        guard let serverCPUNanoseconds, roundTrips > 0 else { return nil }
        return Double(serverCPUNanoseconds) / Double(roundTrips)
    }
}

/// Which echo process answers: this executable's blocking one (the physical floor) or the bare
/// libuv one (`baton-echo`, Benchmarks/Echo: what a message costs a server on the event loop).
public enum EchoProcess: Sendable, Equatable {
    case blocking(executable: String)
    case libuv(executable: String)

    /// `baton-echo` built next to `baton-bench` (the same products directory).
    public static func libuvNextTo(_ executable: String) -> EchoProcess {
        .libuv(executable: URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("baton-echo").path)
    }

    func command(_ endpoint: Endpoint) -> (String, [String]) {
        let argument: [String]
        switch endpoint {
        case .unix(let path): argument = ["--unix", path]
        case .tcp(let host, let port): argument = ["--tcp", "\(host):\(port)"]
        }
        switch self {
        case .blocking(let executable): return (executable, ["echo-server"] + argument)
        case .libuv(let executable): return (executable, argument)
        }
    }
}

/// Bytes in one ping: about the size of an acquire request.
public let floorFrameBytes = 32

/// The echo side (hidden subcommand `echo-server`): accept one connection, echo until it closes.
public func runEchoServer(_ endpoint: Endpoint) throws(BenchError) {
    let listener = try listen(endpoint)
    writeLine("ready")
    let connection = accept(listener, nil, nil)
    guard connection >= 0 else { throw systemError("accept") }
    if case .tcp = endpoint {
        var one: Int32 = 1
        setsockopt(connection, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
        if count <= 0 { break }
        var sent = 0
        while sent < count {
            let written = buffer.withUnsafeBytes { send(connection, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL)) }
            if written <= 0 { return }
            sent += written
        }
    }
}

func listen(_ endpoint: Endpoint) throws(BenchError) -> Int32 {
    switch endpoint {
    case .unix(let path):
        unlink(path)
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = try BlockingSocket.unixAddress(path)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0, Glibc.listen(descriptor, 16) == 0 else { throw systemError("bind unix:\(path)") }
        return descriptor
    case .tcp(let host, let port):
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = try BlockingSocket.inetAddress(host: host, port: port)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0, Glibc.listen(descriptor, 16) == 0 else { throw systemError("bind \(host):\(port)") }
        return descriptor
    }
}

/// Starts an echo server process on `endpoint` and bounces `floorFrameBytes` off it for `seconds`,
/// one frame at a time; the echo process's CPU is read from /proc before and after.
public func runFloor(_ endpoint: Endpoint, seconds: Double, server: EchoProcess) throws(BenchError) -> FloorResult {
    let process = Process()
    let (executable, arguments) = server.command(endpoint)
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    do { try process.run() } catch { throw BenchError("cannot start echo server \(executable): \(error)") }
    defer {
        process.terminate()
        process.waitUntilExit()
    }
    guard readLine(output.fileHandleForReading) == "ready" else { throw BenchError("echo server did not start") }
    let socket = try BlockingSocket.connect(endpoint)
    let ping = [UInt8](repeating: 7, count: floorFrameBytes)
    var histogram = makeLatencyHistogram()
    for _ in 0..<1_000 {
        try socket.send(ping)
        try socket.readExactly(floorFrameBytes)
    }
    let meter = CPUMeter([process.processIdentifier])
    let start = MonotonicClock.nanoseconds()
    let deadline = start + UInt64(seconds * 1e9)
    var count = 0
    var now = start
    while now < deadline {
        try socket.send(ping)
        try socket.readExactly(floorFrameBytes)
        let after = MonotonicClock.nanoseconds()
        histogram.recordNanoseconds(after - now)
        now = after
        count += 1
    }
    return FloorResult(roundTrips: count, elapsedSeconds: Double(now - start) / 1e9, latency: LatencySummary(histogram),
                       serverCPUNanoseconds: meter.elapsed())
}
