import CLibUV
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The loop's deadline timer (session expiry, lock deadlines, lingering and stalled peers), and the
/// group-commit window's (ServerLoop+Durability.swift).
///
/// On Linux it is a timerfd watched by a `uv_poll_t`, not a `uv_timer_t`: while any libuv timer is
/// active, every poll is an `epoll_wait` with a timeout, and the kernel arms and cancels a high-
/// resolution timer for it on every loop turn, that is on every request (measured on a bare libuv
/// echo: +0.7 µs of CPU per message, a tenth of a `ping`; Benchmarks/profile/uv_echo.c --timer). The
/// timerfd is set only when the deadline changes, and the poll waits without a timeout.
/// Elsewhere it is a plain libuv timer. Either way it does not keep the loop alive.
/// When it fires it calls `fire` with the loop.
final class DeadlineTimer {
    private let fire: (ServerLoop) -> Void
    #if os(Linux)
    private var poll: UnsafeMutablePointer<uv_poll_t>?
    private var descriptor: Int32 = -1
    #else
    private var timer: UnsafeMutablePointer<uv_timer_t>?
    #endif

    /// nil if the kernel refuses a timerfd.
    init?(loop: UnsafeMutablePointer<uv_loop_t>, fire: @escaping (ServerLoop) -> Void) {
        self.fire = fire
        #if os(Linux)
        let descriptor = baton_timerfd_create()
        guard descriptor >= 0 else { return nil }
        let poll = LibUV.allocate(uv_poll_t.self)
        guard uv_poll_init(loop, poll, descriptor) == 0 else {
            free(poll)
            Glibc.close(descriptor)
            return nil
        }
        LibUV.setOwner(poll, self)
        uv_unref(baton_handle(poll))
        uv_poll_start(poll, Int32(UV_READABLE.rawValue), onDeadlineReadable)
        self.poll = poll
        self.descriptor = descriptor
        #else
        let timer = LibUV.allocate(uv_timer_t.self)
        uv_timer_init(loop, timer)
        LibUV.setOwner(timer, self)
        uv_unref(baton_handle(timer))
        self.timer = timer
        #endif
    }

    /// Fires once, `milliseconds` from now (0: on the next poll), replacing any earlier setting.
    func start(milliseconds: UInt64) {
        #if os(Linux)
        let (microseconds, overflow) = milliseconds.multipliedReportingOverflow(by: 1_000)
        start(microseconds: overflow ? .max : microseconds)
        #else
        guard let timer else { return }
        uv_timer_start(timer, onDeadlineTimer, milliseconds, 0)
        #endif
    }

    /// The same in microseconds (a libuv timer, off Linux, rounds up to the next millisecond).
    func start(microseconds: UInt64) {
        #if os(Linux)
        guard descriptor >= 0 else { return }
        let result = baton_timerfd_arm_microseconds(descriptor, microseconds)
        precondition(result == 0, "timerfd_settime failed: \(errno)")
        #else
        start(milliseconds: (microseconds + 999) / 1_000)
        #endif
    }

    func stop() {
        #if os(Linux)
        guard descriptor >= 0 else { return }
        _ = baton_timerfd_disarm(descriptor)
        #else
        guard let timer else { return }
        uv_timer_stop(timer)
        #endif
    }

    /// Closes the handle (and the descriptor); the timer never fires after this.
    func close() {
        #if os(Linux)
        guard let poll else { return }
        uv_poll_stop(poll)
        LibUV.close(poll)
        Glibc.close(descriptor)
        self.poll = nil
        descriptor = -1
        #else
        guard let timer else { return }
        LibUV.close(timer)
        self.timer = nil
        #endif
    }

    fileprivate func fired(_ handle: UnsafeMutableRawPointer?) {
        #if os(Linux)
        guard descriptor >= 0 else { return }
        baton_timerfd_drain(descriptor)
        #endif
        if let loop = ServerLoop.of(handle) { fire(loop) }
    }
}

#if os(Linux)
private func onDeadlineReadable(_ handle: UnsafeMutablePointer<uv_poll_t>?, _ status: Int32, _ events: Int32) {
    LibUV.owner(handle, as: DeadlineTimer.self)?.fired(handle)
}
#else
private func onDeadlineTimer(_ handle: UnsafeMutablePointer<uv_timer_t>?) {
    LibUV.owner(handle, as: DeadlineTimer.self)?.fired(handle)
}
#endif
