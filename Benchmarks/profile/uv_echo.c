/* A bare libuv echo server on a Unix socket: the yardstick for batond's CPU per message
 * (Benchmarks/profile/cpu_per_op.py SOCKET echo). Reads into one buffer, writes back with
 * uv_try_write (uv_write for what is left), as batond's loop does.
 *   cc -O2 -o /tmp/uv_echo Benchmarks/profile/uv_echo.c -luv && /tmp/uv_echo /tmp/echo.sock [--timer]
 * --timer keeps a 10 s libuv timer armed (as batond's session deadlines do), so every poll is an
 * epoll_wait with a timeout instead of an unbounded one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static char buffer[65536];

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    (void)handle; (void)suggested;
    *buf = uv_buf_init(buffer, sizeof buffer);
}

static void on_written(uv_write_t *request, int status) { (void)status; free(request); }

static void on_read(uv_stream_t *stream, ssize_t count, const uv_buf_t *buf) {
    if (count < 0) { uv_close((uv_handle_t *)stream, (uv_close_cb)free); return; }
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)count);
    int written = uv_try_write(stream, &out, 1);
    if (written < 0) written = 0;
    if (written < count) {
        uv_write_t *request = malloc(sizeof *request + (size_t)(count - written));
        char *rest = (char *)(request + 1);
        memcpy(rest, buf->base + written, (size_t)(count - written));
        uv_buf_t tail = uv_buf_init(rest, (unsigned)(count - written));
        uv_write(request, stream, &tail, 1, on_written);
    }
}

static void on_connection(uv_stream_t *server, int status) {
    if (status < 0) return;
    uv_pipe_t *client = malloc(sizeof *client);
    uv_pipe_init(uv_default_loop(), client, 0);
    if (uv_accept(server, (uv_stream_t *)client) == 0) uv_read_start((uv_stream_t *)client, on_alloc, on_read);
    else uv_close((uv_handle_t *)client, (uv_close_cb)free);
}

static void on_timer(uv_timer_t *timer) { (void)timer; }

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: uv_echo SOCKET [--timer]\n"); return 2; }
    uv_timer_t timer;
    if (argc > 2 && strcmp(argv[2], "--timer") == 0) {
        uv_timer_init(uv_default_loop(), &timer);
        uv_timer_start(&timer, on_timer, 10000, 10000);
    }
    uv_pipe_t server;
    unlink(argv[1]);
    uv_pipe_init(uv_default_loop(), &server, 0);
    if (uv_pipe_bind(&server, argv[1]) != 0 || uv_listen((uv_stream_t *)&server, 128, on_connection) != 0) {
        perror("listen"); return 1;
    }
    return uv_run(uv_default_loop(), UV_RUN_DEFAULT);
}
