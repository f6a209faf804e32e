import BatonEngine
import BatonProtocol
import BatonZooKeeper
import CLibUV
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs the ZooKeeper C client inside the server's libuv loop: its socket through a `uv_poll`, its
/// timeout (pings, connection attempts) through a `uv_timer`; nothing blocks. After every round of
/// the client's work the engine routes what the completions produced (`backendProgressed`).
///
/// The C client closes and reopens its socket on its own (reconnects), possibly under the same
/// descriptor number, and libuv must never poll a closed descriptor. So the poll handle is kept only
/// while the client stays connected on the same descriptor; around any change of connection state
/// it is closed and a new one made for the current descriptor.
final class ZooKeeperDriver {
    let backend: ZooKeeperBackend
    let engine: Engine
    let logger: Logger
    private unowned let server: ServerLoop
    private let loop: UnsafeMutablePointer<uv_loop_t>
    private var timer: UnsafeMutablePointer<uv_timer_t>?
    private var poll: UnsafeMutablePointer<uv_poll_t>?
    private var polledDescriptor: Int32 = -1
    private var polledEvents: Int32 = 0
    private var lastState: ZooKeeperClient.State?
    private var stopped = false
    /// When the connection was found lost (monotonic ms). The holds are declared lost at
    /// `lossDeadline`, without waiting for the ensemble to say so (it only can once the sidecar
    /// reconnects), so that no holder believes it holds once ZooKeeper may have granted its lock elsewhere.
    private var suspendedSinceMilliseconds: UInt64?
    /// When the client started connecting without a session yet (for the "unreachable" log line).
    private var connectingSinceMilliseconds: UInt64?
    private var unreachableLogged = false
    private var expiryPending = false
    /// When the client last got to work on a live connection (monotonic ms). A sidecar that could not
    /// run for longer than the session timeout (stopped, frozen, starved) sent no pings meanwhile, so the
    /// ensemble has expired its session or is about to; what its socket buffered meanwhile (the deletion
    /// of its own waiter nodes by that expiry, say) must not be read as news of a live session.
    private var lastWorkedMilliseconds: UInt64?

    init(backend: ZooKeeperBackend, engine: Engine, server: ServerLoop, loop: UnsafeMutablePointer<uv_loop_t>, logger: Logger) {
        self.backend = backend
        self.engine = engine
        self.server = server
        self.loop = loop
        self.logger = logger
    }

    /// The loop closed its handles (shutdown): end the ZooKeeper session now, so that the ephemerals of
    /// this sidecar (its clients' locks) go at once instead of after the session timeout. The C client
    /// sends what is still queued (the deletes of the sessions shutdown ended) before its close request.
    deinit {
        backend.client.close()
    }

    /// Starts driving the client (the handles do not keep the loop alive: shutdown ends it).
    func start() {
        let timer = LibUV.allocate(uv_timer_t.self)
        uv_timer_init(loop, timer)
        LibUV.setOwner(timer, self)
        uv_unref(baton_handle(timer))
        self.timer = timer
        watchSession()
        connectingSinceMilliseconds = server.now().monotonicMilliseconds
        logger.info("connecting to ZooKeeper", metadata: ["store": "\(backend.storeDescription)",
                                                           "session_timeout_ms": "\(backend.configuration.sessionTimeoutMilliseconds)"])
        rearm()
    }

    /// Closes the ZooKeeper session (its ephemerals go at once) and the handles.
    func stop() {
        guard !stopped else { return }
        stopped = true
        closePoll()
        if let timer { LibUV.close(timer) }
        timer = nil
        backend.client.close()
    }

    private func watchSession() {
        backend.client.sessionEvents = { [weak self] event in self?.sessionEvent(event) }
    }

    private func sessionEvent(_ event: ZooKeeperSessionEvent) {
        let now = server.now()
        switch event {
        case .connected(let session, let timeout):
            connectingSinceMilliseconds = nil
            unreachableLogged = false
            logger.info("ZooKeeper session established", metadata: [
                "session": "0x\(String(session, radix: 16))", "timeout_ms": "\(timeout)",
                "server": "\(backend.client.currentServer ?? "?")"])
        case .suspended:
            logger.warning("ZooKeeper connection lost; holds suspended, reconnecting within the session",
                           metadata: ["store": "\(backend.storeDescription)"])
            suspendedSinceMilliseconds = now.monotonicMilliseconds
            engine.backendSuspended(now: now)
        case .reconnected:
            logger.info("ZooKeeper connection restored; holds resumed", metadata: ["server": "\(backend.client.currentServer ?? "?")"])
            suspendedSinceMilliseconds = nil
            engine.backendResumed(now: now)
        case .expired:
            logger.error("ZooKeeper session expired: every hold is lost and every local session ends; opening a new session")
            // Acted on after the client's processing returns: the client is not closed from its own callback.
            expiryPending = true
        case .failed(let error):
            logger.critical("ZooKeeper refused the sidecar", metadata: ["error": "\(error)"])
        }
    }

    /// Holds lost, local sessions ended, a new ZooKeeper session.
    private func sessionLost(_ now: Time) {
        suspendedSinceMilliseconds = nil
        engine.backendSessionLost(now: now)
        reopen()
    }

