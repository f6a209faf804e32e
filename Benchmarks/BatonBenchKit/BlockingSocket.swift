#if canImport(Glibc)
import Glibc
#endif
import BatonProtocol

/// One blocking stream socket (Unix or TCP) with a reusable read buffer: the lean transport every
/// driver uses, so the figures measure the server and not a client library.
public final class BlockingSocket {
    public let descriptor: Int32
    /// Bytes read and not consumed yet: `buffer[start..<end]`.
    var buffer: [UInt8]
    var start = 0
    var end = 0

    init(descriptor: Int32, bufferBytes: Int = 65_536) {
        self.descriptor = descriptor
        self.buffer = [UInt8](repeating: 0, count: bufferBytes)
    }

    deinit { Glibc.close(descriptor) }

    public static func connect(_ endpoint: Endpoint, bufferBytes: Int = 65_536) throws(BenchError) -> BlockingSocket {
        switch endpoint {
        case .unix(let path): return try connectUnix(path: path, bufferBytes: bufferBytes)
        case .tcp(let host, let port): return try connectTCP(host: host, port: port, bufferBytes: bufferBytes)
        }
    }

    /// Whether a read would find bytes already buffered (so poll must not be asked).
    public var hasBufferedBytes: Bool { end > start }

    public static func connectUnix(path: String, bufferBytes: Int = 65_536) throws(BenchError) -> BlockingSocket {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw systemError("socket") }
        var address = try unixAddress(path)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(descriptor)
            throw systemError("connect unix:\(path)", code)
        }
        return BlockingSocket(descriptor: descriptor, bufferBytes: bufferBytes)
    }

    public static func connectTCP(host: String, port: UInt16, bufferBytes: Int = 65_536) throws(BenchError) -> BlockingSocket {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw systemError("socket") }
        var address = try inetAddress(host: host, port: port)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(descriptor)
            throw systemError("connect \(host):\(port)", code)
        }
        var one: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return BlockingSocket(descriptor: descriptor, bufferBytes: bufferBytes)
    }

    static func unixAddress(_ path: String) throws(BenchError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count <= Endpoint.unixPathBytesMax else { throw BenchError("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
            raw[bytes.count] = 0
        }
        return address
    }

    static func inetAddress(host: String, port: UInt16) throws(BenchError) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        let name = host == "localhost" ? "127.0.0.1" : host
        guard inet_pton(AF_INET, name, &address.sin_addr) == 1 else { throw BenchError("not an IPv4 address: \(host)") }
        return address
    }

    /// The process at the other end of a Unix socket (the server), from the kernel's credentials.
    public var peerProcessID: Int32? {
        // `struct ucred` (pid, uid, gid) needs _GNU_SOURCE in C; same layout here.
        var credentials = (pid: Int32(0), uid: UInt32(0), gid: UInt32(0))
        var length = socklen_t(12)
        guard getsockopt(descriptor, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0, credentials.pid > 0 else { return nil }
        return credentials.pid
    }

    public func send(_ bytes: [UInt8]) throws(BenchError) {
        var sent = 0
        let result: Int32 = bytes.withUnsafeBytes { raw in
            while sent < raw.count {
                let count = Glibc.send(descriptor, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                if count < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                sent += count
            }
            return 0
        }
        if result != 0 { throw systemError("send", result) }
    }

    /// Reads at least once more into the buffer; throws when the peer closed.
    func fill() throws(BenchError) {
        if start == end {
            start = 0
            end = 0
        } else if end == buffer.count {
            if start > 0 {
                buffer.withUnsafeMutableBytes { raw in
                    _ = memmove(raw.baseAddress!, raw.baseAddress! + start, end - start)
                }
                end -= start
                start = 0
            } else {
                buffer.append(contentsOf: [UInt8](repeating: 0, count: buffer.count))
            }
        }
        while true {
            let capacity = buffer.count - end
            let count = buffer.withUnsafeMutableBytes { raw in
                Glibc.recv(descriptor, raw.baseAddress! + end, capacity, 0)
            }
            if count > 0 {
                end += count
                return
            }
            if count == 0 { throw BenchError("connection closed by peer") }
            if errno == EINTR { continue }
            throw systemError("recv")
        }
    }

    /// Ensures `count` unread bytes are buffered.
    func need(_ count: Int) throws(BenchError) {
        while end - start < count { try fill() }
    }

    /// The next length-prefixed frame: its body's range in `buffer`, consumed.
    public func readFrame() throws(BenchError) -> Range<Int> {
        try need(FrameSplitter.prefixBytes)
        var length = 0
        for index in start..<(start + FrameSplitter.prefixBytes) { length = length << 8 | Int(buffer[index]) }
        try need(FrameSplitter.prefixBytes + length)
        let body = (start + FrameSplitter.prefixBytes)..<(start + FrameSplitter.prefixBytes + length)
        start = body.upperBound
        return body
    }

    /// Reads exactly `count` bytes and discards them (the floor's echo).
    public func readExactly(_ count: Int) throws(BenchError) {
        try need(count)
        start += count
    }

    /// Reads up to a CRLF CRLF header terminator; returns the header text (for the HTTP client).
    func readHTTPHead() throws(BenchError) -> String {
        var scanned = start
        while true {
            while scanned + 3 < end {
                if buffer[scanned] == 13 && buffer[scanned + 1] == 10 && buffer[scanned + 2] == 13 && buffer[scanned + 3] == 10 {
                    let head = String(decoding: buffer[start..<scanned], as: UTF8.self)
                    start = scanned + 4
                    return head
                }
                scanned += 1
            }
            let offset = scanned - start
            try fill()
            scanned = start + offset
        }
    }

    /// Reads a CRLF-terminated line (chunk sizes).
    func readLine() throws(BenchError) -> String {
        var scanned = start
        while true {
            while scanned + 1 < end {
                if buffer[scanned] == 13 && buffer[scanned + 1] == 10 {
                    let line = String(decoding: buffer[start..<scanned], as: UTF8.self)
                    start = scanned + 2
                    return line
                }
                scanned += 1
            }
            let offset = scanned - start
            try fill()
            scanned = start + offset
        }
    }

    func take(_ count: Int) throws(BenchError) -> [UInt8] {
        try need(count)
        let bytes = Array(buffer[start..<(start + count)])
        start += count
        return bytes
    }
}
