#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import BatonProtocol

/// One transport connection to batond: pipelined requests matched to replies by request id, frames
/// decoded and dispatched in order (replies complete requests, events go to watches and streams), a
/// reader thread for timers, heartbeats and reconnecting. Both the async and the blocking API sit on
/// top of `submit` and `readReply`.
///
/// Threads: callers submit from anywhere. The socket is read by whoever holds the read turn
/// (`State.readTurn`), one thread at a time, so frames are dispatched in server order: a caller
/// waiting for its reply takes the turn when nobody has it and reads on its own thread (no hand-over
/// from another thread, the cost that made the library's pair ~1.7x the bench's raw client's);
/// otherwise the reader thread reads. The reader thread leaves the socket to callers while they read
/// and for `callerLinger` after (it would only be woken by their replies); it watches it again when
/// callers stop or someone waits with nobody reading. Timers and reconnecting stay on the reader thread.
/// User callbacks (watches, lock-lost, status, close) run on `eventQueue`, one at a time, in server order.
/// All mutable state is behind `state`; writes to the socket are serialised by `writer`; the receive
/// side (`receiving`) belongs to the read turn's holder.
///
/// With a reconnect plan (`enableReconnect`), a dropped transport is not the end: the reader thread
/// fails what was in flight with `connectionLost`, connects again, says hello (and authenticates),
/// resumes the session, and reads on from the new socket; watches, event streams and handlers carry
/// over, as the session's watches and queued events do on the server (PROTOCOL.md §9.4, §9.5).
final class ClientConnection: @unchecked Sendable {
    typealias Completion = @Sendable (Result<ReplyBody, BatonError>) -> Void

    struct Pending {
        var opcode: Opcode
        var completion: Completion
        /// `Ticks.now` at which the request times out.
        var deadline: Int64?
        var watch: WatchRegistration?
    }

    struct State {
        var nextRequestID: UInt32 = 1
        var pending: [UInt32: Pending] = [:]
        /// Set once the connection is finished; every later submit fails with it.
        var closedError: BatonError?
        var dataWatches: [String: [WatchCallback]] = [:]
        var childWatches: [String: [WatchCallback]] = [:]
        var subscribers: [UInt64: AsyncStream<Event>.Continuation] = [:]
        var nextSubscriberID: UInt64 = 0
        var lockLostHandlers: [UInt64: @Sendable (LockLost) -> Void] = [:]
        var closeHandlers: [UInt64: @Sendable (BatonError) -> Void] = [:]
        var nextHandlerID: UInt64 = 0
        /// Nanoseconds without a request after which a ping goes out.
        var heartbeatInterval: Int64?
        var lastSent = Ticks.now
        var heartbeatsSent: Int = 0
        /// Largest request body the server accepts (from its hello); bigger requests fail here instead
        /// of making the server close the connection.
        var requestBytesMax = Limits.default.frameBytesMax
        /// A closing error the server reported; pending requests fail with it when the stream ends.
        var closingError: BatonError?
        /// Set once the reader thread has ended (for good): nothing is delivered any more.
        var finished = false
        /// Set while the reader thread reconnects: requests fail at once with `connectionLost`.
        var reconnecting: BatonError?
        /// Where and how to resume the session when the transport drops; nil: a drop ends the client.
        var reconnectPlan: ReconnectPlan?
        var statusSubscribers: [UInt64: AsyncStream<ClientStatus>.Continuation] = [:]
        var statusHandlers: [UInt64: @Sendable (ClientStatus) -> Void] = [:]
        /// Who reads the socket now: at most one thread.
        var readTurn = ReadTurn.free
        /// The request whose caller `submit` gave the read turn to, until its `readReply` begins.
        var readTurnClaim: UInt32?
        /// Why the transport ended, as read by the turn's holder; until the reader thread installs a
        /// resumed transport (or finishes) nobody takes the turn.
        var transportEnded: BatonError?
        /// When a caller last gave the turn up: the reader thread leaves the socket alone until
        /// `callerLinger` after it (unless requests wait with nobody reading).
        var callerReadUntil: Int64?
        /// When the reader thread's sleep ends (nil: only the socket or the wake pipe end it), so a
        /// request with an earlier deadline wakes it and later ones do not.
        var readerWakesAt: Int64?
        /// Whether the reader thread's sleep includes the socket (then arriving replies wake it).
        var readerWatches = false
    }

    enum ReadTurn { case free, readerThread, caller }

    /// The receive side: the socket being read, its TLS, bytes read and not yet decoded. Touched only
    /// by the read turn's holder, and by the reader thread while the transport is down.
    final class Receiving: @unchecked Sendable {
        var descriptor: Int32
        var tls: ClientTLS?
        var accumulator: FrameAccumulator
        var buffer = [UInt8](repeating: 0, count: 65_536)

