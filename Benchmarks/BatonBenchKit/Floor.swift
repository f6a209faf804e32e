import Foundation
import BatonProtocol

/// The physical floor: a small frame bounced between two processes over a Unix socket or loopback TCP.
public struct FloorResult: Sendable {
    public var roundTrips: Int
    public var elapsedSeconds: Double
    public var latency: LatencySummary
    public var roundTripsPerSecond: Double { Double(roundTrips) / elapsedSeconds }
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

/// Starts an echo server process on `endpoint` and bounces `floorFrameBytes` off it for `seconds`.
public func runFloor(_ endpoint: Endpoint, seconds: Double, executable: String) throws(BenchError) -> FloorResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    let argument: [String]
    switch endpoint {
    case .unix(let path): argument = ["--unix", path]
    case .tcp(let host, let port): argument = ["--tcp", "\(host):\(port)"]
    }
    process.arguments = ["echo-server"] + argument
    let output = Pipe()
    process.standardOutput = output
    do { try process.run() } catch { throw BenchError("cannot start echo server: \(error)") }
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
    return FloorResult(roundTrips: count, elapsedSeconds: Double(now - start) / 1e9, latency: LatencySummary(histogram))
}
