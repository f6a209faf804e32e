import BatonProtocol
import CLibUV
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The HTTP listener of `--metrics` (TCP) or `--metrics-socket` (a Unix socket), on the server's own
/// loop: it answers `GET /metrics` with the Prometheus exposition (only with the right
/// `Authorization: Bearer` token when `--metrics-token-file` is set), `/healthz` and `/readyz` with
/// probes, and everything else with an error, one request per connection. It shares nothing with the lock service but the loop: a bounded number of connections, a bounded request
/// head, a deadline on every connection, and rendering that takes microseconds.
final class MetricsEndpoint {
    /// Scrapers at once; more are closed on accept (Prometheus sends one at a time per target).
    static let connectionsMax = 16
    /// A connection must be done (request read, response written, peer gone) within this.
    static let connectionDeadlineMilliseconds: UInt64 = 10_000
    static let sweepIntervalMilliseconds: UInt64 = 1_000

    weak var loop: ServerLoop?
    /// A `uv_tcp_t` or (`socketPath` set) a `uv_pipe_t`.
    let handle: UnsafeMutableRawPointer
    private(set) var boundPort: UInt16?
    /// The Unix socket file this endpoint created (removed when it closes).
    private(set) var socketPath: String?
    /// `GET /metrics` needs `Authorization: Bearer` with these bytes (`--metrics-token-file`).
    let bearerToken: [UInt8]?
    private var connections: [ObjectIdentifier: MetricsConnection] = [:]
    private var timer: UnsafeMutablePointer<uv_timer_t>?
    private var isSweeping = false
    private var isClosed = false

    private init(handle: UnsafeMutableRawPointer, loop: ServerLoop, bearerToken: [UInt8]?) {
        self.handle = handle
        self.loop = loop
        self.bearerToken = bearerToken
    }

    static func bind(host: String, port: UInt16, bearerToken: [UInt8]?, loop: ServerLoop) throws(ServerError) -> MetricsEndpoint {
        var address = try Listener.socketAddress(host: host, port: port, option: "--metrics")
        let tcp = LibUV.allocate(uv_tcp_t.self)
        var result = uv_tcp_init(loop.loop, tcp)
        precondition(result == 0, "uv_tcp_init cannot fail on a live loop")
        let endpoint = MetricsEndpoint(handle: UnsafeMutableRawPointer(tcp), loop: loop, bearerToken: bearerToken)
        LibUV.setOwner(tcp, endpoint)
        result = withUnsafeBytes(of: &address) { uv_tcp_bind(tcp, baton_sockaddr($0.baseAddress), 0) }
        if result == 0 { result = uv_listen(baton_stream(tcp), 64, onMetricsConnection) }
        if result < 0 {
            LibUV.close(tcp)
            throw ServerError("cannot serve metrics on \(Endpoint.tcp(host: host, port: port)): \(LibUV.errorText(result))")
        }
        endpoint.boundPort = Listener.localPort(tcp)
        endpoint.startTimer(loop)
        return endpoint
    }

    /// `--metrics-socket`: HTTP on a Unix socket of mode 0600 (the daemon's user and root may scrape),
    /// with the main socket's checks of its place (a directory of another user is refused; a stale
    /// file is removed, a live server there is not).
    static func bind(unixPath path: String, bearerToken: [UInt8]?, loop: ServerLoop) throws(ServerError) -> MetricsEndpoint {
        try Listener.checkSocketLocation(path, logger: loop.logger)
        try Listener.removeStaleSocket(path)
        let pipe = LibUV.allocate(uv_pipe_t.self)
        var result = uv_pipe_init(loop.loop, pipe, 0)
        precondition(result == 0, "uv_pipe_init cannot fail on a live loop")
        let endpoint = MetricsEndpoint(handle: UnsafeMutableRawPointer(pipe), loop: loop, bearerToken: bearerToken)
        LibUV.setOwner(pipe, endpoint)
        // Created private: no moment in which others could connect.
        let previousMask = umask(0o177)
        result = uv_pipe_bind(pipe, path)
        umask(previousMask)
        if result == 0 {
            endpoint.socketPath = path
            result = uv_listen(baton_stream(pipe), 64, onMetricsConnection)
        }
        if result < 0 {
            LibUV.close(pipe)
            if endpoint.socketPath != nil { unlink(path) }
            throw ServerError("cannot serve metrics on \(path): \(LibUV.errorText(result))")
        }
        endpoint.startTimer(loop)
        return endpoint
    }

    private func startTimer(_ loop: ServerLoop) {
        let timer = LibUV.allocate(uv_timer_t.self)
        uv_timer_init(loop.loop, timer)
        LibUV.setOwner(timer, self)
        uv_unref(baton_handle(timer))
        self.timer = timer
    }