    private func reopen() {
        closePoll()
        lastState = nil
        connectingSinceMilliseconds = server.now().monotonicMilliseconds
        do {
            try backend.reopen()
            watchSession()
        } catch {
            logger.critical("cannot open a new ZooKeeper session", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Driving

    /// Lets the client work, routes what it produced, and waits for what it asks next.
    fileprivate func process(readable: Bool, writable: Bool) {
        guard !stopped else { return }
        if let last = lastWorkedMilliseconds, backend.client.state == .connected {
            let woke = server.now()
            let gap = woke.monotonicMilliseconds &- last
            if gap > UInt64(max(0, backend.client.negotiatedTimeoutMilliseconds)) {
                logger.error("batond did not run for longer than the ZooKeeper session timeout: every hold is lost and every local session ends; opening a new session",
                             metadata: ["stalled_ms": "\(gap)", "timeout_ms": "\(backend.client.negotiatedTimeoutMilliseconds)"])
                lastWorkedMilliseconds = nil
                sessionLost(woke)
                engine.backendProgressed(now: woke)
                server.routeOutputs()
                rearm()
                return
            }
        }
        backend.client.process(readable: readable, writable: writable)
        let now = server.now()
        lastWorkedMilliseconds = backend.client.state == .connected ? now.monotonicMilliseconds : nil
        if expiryPending {
            expiryPending = false
            sessionLost(now)
        } else if let since = suspendedSinceMilliseconds, backend.client.state == .suspended,
           now.monotonicMilliseconds >= lossDeadline(since) {
            logger.error("ZooKeeper unreachable for as long as the session may live: every hold is lost and every local session ends; opening a new session")
            sessionLost(now)
        }
        if let since = connectingSinceMilliseconds, !unreachableLogged, backend.client.state == .connecting,
           now.monotonicMilliseconds >= since + UInt64(max(0, backend.configuration.sessionTimeoutMilliseconds)) {
            unreachableLogged = true
            logger.error("ZooKeeper unreachable: no session yet; retrying (clients get storageFailure meanwhile)",
                         metadata: ["store": "\(backend.storeDescription)"])
        }
        engine.backendProgressed(now: now)
        server.routeOutputs()
        rearm()
    }

    private func rearm() {
        guard !stopped, let timer else { return }
        let client = backend.client
        let interest = client.interest()
        let state = client.state
        var events: Int32 = 0
        if interest.readable { events |= Int32(UV_READABLE.rawValue) }
        if interest.writable { events |= Int32(UV_WRITABLE.rawValue) }
        let steady = state == .connected && lastState == .connected && interest.descriptor == polledDescriptor
        lastState = state
        if !steady { closePoll() }
        if interest.descriptor >= 0 && events != 0 {
            if poll == nil {
                let handle = LibUV.allocate(uv_poll_t.self)
                let result = uv_poll_init(loop, handle, interest.descriptor)
                if result != 0 {
                    free(handle)
                    logger.error("cannot poll the ZooKeeper socket", metadata: ["error": "\(LibUV.describe(result))"])
                } else {
                    LibUV.setOwner(handle, self)
                    uv_unref(baton_handle(handle))
                    poll = handle
                    polledDescriptor = interest.descriptor
                    polledEvents = 0
                }
            }
            if let poll, events != polledEvents {
                uv_poll_start(poll, events, onZooKeeperPoll)
                polledEvents = events
            }
        } else if let poll, polledEvents != 0 {
            uv_poll_stop(poll)
            polledEvents = 0
        }
        var timeout = UInt64(max(0, interest.timeoutMilliseconds))
        if let since = suspendedSinceMilliseconds {
            // Wake up when the suspension reaches the session timeout, even if the client has no work.
            let deadline = lossDeadline(since)
            let now = uv_now(loop)
            timeout = min(timeout, deadline > now ? deadline - now : 0)
        }
        uv_timer_start(timer, onZooKeeperTimer, timeout, 0)
    }

    /// The C client finds the connection lost when it has heard nothing for 2/3 of the session timeout
    /// (or at once, on a reset), so the ensemble heard from the sidecar at most 2/3 of a timeout before
    /// `since` (less a round trip) and cannot expire the session before `since` + 1/3 of the timeout.
    private func lossDeadline(_ since: UInt64) -> UInt64 {
        since + UInt64(max(0, backend.client.negotiatedTimeoutMilliseconds)) / 3
    }

    private func closePoll() {
        guard let poll else { return }
        LibUV.close(poll)
        self.poll = nil
        polledDescriptor = -1
        polledEvents = 0
    }
}

private func onZooKeeperPoll(_ handle: UnsafeMutablePointer<uv_poll_t>?, _ status: Int32, _ events: Int32) {
    guard let driver = LibUV.owner(handle, as: ZooKeeperDriver.self) else { return }
    // An error on the socket: let the client read it and find out.
    let readable = status < 0 || events & Int32(UV_READABLE.rawValue) != 0
    driver.process(readable: readable, writable: events & Int32(UV_WRITABLE.rawValue) != 0)
}

private func onZooKeeperTimer(_ handle: UnsafeMutablePointer<uv_timer_t>?) {
    LibUV.owner(handle, as: ZooKeeperDriver.self)?.process(readable: false, writable: false)
}

extension ServerLoop {
    /// `--store zookeeper://...`: the engine's namespace and locks go to the ensemble. Started after
    /// the engine, before the first connection; the client connects in the background (requests made
    /// before it has a session fail with `storageFailure`, and the recipe retries them).
    func openZooKeeper(_ zooKeeper: ZooKeeperConfiguration) throws(ServerError) {
        guard let engine = engine as? Engine else { throw ServerError("the ZooKeeper store needs batond's engine") }
        let backend: ZooKeeperBackend
        do {
            backend = try ZooKeeperBackend(configuration: zooKeeper, limits: configuration.limits)
        } catch {
            throw ServerError("cannot start the ZooKeeper client for \(zooKeeper.address): \(error)")
        }
        engine.useBackend(backend)
        ZooKeeperDriver(backend: backend, engine: engine, server: self, loop: loop, logger: logger).start()
    }
}
