// baton-echo: the bare libuv echo server the benchmark compares batond's CPU with. One loop, one
// thread, every connection echoed as it reads, with uv_try_write first (as batond answers) and a
// queued uv_write only for what the socket did not take. What it costs per message is what the event
// loop and the kernel cost, with no protocol and no state: the floor for a server on libuv.
//   baton-echo --unix PATH | --tcp HOST:PORT     prints "ready" once listening; runs until killed
#include <uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// One read buffer shared by every connection: a read is echoed (or copied) before the next read.
static char slab[65536];

typedef struct {
    uv_write_t request;
    char bytes[];
} queued_write;

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buffer) {
    (void)handle; (void)suggested;
    buffer->base = slab;
    buffer->len = sizeof slab;
}

static void on_close(uv_handle_t *handle) { free(handle); }

static void on_written(uv_write_t *request, int status) {
    (void)status;
    free(request);
}

static void on_read(uv_stream_t *stream, ssize_t count, const uv_buf_t *buffer) {
    if (count < 0) {
        uv_close((uv_handle_t *)stream, on_close);
        return;
    }
    if (count == 0) return;
    uv_buf_t out = uv_buf_init(buffer->base, (unsigned int)count);
    int written = uv_try_write(stream, &out, 1);
    if (written == count) return;
    if (written < 0 && written != UV_EAGAIN) {
        uv_close((uv_handle_t *)stream, on_close);
        return;
    }
    size_t done = written > 0 ? (size_t)written : 0;
    size_t rest = (size_t)count - done;
    queued_write *queued = malloc(sizeof *queued + rest);
    if (queued == NULL) abort();
    memcpy(queued->bytes, buffer->base + done, rest);
    uv_buf_t remainder = uv_buf_init(queued->bytes, (unsigned int)rest);
    uv_write(&queued->request, stream, &remainder, 1, on_written);
}

static int is_tcp;

static void on_connection(uv_stream_t *server, int status) {
    if (status < 0) return;
    uv_stream_t *client;
    if (is_tcp) {
        uv_tcp_t *tcp = malloc(sizeof *tcp);
        uv_tcp_init(server->loop, tcp);
        uv_tcp_nodelay(tcp, 1);
        client = (uv_stream_t *)tcp;
    } else {
        uv_pipe_t *pipe = malloc(sizeof *pipe);
        uv_pipe_init(server->loop, pipe, 0);
        client = (uv_stream_t *)pipe;
    }
    if (uv_accept(server, client) != 0 || uv_read_start(client, on_alloc, on_read) != 0) {
        uv_close((uv_handle_t *)client, on_close);
    }
}

static int fail(const char *what, int code) {
    fprintf(stderr, "baton-echo: %s: %s\n", what, uv_strerror(code));
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "--unix") != 0 && strcmp(argv[1], "--tcp") != 0)) {
        fprintf(stderr, "usage: baton-echo --unix PATH | --tcp HOST:PORT\n");
        return 2;
    }
    uv_loop_t *loop = uv_default_loop();
    uv_pipe_t pipe_server;
    uv_tcp_t tcp_server;
    uv_stream_t *server;
    int code;
    is_tcp = strcmp(argv[1], "--tcp") == 0;
    if (is_tcp) {
        char host[256];
        const char *colon = strrchr(argv[2], ':');
        if (colon == NULL || (size_t)(colon - argv[2]) >= sizeof host) return fail("address", UV_EINVAL);
        memcpy(host, argv[2], (size_t)(colon - argv[2]));
        host[colon - argv[2]] = 0;
        struct sockaddr_in address;
        if ((code = uv_ip4_addr(host, atoi(colon + 1), &address)) != 0) return fail("address", code);
        uv_tcp_init(loop, &tcp_server);
        if ((code = uv_tcp_bind(&tcp_server, (const struct sockaddr *)&address, 0)) != 0) return fail("bind", code);
        server = (uv_stream_t *)&tcp_server;
    } else {
        remove(argv[2]);
        uv_pipe_init(loop, &pipe_server, 0);
        if ((code = uv_pipe_bind(&pipe_server, argv[2])) != 0) return fail("bind", code);
        server = (uv_stream_t *)&pipe_server;
    }
    if ((code = uv_listen(server, 128, on_connection)) != 0) return fail("listen", code);
    printf("ready\n");
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