    /// Stops listening and closes every connection (shutdown).
    func close() {
        guard !isClosed else { return }
        isClosed = true
        LibUV.close(handle)
        if let socketPath { unlink(socketPath) }
        if let timer { LibUV.close(timer) }
        timer = nil
        for connection in connections.values { closeConnection(connection) }
    }

    // MARK: Connections

    func accept(status: Int32) {
        guard status == 0, !isClosed, let loop else { return }
        let tcp: UnsafeMutableRawPointer
        if socketPath != nil {
            let pipe = LibUV.allocate(uv_pipe_t.self)
            uv_pipe_init(loop.loop, pipe, 0)
            tcp = UnsafeMutableRawPointer(pipe)
        } else {
            let stream = LibUV.allocate(uv_tcp_t.self)
            uv_tcp_init(loop.loop, stream)
            tcp = UnsafeMutableRawPointer(stream)
        }
        guard uv_accept(baton_stream(handle), baton_stream(tcp)) == 0 else {
            LibUV.close(tcp)
            return
        }
        guard connections.count < MetricsEndpoint.connectionsMax else {
            LibUV.close(tcp)
            return
        }
        let now = uv_now(loop.loop)
        let connection = MetricsConnection(handle: tcp, endpoint: self,
                                           deadlineMilliseconds: now + MetricsEndpoint.connectionDeadlineMilliseconds)
        LibUV.setOwner(tcp, connection)
        connections[ObjectIdentifier(connection)] = connection
        if uv_read_start(baton_stream(tcp), onMetricsAllocate, onMetricsRead) < 0 {
            closeConnection(connection)
            return
        }
        startSweeping()
    }

    func didRead(_ connection: MetricsConnection, _ count: Int) {
        guard !connection.isClosed else { return }
        if count < 0 {
            if count == Int(UV_EOF.rawValue) && connection.isResponding && !connection.isWritten {
                // The peer finished sending; let the response go out first (writeCompleted closes).
                connection.peerFinished = true
                return
            }
            // Before a response there is nothing to answer; after one, the peer is done.
            closeConnection(connection)
            return
        }
        guard count > 0, !connection.isResponding else { return }  // after the response, reads are drained
        let room = MetricsHTTP.requestHeadBytesMax - connection.received.count
        connection.received.append(contentsOf: UnsafeRawBufferPointer(start: connection.readBuffer, count: min(count, room)))
        switch MetricsHTTP.examine(connection.received[...], bearerToken: bearerToken) {
        case .incomplete:
            return
        case .respond(let status, let includesBody):
            loop?.countMetricsRequest()
            respond(connection, MetricsHTTP.errorResponse(status: status, includesBody: includesBody))
        case .metrics(let includesBody):
            loop?.countMetricsRequest()
            let body = loop?.metricsExposition() ?? []
            respond(connection, MetricsHTTP.response(status: 200, body: body, contentType: MetricsHTTP.contentType,
                                                     includesBody: includesBody))
        case .health(let includesBody):
            loop?.countMetricsRequest()
            respond(connection, MetricsHTTP.response(status: 200, body: Array("ok\n".utf8), includesBody: includesBody))
        case .readiness(let includesBody):
            loop?.countMetricsRequest()
            let notReady: String? = if let loop { loop.notReadyReason } else { "shutting down" }
            let body = notReady.map { "not ready: \($0)\n" } ?? "ready\n"
            respond(connection, MetricsHTTP.response(status: notReady == nil ? 200 : 503, body: Array(body.utf8),
                                                     includesBody: includesBody))
        }
    }