        init(descriptor: Int32, tls: ClientTLS?, frameBytesMax: Int) {
            self.descriptor = descriptor
            self.tls = tls
            self.accumulator = FrameAccumulator(frameBytesMax: frameBytesMax)
        }
    }

    /// How long the reader thread stays off the socket after a caller read it. Events that arrive in
    /// that time are read by the next caller or by the reader thread at most this late; a shorter
    /// linger wakes the reader thread more often while calls follow each other.
    static let callerLinger = Duration.milliseconds(1)
    /// How long an async caller may read its own reply on its (cooperative pool) thread before it
    /// suspends and leaves the reading to the reader thread: a bounded wait, like a spin that sleeps.
    static let asyncReadBudget = Duration.milliseconds(1)

    /// Writer side: the current socket and whether it (and the wake pipe) may still be used. The
    /// reader closes them under this lock, and replaces the socket under it after a reconnect.
    struct Writer {
        var descriptor: Int32
        /// TLS between the socket and the frames (TCP with `ClientOptions.tls`), nil otherwise.
        var tls: ClientTLS?
        var open = true
        var pipeOpen = true
    }

    private let state = MutexLock(State())
    private let writer: MutexLock<Writer>
    private let receiving: Receiving
    /// A pipe that wakes the reader's poll when a deadline or the heartbeat interval changes.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    let eventQueue = DispatchQueue(label: "baton.client.events")
    let frameBytesMax: Int

