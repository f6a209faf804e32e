import BatonProtocol
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A minimal blocking client over a Unix or TCP socket, built on the protocol codec, for tests that
/// need byte-level control: send frames or raw bytes, read the next `ServerMessage` with a timeout.
/// Not thread-safe: use one connection from one thread at a time.
///
///     let connection = try RawConnection(unixPath: daemon.socketPath)
///     let session = try connection.handshake()
///     let reply = try connection.call(.create(path: "/a", data: [], mode: .persistent))
public final class RawConnection: @unchecked Sendable {
    public let descriptor: Int32
    private var accumulator = FrameAccumulator()
    private var nextRequestID: UInt32 = 1
    private var isClosed = false
    /// Events that arrived while waiting for a reply, oldest first; `nextEvent` takes from here first.
    public private(set) var pendingEvents: [Event] = []
    /// When set (TCP), `hello()` follows the hello with `authenticate` (Proto/PROTOCOL.md §4.7).
    public var authenticationToken: [UInt8]?

    /// What `openSession` granted.
    public struct Session: Sendable, Equatable {
        public var sessionID: UInt64
        public var secret: SessionSecret
        public var timeoutMilliseconds: UInt32
    }

    public init(unixPath: String) throws {
        let descriptor = socket(AF_UNIX, RawConnection.streamType, 0)
        guard descriptor >= 0 else { throw TestSupportError.system("socket: \(RawConnection.lastError())") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(unixPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            _ = Glibc.close(descriptor)
            throw TestSupportError.system("socket path too long: \(unixPath)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let reason = RawConnection.lastError()
            _ = Glibc.close(descriptor)
            throw TestSupportError.system("connect \(unixPath): \(reason)")
        }
        self.descriptor = descriptor
    }

    /// Connects to an IPv4 loopback address.
    public init(tcpHost: String = "127.0.0.1", port: UInt16) throws {
        let descriptor = socket(AF_INET, RawConnection.streamType, 0)
        guard descriptor >= 0 else { throw TestSupportError.system("socket: \(RawConnection.lastError())") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, tcpHost, &address.sin_addr) == 1 else {
            _ = Glibc.close(descriptor)
            throw TestSupportError.system("not an IPv4 address: \(tcpHost)")
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let reason = RawConnection.lastError()
            _ = Glibc.close(descriptor)
            throw TestSupportError.system("connect \(tcpHost):\(port): \(reason)")
        }
        var noDelay: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
        self.descriptor = descriptor
    }

    deinit { close() }

    #if canImport(Glibc)
    static let streamType = Int32(SOCK_STREAM.rawValue)
    #else
    static let streamType = SOCK_STREAM
    #endif

    static func lastError() -> String { String(cString: strerror(errno)) }

    // MARK: Sending

    /// Sends one request with the given id.
    public func send(_ request: Request, requestID: UInt32) throws {
        try sendRaw(Codec.encodeRequest(request, requestID: requestID))
    }

    /// Sends one request with the next id of this connection and returns the id.
    @discardableResult
    public func send(_ request: Request) throws -> UInt32 {
        let requestID = takeRequestID()
        try send(request, requestID: requestID)
        return requestID
    }

    /// The next unused request id (ids increase from 1).
    public func takeRequestID() -> UInt32 {
        defer { nextRequestID &+= 1 }
        return nextRequestID
    }

    /// Writes bytes exactly as given (garbage, partial frames, many frames at once).
    public func sendRaw(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { raw in
                Glibc.send(descriptor, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE || errno == ECONNRESET { throw TestSupportError.closed }
                throw TestSupportError.system("send: \(RawConnection.lastError())")
            }
            offset += written
        }
    }

    // MARK: Receiving

    /// The next frame from the server, reply or event.
    public func receive(timeoutSeconds: Double = 10) throws -> ServerMessage {
        let deadline = RawConnection.monotonicSeconds() + timeoutSeconds
        while true {
            let body: [UInt8]?
            do {
                body = try accumulator.nextBody()
            } catch {
                throw TestSupportError.undecodable(error)
            }
            if let body {
                do {
                    return try Codec.decodeServerMessage(body)
                } catch {
                    throw TestSupportError.undecodable(error)
                }
            }
            try fill(until: deadline)
        }
    }

    /// The next reply; events met on the way are kept in `pendingEvents`.
    public func receiveReply(timeoutSeconds: Double = 10) throws -> Reply {
        while true {
            switch try receive(timeoutSeconds: timeoutSeconds) {
            case .reply(let reply): return reply
            case .event(let event): pendingEvents.append(event)
            }
        }
    }

    /// The next event: a kept one first, else the next one to arrive (replies on the way are an error).
    public func nextEvent(timeoutSeconds: Double = 10) throws -> Event {
        if !pendingEvents.isEmpty { return pendingEvents.removeFirst() }
        switch try receive(timeoutSeconds: timeoutSeconds) {
        case .event(let event): return event
        case .reply(let reply): throw TestSupportError.unexpected("a reply (id \(reply.requestID)) while waiting for an event")
        }
    }

    /// Sends a request and waits for its reply (which must be the next reply on this connection).
    public func call(_ request: Request, timeoutSeconds: Double = 10) throws -> Reply {
        let requestID = try send(request)
        let reply = try receiveReply(timeoutSeconds: timeoutSeconds)
        guard reply.requestID == requestID else {
            throw TestSupportError.unexpected("reply to request \(reply.requestID), expected \(requestID)")
        }
        return reply
    }

    /// Sends a request and returns its successful body, or throws the server's error.
    public func callSuccessfully(_ request: Request, timeoutSeconds: Double = 10) throws -> ReplyBody {
        try call(request, timeoutSeconds: timeoutSeconds).result.get()
    }

    /// Every child name of `path`, following `children` pages (PROTOCOL.md §5.2); the server's error if any.
    public func allChildren(of path: String) throws -> Result<[String], ReplyError> {
        var names: [String] = []
        while true {
            let reply = try call(.children(path: path, watch: false, after: names.last ?? ""))
            switch reply.result {
            case .failure(let error): return .failure(error)
            case .success(.children(_, let page, let more)):
                names += page
                if !more || page.isEmpty { return .success(names) }
            case .success(let other): throw TestSupportError.unexpected("children answered \(other)")
            }
        }
    }

    /// `hello` (then `authenticate` when `authenticationToken` is set), then `openSession`.
    @discardableResult
    public func handshake(clientName: String = "test", sessionTimeoutMilliseconds: UInt32 = 10_000,
                          flags: SessionFlags = []) throws -> Session {
        try hello(clientName: clientName)
        let body = try callSuccessfully(.openSession(timeoutMilliseconds: sessionTimeoutMilliseconds, flags: flags))
        guard case .session(let sessionID, let secret, let timeout) = body else {
            throw TestSupportError.unexpected("openSession answered \(body)")
        }
        return Session(sessionID: sessionID, secret: secret, timeoutMilliseconds: timeout)
    }

    /// `hello`, then `authenticate` when `authenticationToken` is set.
    public func hello(clientName: String = "test") throws {
        let body = try callSuccessfully(.hello(version: ProtocolVersion.current, clientName: clientName))
        guard case .hello = body else { throw TestSupportError.unexpected("hello answered \(body)") }
        if let authenticationToken { try authenticate(token: authenticationToken) }
    }

    public func authenticate(token: [UInt8]) throws {
        let body = try callSuccessfully(.authenticate(token: token))
        guard case .empty = body else { throw TestSupportError.unexpected("authenticate answered \(body)") }
    }

    /// Reads (and returns) whatever arrives until the server closes the connection.
    /// Throws `timedOut` if it is still open after `timeoutSeconds`.
    public func readUntilClosed(timeoutSeconds: Double = 10) throws -> [ServerMessage] {
        var messages: [ServerMessage] = []
        while true {
            do {
                messages.append(try receive(timeoutSeconds: timeoutSeconds))
            } catch TestSupportError.closed {
                return messages
            }
        }
    }

    /// Whether bytes or an end of stream are waiting to be read, without reading them.
    public func isReadable(timeoutSeconds: Double = 0) -> Bool {
        var descriptors = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        return poll(&descriptors, 1, Int32(timeoutSeconds * 1_000)) > 0
    }

    private func fill(until deadline: Double) throws {
        while true {
            let remaining = deadline - RawConnection.monotonicSeconds()
            guard remaining > 0 else { throw TestSupportError.timedOut("no complete frame from the server") }
            var descriptors = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptors, 1, Int32(min(remaining * 1_000 + 1, Double(Int32.max))))
            if ready < 0 {
                if errno == EINTR { continue }
                throw TestSupportError.system("poll: \(RawConnection.lastError())")
            }
            if ready == 0 { continue }
            var buffer = [UInt8](repeating: 0, count: 65_536)
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                if errno == ECONNRESET { throw TestSupportError.closed }
                throw TestSupportError.system("recv: \(RawConnection.lastError())")
            }
            if count == 0 { throw TestSupportError.closed }
            accumulator.append(buffer[0..<count])
            return
        }
    }

    // MARK: Socket control

    /// Shrinks the kernel's receive buffer, so a client that does not read backs up the server sooner.
    public func setReceiveBufferBytes(_ bytes: Int32) {
        var value = bytes
        setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Closes without a goodbye; on TCP with SO_LINGER 0 the peer sees a reset.
    public func closeAbruptly() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close()
    }

    public func close() {
        guard !isClosed else { return }
        isClosed = true
        _ = Glibc.close(descriptor)
    }

    static func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