    /// One write; once it is out, a shutdown (FIN); the peer's EOF then closes the connection. Reading
    /// on until then keeps the kernel from answering unread bytes with a reset that could destroy
    /// the response before the client reads it.
    private func respond(_ connection: MetricsConnection, _ bytes: [UInt8]) {
        connection.isResponding = true
        connection.received = []
        let headerBytes = MemoryLayout<uv_write_t>.stride
        guard let block = malloc(headerBytes + bytes.count) else { fatalError("out of memory") }
        let payload = block + headerBytes
        bytes.withUnsafeBytes { payload.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        let request = block.bindMemory(to: uv_write_t.self, capacity: 1)
        var buffer = uv_buf_init(payload.assumingMemoryBound(to: CChar.self), UInt32(bytes.count))
        if uv_write(request, baton_stream(connection.handle), &buffer, 1, onMetricsWriteCompleted) < 0 {
            free(block)
            closeConnection(connection)
        }
    }

    func writeCompleted(_ connection: MetricsConnection, status: Int32) {
        guard !connection.isClosed else { return }
        connection.isWritten = true
        guard status == 0, !connection.peerFinished else {
            closeConnection(connection)
            return
        }
        let request = LibUV.allocate(uv_shutdown_t.self)
        if uv_shutdown(request, baton_stream(connection.handle), onMetricsShutdownCompleted) < 0 {
            free(request)
            closeConnection(connection)
        }
    }

    func closeConnection(_ connection: MetricsConnection) {
        guard !connection.isClosed else { return }
        connection.isClosed = true
        connections[ObjectIdentifier(connection)] = nil
        LibUV.close(connection.handle)
        if connections.isEmpty { stopSweeping() }
    }

    // MARK: Deadlines

    private func startSweeping() {
        guard !isSweeping, let timer else { return }
        isSweeping = true
        uv_timer_start(timer, onMetricsSweep, MetricsEndpoint.sweepIntervalMilliseconds, MetricsEndpoint.sweepIntervalMilliseconds)
    }

    private func stopSweeping() {
        guard isSweeping, let timer else { return }
        isSweeping = false
        uv_timer_stop(timer)
    }

    func sweep() {
        guard let loop else { return }
        let now = uv_now(loop.loop)
        for connection in connections.values where connection.deadlineMilliseconds <= now {
            closeConnection(connection)
        }
    }
}

/// One HTTP connection to the metrics endpoint, confined to the loop thread.
final class MetricsConnection {
    /// A `uv_tcp_t` or a `uv_pipe_t`, as its endpoint's.
    let handle: UnsafeMutableRawPointer
    weak var endpoint: MetricsEndpoint?
    let deadlineMilliseconds: UInt64
    /// The request head so far, at most `MetricsHTTP.requestHeadBytesMax` bytes.
    var received: [UInt8] = []
    /// The response is queued or sent; later bytes from the peer are read and dropped.
    var isResponding = false
    /// The response has been handed to the kernel.
    var isWritten = false
    /// The peer's end of stream arrived before the response was written.
    var peerFinished = false
    var isClosed = false
    static let readBufferBytes = 4_096
    let readBuffer: UnsafeMutableRawPointer

    init(handle: UnsafeMutableRawPointer, endpoint: MetricsEndpoint, deadlineMilliseconds: UInt64) {
        self.handle = handle
        self.endpoint = endpoint
        self.deadlineMilliseconds = deadlineMilliseconds
        guard let buffer = malloc(MetricsConnection.readBufferBytes) else { fatalError("out of memory") }
        readBuffer = buffer
    }

    deinit {
        // Safe: the connection is released by the close callback, after libuv's last read.
        free(readBuffer)
    }
}

// MARK: C callbacks

private func onMetricsConnection(_ server: UnsafeMutablePointer<uv_stream_t>?, _ status: Int32) {
    LibUV.owner(server, as: MetricsEndpoint.self)?.accept(status: status)
}

private func onMetricsAllocate(_ handle: UnsafeMutablePointer<uv_handle_t>?, _ suggested: Int,
                               _ buffer: UnsafeMutablePointer<uv_buf_t>?) {
    guard let connection = LibUV.owner(handle, as: MetricsConnection.self), let buffer else { return }
    buffer.pointee = uv_buf_init(connection.readBuffer.assumingMemoryBound(to: CChar.self),
                                 UInt32(MetricsConnection.readBufferBytes))
}

private func onMetricsRead(_ stream: UnsafeMutablePointer<uv_stream_t>?, _ count: Int, _ buffer: UnsafePointer<uv_buf_t>?) {
    guard let connection = LibUV.owner(stream, as: MetricsConnection.self) else { return }
    connection.endpoint?.didRead(connection, count)
}

private func onMetricsWriteCompleted(_ request: UnsafeMutablePointer<uv_write_t>?, _ status: Int32) {
    guard let request else { return }
    let stream = request.pointee.handle
    free(request)  // the block holds the request and its bytes
    guard status != UV_ECANCELED.rawValue, let connection = LibUV.owner(stream, as: MetricsConnection.self) else { return }
    connection.endpoint?.writeCompleted(connection, status: status)
}

private func onMetricsShutdownCompleted(_ request: UnsafeMutablePointer<uv_shutdown_t>?, _ status: Int32) {
    guard let request else { return }
    let stream = request.pointee.handle
    free(request)
    guard status < 0, status != UV_ECANCELED.rawValue,
          let connection = LibUV.owner(stream, as: MetricsConnection.self) else { return }
    connection.endpoint?.closeConnection(connection)
}

private func onMetricsSweep(_ handle: UnsafeMutablePointer<uv_timer_t>?) {
    LibUV.owner(handle, as: MetricsEndpoint.self)?.sweep()
}