    /// Takes ownership of a connected stream socket and starts the reader thread. `frameBytesMax` bounds
    /// incoming frames: one reply can be as large as the server's whole output buffer.
    init(descriptor: Int32, tls: ClientTLS? = nil, frameBytesMax: Int = Limits.default.replyBytesMax) throws(BatonError) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            Socket.closeDescriptor(descriptor)
            throw .connectFailed("pipe: \(String(cString: strerror(errno)))")
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        self.writer = MutexLock(Writer(descriptor: descriptor, tls: tls))
        self.receiving = Receiving(descriptor: descriptor, tls: tls, frameBytesMax: frameBytesMax)
        self.wakeRead = fds[0]
        self.wakeWrite = fds[1]
        self.frameBytesMax = frameBytesMax
        let thread = Thread { [self] in readLoop() }
        thread.name = "baton.client.reader"
        thread.start()
    }

    /// Connects, and on TCP with `options.tls` completes the TLS handshake within `options.connectTimeout`.
    /// No default for `options`: a reconnect that left them out would silently drop TLS.
    static func connect(to endpoint: Endpoint, options: ClientOptions) throws(BatonError) -> ClientConnection {
        let (descriptor, tls) = try openTransport(to: endpoint, tls: options.tls, timeout: options.connectTimeout)
        return try ClientConnection(descriptor: descriptor, tls: tls)
    }

    /// A connected socket, with its TLS session when `tls` is given and the endpoint is TCP.
    static func openTransport(to endpoint: Endpoint, tls tlsOptions: TLSOptions?,
                              timeout: Duration) throws(BatonError) -> (Int32, ClientTLS?) {
        let descriptor = try Socket.connect(to: endpoint)
        guard case .tcp(let host, _) = endpoint, let tlsOptions else { return (descriptor, nil) }
        do {
            return (descriptor, try ClientTLS.handshake(descriptor: descriptor, host: host, options: tlsOptions, timeout: timeout))
        } catch {
            Socket.closeDescriptor(descriptor)
            throw error
        }
    }

    /// Writes one frame, sealed by TLS when the transport has it.
    private static func send(_ frame: [UInt8], on descriptor: Int32, tls: ClientTLS?) -> Bool {
        guard let tls else { return Socket.sendAll(descriptor, frame) }
        guard let ciphertext = tls.seal(frame) else { return false }
        return Socket.sendAll(descriptor, ciphertext)
    }

    /// The current socket (it changes when the client reconnects).
    var descriptor: Int32 { writer.withLock { $0.descriptor } }

    /// From now on, a dropped transport is resumed by `plan` instead of ending the client.
    func enableReconnect(_ plan: ReconnectPlan) {
        state.withLock { $0.reconnectPlan = plan }
    }

    // MARK: Requests

    /// Sends `request`; `completion` runs exactly once: on whichever thread reads the reply (a caller
    /// in `readReply`, or the reader thread), or right here when the connection is already closed.
    /// Keep it short and non-blocking: the reading thread runs it before it reads on. Returns the
    /// request id, or nil if nothing was sent.
    /// `claimingReadTurn`: take the read turn now if it is free, before the request goes out, so no
    /// other thread reads the reply first; the caller must then call `readReply` for the returned id.
    @discardableResult
    func submit(_ request: Request, timeout: Duration? = nil, watch: WatchRegistration? = nil,
                claimingReadTurn: Bool = false, completion: @escaping Completion) -> UInt32? {
        let now = Ticks.now
        var encoder = WireWriter()
        // Encoded with id 0 first so the size can be checked before an id is taken; the id is patched in.
        Codec.encodeRequest(request, requestID: 0, into: &encoder)
        var frame = encoder.bytes
        let deadline = timeout.map { now &+ Ticks.nanoseconds($0) }
        var wakeReader = false
        let admitted: Result<UInt32, BatonError> = state.withLock { state in
            if let error = state.closedError { return .failure(error) }
            if state.reconnecting != nil { return .failure(.connectionLost) }
            let bodyBytes = frame.count - FrameSplitter.prefixBytes
            if bodyBytes > state.requestBytesMax {
                return .failure(.invalidArgument("request of \(bodyBytes) bytes exceeds the server's limit of \(state.requestBytesMax)"))
            }
            let requestID = state.nextRequestID
            state.nextRequestID = requestID == UInt32.max ? 1 : requestID + 1
            state.pending[requestID] = Pending(opcode: request.opcode, completion: completion,
                                               deadline: deadline, watch: watch)
            state.lastSent = now
            if let deadline { wakeReader = state.readerWakesAt.map { deadline < $0 } ?? true }
            if claimingReadTurn, state.readTurn == .free, state.transportEnded == nil {
                state.readTurn = .caller
                state.readTurnClaim = requestID
            }
            return .success(requestID)
        }
        let requestID: UInt32
        switch admitted {
        case .failure(let error):
            completion(.failure(error))
            return nil
        case .success(let id):
            requestID = id
        }
        if wakeReader { wake() }
        // Body layout: u8 opcode, u32 request id (Codec.encodeRequest).
        for index in 0..<4 {
            frame[FrameSplitter.prefixBytes + 1 + index] = UInt8(truncatingIfNeeded: requestID >> (8 * (3 - index)))
        }
        let sent = writer.withLock { writer in writer.open && Self.send(frame, on: writer.descriptor, tls: writer.tls) }
        if !sent {
            // The reader will notice the dead socket and fail the rest; this request fails now.
            let (pending, willReconnect) = state.withLock { state in
                if state.readTurnClaim == requestID {
                    state.readTurn = .free
                    state.readTurnClaim = nil
                }
                return (state.pending.removeValue(forKey: requestID), state.reconnectPlan != nil && state.closedError == nil)
            }
            pending?.completion(.failure(willReconnect ? .connectionLost : .connectionClosed))
            shutdownTransport()
            wake()
            return nil
        }
        return requestID
    }

    /// Asks the server to stop waiting on acquire `requestID`; the acquire's own reply says how it ended.
    func sendCancel(acquireRequestID: UInt32) {
        submit(.cancel(acquireRequestID: acquireRequestID)) { _ in }
    }

    /// Reads the socket on the calling thread until request `requestID` is answered, its deadline
    /// passes, or `budget` (if given) is spent — when this caller claimed the read turn in `submit`
    /// or no other thread reads now; otherwise returns
    /// at once and the reply comes through the request's completion from whoever reads. Replies to
    /// other requests and events read meanwhile are dispatched as the reader thread would.
    /// The completion has run (on this thread) when the reply was read here.
    func readReply(to requestID: UInt32, within budget: Duration? = nil) {
        var stop: Int64?
        var answered = false
        let taken = state.withLock { state -> Bool in
            if state.readTurnClaim == requestID {
                // Claimed by `submit`; answered already only if a timer or the transport's end failed it.
                state.readTurnClaim = nil
            } else {
                guard state.readTurn == .free, state.transportEnded == nil, state.pending[requestID] != nil else { return false }
                state.readTurn = .caller
            }
            stop = state.pending[requestID]?.deadline
            answered = state.pending[requestID] == nil
            return true
        }
        guard taken else { return }
        if let budget {
            let end = Ticks.now + Ticks.nanoseconds(budget)
            stop = stop.map { min($0, end) } ?? end
        }
        var ended: BatonError?
        while !answered {
            if let stop {
                // Bounded: poll first, then read what is there.
                let remaining = stop - Ticks.now
                if remaining <= 0 { break }
                var descriptor = pollfd(fd: receiving.descriptor, events: Int16(POLLIN), revents: 0)
                let ready = poll(&descriptor, 1, Ticks.milliseconds(remaining))
                if ready < 0 && errno != EINTR { ended = .connectionClosed; break }
                if ready <= 0 { continue }
                ended = receive(waiting: false)
            } else {
                // No deadline: block in recv, as a plain client does (`close` shuts the socket down).
                ended = receive(waiting: true)
            }
            if ended != nil { break }
            answered = state.withLock { $0.pending[requestID] == nil }
        }
        let now = Ticks.now
        // Requests still waiting (other callers', or this one's after its budget) need a reader now.
        let wakeReader = state.withLock { state -> Bool in
            state.readTurn = .free
            state.callerReadUntil = now + Ticks.nanoseconds(Self.callerLinger)
            if let ended, state.transportEnded == nil { state.transportEnded = ended }
            return state.transportEnded != nil || (!state.pending.isEmpty && !state.readerWatches)
        }
        if wakeReader { wake() }
    }

    /// Starts pinging whenever nothing was sent for `interval`.
    func startHeartbeats(every interval: Duration) {
        state.withLock { $0.heartbeatInterval = Ticks.nanoseconds(interval) }
        wake()
    }

    var heartbeatsSent: Int { state.withLock { $0.heartbeatsSent } }

    /// Records the server's frame limit from its hello.
    func setRequestBytesMax(_ bytes: Int) {
        state.withLock { $0.requestBytesMax = bytes }
    }

    var isClosed: Bool { state.withLock { $0.closedError != nil } }

    /// Closes the transport; pending requests fail with `connectionClosed`, later ones at once; a
    /// reconnect under way stops. Idempotent.
    func close() {
        state.withLock { state in
            if state.closedError == nil { state.closedError = .connectionClosed }
        }
        shutdownTransport()
        wake()
    }

    private func shutdownTransport() {
        writer.withLock { writer in
            if writer.open { _ = shutdown(writer.descriptor, Int32(SHUT_RDWR)) }
        }
    }

    private func wake() {
        // Under the writer lock: the reader closes the pipe under it, so the descriptor is never stale.
        writer.withLock { writer in
            guard writer.pipeOpen else { return }
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }
    }

    // MARK: Events

    /// A stream of every event from now on, in server order; it finishes when the connection closes.
    func events() -> AsyncStream<Event> {
        let (stream, continuation) = AsyncStream<Event>.makeStream()
        let id: UInt64? = state.withLock { state in
            guard state.closedError == nil else { return nil }
            let id = state.nextSubscriberID
            state.nextSubscriberID += 1
            state.subscribers[id] = continuation
            return id
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    /// A stream of status changes from now on, starting with the connection's current status
    /// (`connected`, `reconnecting` or `closed`); it finishes after `closed`.
    func statusChanges() -> AsyncStream<ClientStatus> {
        let (stream, continuation) = AsyncStream<ClientStatus>.makeStream()
        let registered: UInt64? = state.withLock { state in
            if state.finished, let error = state.closedError {
                continuation.yield(.closed(error))
                return nil
            }
            continuation.yield(state.reconnecting.map { .reconnecting($0) } ?? .connected)
            let id = state.nextSubscriberID
            state.nextSubscriberID += 1
            state.statusSubscribers[id] = continuation
            return id
        }
        guard let registered else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.statusSubscribers.removeValue(forKey: registered) }
        }
        return stream
    }

    /// `handler` runs on the event queue for every status change from now on.
    func addStatusHandler(_ handler: @escaping @Sendable (ClientStatus) -> Void) {
        state.withLock { state in
            state.statusHandlers[state.nextHandlerID] = handler
            state.nextHandlerID += 1
        }
    }

    /// Tells status subscribers and handlers, in order with events.
    private func publish(_ status: ClientStatus) {
        let (subscribers, handlers) = state.withLock { state in
            (state.statusSubscribers.sorted { $0.key < $1.key }.map(\.value),
             state.statusHandlers.sorted { $0.key < $1.key }.map(\.value))
        }
        for subscriber in subscribers { subscriber.yield(status) }
        if !handlers.isEmpty { eventQueue.async { for handler in handlers { handler(status) } } }
    }

    func addLockLostHandler(_ handler: @escaping @Sendable (LockLost) -> Void) {
        state.withLock { state in
            state.lockLostHandlers[state.nextHandlerID] = handler
            state.nextHandlerID += 1
        }
    }

    /// `handler` runs once when the connection ends (at once, on the event queue, if it already has).
    func addCloseHandler(_ handler: @escaping @Sendable (BatonError) -> Void) {
        let closed: BatonError? = state.withLock { state in
            if let error = state.closedError { return error }
            state.closeHandlers[state.nextHandlerID] = handler
            state.nextHandlerID += 1
            return nil
        }
        if let closed { eventQueue.async { handler(closed) } }
    }

    // MARK: Reader thread

    private func readLoop() {
        while true {
            let endError = readUntilEnd()
            guard let plan = reconnectPlan(after: endError) else { return finish(endError) }
            transportLost(endError)
            switch reconnect(plan) {
            case .success(let (descriptor, tls, leftover)):
                install(descriptor, tls, leftover)
            case .failure(let error):
                return finish(error)
            }
        }
    }

    /// Reads and dispatches frames until the transport ends; returns why. Between reads it sleeps on
    /// the wake pipe and, unless callers are reading, the socket; it wakes for timers.
    private func readUntilEnd() -> BatonError {
        while true {
            let now = Ticks.now
            let (watch, timeout, ended): (Bool, Int32, BatonError?) = state.withLock { state in
                // A caller that still reads is woken by the shut-down socket and gives the turn up.
                if let ended = state.transportEnded {
                    return state.readTurn == .caller ? (false, Ticks.milliseconds(Ticks.nanoseconds(Self.callerLinger)), nil) : (false, 0, ended)
                }
                var due = nextTimer(&state)
                let callerReads = state.readTurn == .caller
                let lingering = state.callerReadUntil.map { now < $0 } ?? false
                let watch = !callerReads && (!lingering || !state.pending.isEmpty)
                if !watch {
                    // Look again when the linger ends: callers may have stopped by then.
                    let check = callerReads ? now + Ticks.nanoseconds(Self.callerLinger) : state.callerReadUntil!
                    due = due.map { min($0, check) } ?? check
                }
                state.readerWakesAt = due
                state.readerWatches = watch
                return (watch, due.map { Ticks.milliseconds($0 - now) } ?? -1, nil)
            }
            if let ended { return ended }
            var descriptors = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
                               pollfd(fd: receiving.descriptor, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&descriptors, watch ? 2 : 1, timeout)
            if ready < 0 && errno != EINTR {
                state.withLock { state in
                    if state.transportEnded == nil { state.transportEnded = .connectionClosed }
                }
                shutdownTransport()
                continue
            }
            if ready > 0 && descriptors[0].revents != 0 { drainWakePipe() }
            if ready > 0 && watch && descriptors[1].revents != 0 {
                let mine = state.withLock { state -> Bool in
                    guard state.readTurn == .free, state.transportEnded == nil else { return false }
                    state.readTurn = .readerThread
                    return true
                }
                if mine {
                    let ended = receive(waiting: false)
                    state.withLock { state in
                        state.readTurn = .free
                        if let ended, state.transportEnded == nil { state.transportEnded = ended }
                    }
                }
            }
            runTimers()
        }
    }

    /// One read from the socket, and the dispatch of every whole frame it completes; why the
    /// transport ended, if it did. Only with the read turn. `waiting`: block until bytes arrive.
    private func receive(waiting: Bool) -> BatonError? {
        let side = receiving
        let count = side.buffer.withUnsafeMutableBytes {
            recv(side.descriptor, $0.baseAddress, $0.count, waiting ? 0 : Int32(MSG_DONTWAIT))
        }
        if count == 0 { return .connectionClosed }
        if count < 0 { return errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK ? nil : .connectionClosed }
        guard let tls = side.tls else { return dispatchFrames(side.buffer, count: count) }
        // After the server's close_notify its FIN follows: the next recv ends the transport.
        do {
            let plaintext = try tls.open(side.buffer[0..<count]).plaintext
            return dispatchFrames(plaintext, count: plaintext.count)
        } catch {
            return error
        }
    }

    /// Dispatches every whole frame in `bytes[0..<count]` after what the accumulator holds; keeps a
    /// frame the read cut for the next. Whole frames of a read that starts on a frame boundary (the
    /// common case: one reply per read) are decoded where they lie, without copying their bodies.
    private func dispatchFrames(_ bytes: [UInt8], count: Int) -> BatonError? {
        let side = receiving
        do throws(DecodeFailure) {
            var offset = 0
            if side.accumulator.buffer.isEmpty {
                while let length = try bytes.withUnsafeBytes({ buffer in
                    Result { () throws(DecodeFailure) in
                        try FrameSplitter.bodyLength(UnsafeRawBufferPointer(rebasing: buffer[..<count]), at: offset,
                                                     frameBytesMax: side.accumulator.frameBytesMax)
                    }
                }).get(), offset + FrameSplitter.prefixBytes + length <= count {
                    let start = offset + FrameSplitter.prefixBytes
                    offset = start + length
                    if let violation = dispatch(try Codec.decodeServerMessage(bytes, from: start, to: offset)) { return violation }
                }
            }
            guard offset < count else { return nil }
            side.accumulator.append(bytes[offset..<count])
            while let body = try side.accumulator.nextBody() {
                if let violation = dispatch(try Codec.decodeServerMessage(body)) { return violation }
            }
        } catch {
            return .protocolViolation("\(error.code): \(error.message)")
        }
        return nil
    }

    private func drainWakePipe() {
        var drain = [UInt8](repeating: 0, count: 64)
        while read(wakeRead, &drain, drain.count) > 0 {}
    }

    /// The earliest request deadline or heartbeat, if any.
    private func nextTimer(_ state: inout State) -> Int64? {
        let lastSent = state.lastSent
        var due = state.heartbeatInterval.map { lastSent &+ $0 }
        for pending in state.pending.values {
            if let deadline = pending.deadline, due.map({ deadline < $0 }) ?? true { due = deadline }
        }
        return due
    }

    /// `duration` as a poll timeout: whole milliseconds rounded up, zero when already past.
    static func milliseconds(_ duration: Duration) -> Int32 { Ticks.milliseconds(Ticks.nanoseconds(duration)) }

    private func runTimers() {
        let now = Ticks.now
        let (expired, pingDue): ([Pending], Bool) = state.withLock { state in
            var expired: [Pending] = []
            for (id, pending) in state.pending {
                if let deadline = pending.deadline, deadline <= now {
                    expired.append(pending)
                    state.pending[id] = nil
                }
            }
            var pingDue = false
            if let interval = state.heartbeatInterval, state.closedError == nil, now - state.lastSent >= interval {
                pingDue = true
                state.heartbeatsSent += 1
            }
            return (expired, pingDue)
        }
        for pending in expired { pending.completion(.failure(.timedOut)) }
        if pingDue { submit(.ping) { _ in } }
    }

    /// Routes one server message. Returns an error when the message breaks the protocol.
    private func dispatch(_ message: ServerMessage) -> BatonError? {
        switch message {
        case .reply(let reply):
            if case .failure(let error) = reply.result, error.code.closesConnection {
                state.withLock { state in
                    if state.closingError == nil { state.closingError = .server(error) }
                }
                // Request id 0 is the connection as a whole (tooManyConnections, shuttingDown): no caller.
                if reply.requestID == 0 { return nil }
            }
            let pending: Pending? = state.withLock { state in
                guard let pending = state.pending.removeValue(forKey: reply.requestID) else { return nil }
                if case .success = reply.result, let watch = pending.watch, pending.opcode == reply.opcode {
                    switch watch.kind {
                    case .data: state.dataWatches[watch.path, default: []].append(watch.callback)
                    case .children: state.childWatches[watch.path, default: []].append(watch.callback)
                    }
                }
                return pending
            }
            // A reply to a request that already timed out (or to a request id the server made up
            // because it could not read ours) has nobody waiting: drop it.
            guard let pending else { return nil }
            guard pending.opcode == reply.opcode else {
                let violation = BatonError.protocolViolation(
                    "reply to request \(reply.requestID) has opcode \(reply.opcode), expected \(pending.opcode)")
                pending.completion(.failure(violation))
                return violation
            }
            pending.completion(reply.result.mapError { .server($0) })
            return nil
        case .event(let event):
            dispatch(event)
            return nil
        }
    }

    private func dispatch(_ event: Event) {
        var callbacks: [WatchCallback] = []
        var lockLostHandlers: [@Sendable (LockLost) -> Void] = []
        let subscribers: [AsyncStream<Event>.Continuation] = state.withLock { state in
            switch event {
            case .watch(let type, let path):
                let fired = WatchKind.kinds(firedBy: type)
                if fired.data, let found = state.dataWatches.removeValue(forKey: path) { callbacks += found }
                if fired.children, let found = state.childWatches.removeValue(forKey: path) { callbacks += found }
            case .lockLost:
                lockLostHandlers = state.lockLostHandlers.sorted { $0.key < $1.key }.map(\.value)
            case .lockSuspended, .sessionExpired, .revocationRequested, .lockResumed:
                break
            }
            return state.subscribers.sorted { $0.key < $1.key }.map(\.value)
        }
        for subscriber in subscribers { subscriber.yield(event) }
        switch event {
        case .lockSuspended(let node, let token): publish(.holdSuspended(node: node, token: token))
        case .lockResumed(let node, let token): publish(.holdResumed(node: node, token: token))
        case .lockLost(let node, let token, let reason): publish(.holdLost(LockLost(node: node, token: token, reason: reason)))
        default: break
        }
        switch event {
        case .watch(let type, let path) where !callbacks.isEmpty:
            let watchEvent = WatchEvent(type: type, path: path), fired = callbacks
            eventQueue.async { for callback in fired { callback(watchEvent) } }
        case .lockLost(let node, let token, let reason) where !lockLostHandlers.isEmpty:
            let lost = LockLost(node: node, token: token, reason: reason), handlers = lockLostHandlers
            eventQueue.async { for handler in handlers { handler(lost) } }
        default:
            break
        }
    }

    // MARK: Reconnecting (reader thread)

    /// The plan to resume with after the transport ended with `endError`, or nil when this is the end:
    /// no plan, closed by this client, or a peer that broke the protocol (talking again would not help).
    /// Marks the connection reconnecting (under the same lock as `close`, so one of them wins).
    private func reconnectPlan(after endError: BatonError) -> ReconnectPlan? {
        if case .protocolViolation = endError { return nil }
        return state.withLock { state in
            guard state.closedError == nil, let plan = state.reconnectPlan else { return nil }
            state.reconnecting = state.closingError ?? endError
            return plan
        }
    }

    /// The transport dropped and a reconnect follows: the old socket closes, requests in flight fail
    /// with `connectionLost` (they may or may not have been performed: never resent), and the
    /// application is told `reconnecting`.
    private func transportLost(_ endError: BatonError) {
        let (pending, reason): ([Pending], BatonError) = state.withLock { state in
            let pending = Array(state.pending.values)
            state.pending.removeAll()
            return (pending, state.reconnecting ?? endError)
        }
        writer.withLock { writer in
            if writer.open { Socket.closeDescriptor(writer.descriptor) }
            writer.open = false
        }
        for request in pending { request.completion(.failure(.connectionLost)) }
        publish(.reconnecting(reason))
    }

    /// Connects again and resumes the session, with backoff, until it succeeds, the session's timeout
    /// has passed since the drop (the server has ended it by then, with its holds), the server refuses
    /// the resume, or this client is closed. Returns the new socket and the bytes read past the resume.
    private func reconnect(_ plan: ReconnectPlan) -> Result<(Int32, ClientTLS?, FrameAccumulator), BatonError> {
        let giveUpAt = ContinuousClock.now + .milliseconds(Int64(plan.sessionTimeoutMilliseconds))
        var backoff = plan.policy.initialBackoff
        var lastError = BatonError.connectionClosed
        while true {
            if let closed = state.withLock({ $0.closedError }) { return .failure(closed) }
            do throws(BatonError) {
                return .success(try resume(plan, deadline: min(ContinuousClock.now + plan.connectTimeout, giveUpAt)))
            } catch .server(let refusal) where ReconnectPlan.refusalsThatEnd.contains(refusal.code) {
                return .failure(.sessionLost("the server refused to resume session \(plan.sessionID): \(refusal)"))
            } catch {
                lastError = error
            }
            let now = ContinuousClock.now
            guard now < giveUpAt else {
                return .failure(.sessionLost("session \(plan.sessionID) not resumed within its timeout of "
                    + "\(plan.sessionTimeoutMilliseconds) ms; last error: \(lastError)"))
            }
            pause(min(backoff, giveUpAt - now))
            backoff = min(backoff * 2, plan.policy.maximumBackoff)
        }
    }

    /// Waits `duration`, or less if `close` wakes the reader.
    private func pause(_ duration: Duration) {
        var descriptors = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        if poll(&descriptors, 1, Self.milliseconds(duration)) > 0 { drainWakePipe() }
    }

    /// One attempt: connect, hello, authenticate (TCP), resumeSession, each bounded by `deadline`.
    private func resume(_ plan: ReconnectPlan, deadline: ContinuousClock.Instant) throws(BatonError) -> (Int32, ClientTLS?, FrameAccumulator) {
        let (descriptor, tls) = try Self.openTransport(to: plan.endpoint, tls: plan.tls,
                                                       timeout: max(deadline - ContinuousClock.now, .milliseconds(1)))
        var accumulator = FrameAccumulator(frameBytesMax: frameBytesMax)
        do throws(BatonError) {
            guard case .hello(let version, _, let frameBytesMax) = try exchange(
                Calls.hello(clientName: plan.clientName).request, requestID: 1, descriptor, tls, &accumulator, deadline) else {
                throw .protocolViolation("unexpected hello reply")
            }
            guard version == ProtocolVersion.current else {
                throw .protocolViolation("server speaks protocol \(version), client \(ProtocolVersion.current)")
            }
            if case .tcp = plan.endpoint, let token = plan.tcpAuthenticationToken {
                _ = try exchange(.authenticate(token: token), requestID: 2, descriptor, tls, &accumulator, deadline)
            }
            _ = try exchange(.resumeSession(sessionID: plan.sessionID, secret: plan.secret), requestID: 3,
                             descriptor, tls, &accumulator, deadline)
            setRequestBytesMax(Int(frameBytesMax))
            return (descriptor, tls, accumulator)
        } catch {
            Socket.closeDescriptor(descriptor)
            throw error
        }
    }

    /// Sends one request on a socket nobody else uses yet and reads until its reply (events before it
    /// are dispatched as usual; none are expected before the session is resumed).
    private func exchange(_ request: Request, requestID: UInt32, _ descriptor: Int32, _ tls: ClientTLS?,
                          _ accumulator: inout FrameAccumulator,
                          _ deadline: ContinuousClock.Instant) throws(BatonError) -> ReplyBody {
        var encoder = WireWriter()
        Codec.encodeRequest(request, requestID: requestID, into: &encoder)
        guard Self.send(encoder.bytes, on: descriptor, tls: tls) else { throw .connectionClosed }
        var buffer = [UInt8](repeating: 0, count: 4_096)
        while true {
            do {
                while let body = try accumulator.nextBody() {
                    switch try Codec.decodeServerMessage(body) {
                    case .reply(let reply) where reply.requestID == requestID || reply.requestID == 0:
                        return try reply.result.mapError { BatonError.server($0) }.get()
                    case .reply(let reply):
                        throw BatonError.protocolViolation("reply to request \(reply.requestID) during the resume")
                    case .event(let event):
                        dispatch(event)
                    }
                }
            } catch let error as BatonError {
                throw error
            } catch let error as DecodeFailure {
                throw .protocolViolation("\(error.code): \(error.message)")
            } catch {
                throw .protocolViolation("\(error)")
            }
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { throw .timedOut }
            var descriptors = [pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0),
                               pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&descriptors, 2, Self.milliseconds(remaining))
            if ready < 0 && errno != EINTR { throw .connectionClosed }
            if ready > 0 && descriptors[1].revents != 0 {
                drainWakePipe()
                if let closed = state.withLock({ $0.closedError }) { throw closed }
            }
            if ready > 0 && descriptors[0].revents != 0 {
                let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
                if count == 0 || (count < 0 && errno != EINTR && errno != EAGAIN) { throw .connectionClosed }
                if count > 0 {
                    if let tls {
                        accumulator.append(try tls.open(buffer[0..<count]).plaintext)
                    } else {
                        accumulator.append(buffer[0..<count])
                    }
                }
            }
        }
    }

    /// The resumed socket becomes the connection's; the application is told `resumed`. A `close`
    /// that raced the resume shuts the new socket down, and the reader then ends for good.
    private func install(_ descriptor: Int32, _ tls: ClientTLS?, _ leftover: FrameAccumulator) {
        writer.withLock { writer in
            writer.descriptor = descriptor
            writer.tls = tls
            writer.open = true
        }
        // Nobody holds the read turn while `transportEnded` is set; clearing it (below, under the
        // lock) hands the new receive side over.
        receiving.descriptor = descriptor
        receiving.tls = tls
        receiving.accumulator = leftover
        let closed = state.withLock { state in
            state.transportEnded = nil
            state.reconnecting = nil
            state.closingError = nil
            state.lastSent = Ticks.now
            return state.closedError != nil
        }
        if closed { shutdownTransport() }
        publish(.resumed)
    }

    /// Ends the connection: fails what is pending, finishes streams, tells close handlers, closes fds.
    private func finish(_ streamError: BatonError) {
        let (error, pending, subscribers, closeHandlers) = state.withLock { state in
            let error = streamError == .connectionClosed ? state.closingError ?? streamError : streamError
            state.closedError = error
            state.finished = true
            state.reconnecting = nil
            let pending = Array(state.pending.values)
            state.pending.removeAll()
            state.dataWatches.removeAll()
            state.childWatches.removeAll()
            let subscribers = Array(state.subscribers.values)
            state.subscribers.removeAll()
            let handlers = state.closeHandlers.sorted { $0.key < $1.key }.map(\.value)
            state.closeHandlers.removeAll()
            state.lockLostHandlers.removeAll()
            return (error, pending, subscribers, handlers)
        }
        writer.withLock { writer in
            if writer.open { Socket.closeDescriptor(writer.descriptor) }
            writer.open = false
            writer.pipeOpen = false
            Socket.closeDescriptor(wakeRead)
            Socket.closeDescriptor(wakeWrite)
        }
        for request in pending { request.completion(.failure(error)) }
        for subscriber in subscribers { subscriber.finish() }
        publish(.closed(error))
        let statusSubscribers = state.withLock { state in
            defer { state.statusSubscribers.removeAll(); state.statusHandlers.removeAll() }
            return Array(state.statusSubscribers.values)
        }
        for subscriber in statusSubscribers { subscriber.finish() }
        if !closeHandlers.isEmpty {
            eventQueue.async { for handler in closeHandlers { handler(error) } }
        }
    }
}

/// The connection's clock: monotonic nanoseconds as plain integers, so the pending table's entries
/// have a fixed layout (`ContinuousClock.Instant` is resilient: every copy of a value holding one
/// goes through its value witnesses, measurable per request).
enum Ticks {
    static var now: Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }

    /// `duration` in nanoseconds, clamped to about ±292 years.
    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min / 2 : .max / 2 }
        return whole.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
    }

    /// `nanoseconds` as a poll timeout: whole milliseconds rounded up, zero when already past.
    static func milliseconds(_ nanoseconds: Int64) -> Int32 {
        nanoseconds <= 0 ? 0 : Int32(clamping: nanoseconds / 1_000_000 + (nanoseconds % 1_000_000 == 0 ? 0 : 1))
    }
}
