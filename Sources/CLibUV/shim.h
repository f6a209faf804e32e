#ifndef BATON_CLIBUV_SHIM_H
#define BATON_CLIBUV_SHIM_H
#include <uv.h>
#include <sys/socket.h>
#include <sys/ioctl.h>

// Casts that spare Swift the OpaquePointer dance: every libuv handle type
// begins with the uv_handle_t fields, every stream with uv_stream_t.
static inline uv_handle_t *baton_handle(void *handle) { return (uv_handle_t *)handle; }
static inline uv_stream_t *baton_stream(void *handle) { return (uv_stream_t *)handle; }
static inline const struct sockaddr *baton_sockaddr(const void *address) { return (const struct sockaddr *)address; }

// Bytes the kernel holds for reading on a socket (FIONREAD), -1 on error: ioctl is variadic, which
// Swift cannot call.
static inline int baton_unread_bytes(int fd) {
    int count = 0;
    if (ioctl(fd, FIONREAD, &count) != 0) return -1;
    return count;
}

// The credentials of the process at the other end of a Unix socket (Linux SO_PEERCRED), for logs.
// Returns 0 on success; the struct ucred needs _GNU_SOURCE, which Swift's Glibc module does not set.
#if defined(SO_PEERCRED)
static inline int baton_peer_credentials(int fd, int *pid, unsigned *uid) {
    int values[3];
    socklen_t length = sizeof(values);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, values, &length) != 0) return -1;
    *pid = values[0];
    *uid = (unsigned)values[1];
    return 0;
}
#else
static inline int baton_peer_credentials(int fd, int *pid, unsigned *uid) { (void)fd; (void)pid; (void)uid; return -1; }
#endif

// The loop's deadline timer as a timerfd (Linux; DeadlineTimer.swift says why). Relative to now, as
// uv_timer_start is; 0 fires at once (a zero it_value would disarm instead). -1 on error.
#if defined(__linux__)
#include <sys/timerfd.h>
#include <unistd.h>
#include <stdint.h>
static inline int baton_timerfd_create(void) { return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC); }
// In microseconds: deadlines are whole milliseconds, the group-commit window a fraction of an fsync.
static inline int baton_timerfd_arm_microseconds(int fd, uint64_t microseconds) {
    struct itimerspec spec = {{0, 0}, {(time_t)(microseconds / 1000000), (long)(microseconds % 1000000) * 1000L}};
    if (microseconds == 0) spec.it_value.tv_nsec = 1;
    return timerfd_settime(fd, 0, &spec, NULL);
}
static inline int baton_timerfd_disarm(int fd) {
    struct itimerspec spec = {{0, 0}, {0, 0}};
    return timerfd_settime(fd, 0, &spec, NULL);
}
// Consumes the expiry count so the descriptor stops being readable.
static inline void baton_timerfd_drain(int fd) {
    uint64_t expirations;
    (void)!read(fd, &expirations, sizeof expirations);
}
#endif
#endif
