#!/usr/bin/env python3
"""Server CPU per operation, read from /proc (holds on a busy machine better than throughput).

    python3 Benchmarks/profile/cpu_per_op.py SOCKET OP [SECONDS]    OP: ping | get | set | pair | rawping | pset | pcreate | pping | pget

Runs OP one at a time over one connection for SECONDS and prints batond's CPU time (all threads, /proc/PID/task/*/schedstat) spent per operation (a pair is acquire + release), in microseconds.
ping, get and pair go through the Python client (clients/python); rawping writes a ping frame on a
bare socket and reads one frame back, so it also drives an echo server (Benchmarks/profile/uv_echo.c:
the CPU per message of a bare libuv echo). Several sockets may be given as SOCKET1,SOCKET2: the targets take turns in 0.5 s slices, so an A/B
comparison shares the machine's busy moments. set writes 16 bytes to one node, one at a time; pset and
pcreate send 64 sets (creates of new nodes) in one write on a bare socket and then read the 64
replies (the write table's pipelined rows); pping and pget do the same with pings and gets of a
16-byte node: the kernel's share is spread over 64 requests, so what is left is the server's own
work per request (decode, dispatch, encode, routing)."""

import os
import socket
import sys
import time

from proc import cpu_seconds, peer_pid, read_frame  # also puts clients/python on the path
import baton  # noqa: E402

PING = baton.protocol.encode_ping(1)


def peer_pid_of(path: str) -> int:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    pid = peer_pid(s)
    s.close()
    return pid


def main() -> None:
    paths, op = sys.argv[1].split(","), sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 6.0
    targets = []
    for path in paths:
        if op in ("rawping", "pset", "pcreate", "pping", "pget"):
            raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            raw.connect(path)
            # hello and a session (an echo server just sends them back): then pings are served.
            for frame in (baton.protocol.encode_hello(1, "cpu-per-op"), baton.protocol.encode_open_session(2, 10_000)):
                raw.sendall(frame)
                read_frame(raw)
            key = f"/cpu-per-op-{os.getpid()}-{len(targets)}"
            if op != "rawping":
                raw.sendall(baton.protocol.encode_create(3, key, b"a" * 16))
                read_frame(raw)
            targets.append({"path": path, "pid": peer_pid_of(path), "client": raw, "key": key, "ops": 0, "cpu": 0.0, "created": 0})
            continue
        client = baton.Client(path, client_name="cpu-per-op")
        key = f"/cpu-per-op-{os.getpid()}"
        if op in ("get", "set"):
            try:
                client.create(key, b"a" * 16)
            except baton.BatonError:
                pass
        targets.append({"path": path, "pid": peer_pid_of(path), "client": client, "key": key, "ops": 0, "cpu": 0.0})
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for t in targets:
            client, key = t["client"], t["key"]
            before = cpu_seconds(t["pid"])
            end = time.monotonic() + 0.5
            n = 0
            while time.monotonic() < end:
                pipelined = op in ("pset", "pcreate", "pping", "pget")
                rounds = 2 if pipelined else 50
                for _ in range(rounds):
                    if op == "rawping":
                        client.sendall(PING)
                        read_frame(client)
                    elif op == "ping":
                        client.ping()
                    elif op == "get":
                        client.get(key)
                    elif op == "set":
                        client.set(key, b"b" * 16)
                    elif op == "pset":
                        client.sendall(b"".join(baton.protocol.encode_set(10 + i, key, b"b" * 16) for i in range(64)))
                        for _ in range(64):
                            read_frame(client)
                    elif op in ("pping", "pget"):
                        if op == "pping":
                            frames = [baton.protocol.encode_ping(10 + i) for i in range(64)]
                        else:
                            frames = [baton.protocol.encode_get(10 + i, key) for i in range(64)]
                        client.sendall(b"".join(frames))
                        for _ in range(64):
                            read_frame(client)
                    elif op == "pcreate":
                        frames = []
                        for i in range(64):
                            t["created"] += 1
                            frames.append(baton.protocol.encode_create(10 + i, f"{key}-{t['created']}", b"b" * 16))
                        client.sendall(b"".join(frames))
                        for _ in range(64):
                            read_frame(client)
                    else:
                        client.release(client.acquire(key))
                n += rounds * (64 if pipelined else 1)
            t["cpu"] += cpu_seconds(t["pid"]) - before
            t["ops"] += n
    for t in targets:
        print(f"{op} {t['path']}: {t['ops']} ops, server CPU {1e6 * t['cpu'] / t['ops']:.2f} us/op")
        t["client"].close()


if __name__ == "__main__":
    main()
