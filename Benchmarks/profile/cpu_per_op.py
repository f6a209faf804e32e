#!/usr/bin/env python3
"""Server CPU per operation, read from /proc (holds on a busy machine better than throughput).

    python3 Benchmarks/profile/cpu_per_op.py SOCKET OP [SECONDS]    OP: ping | get | pair | rawping

Runs OP one at a time over one connection for SECONDS and prints batond's CPU time (all threads, /proc/PID/task/*/schedstat) spent per operation (a pair is acquire + release), in microseconds.
ping, get and pair go through the Python client (clients/python); rawping writes a ping frame on a
bare socket and reads one frame back, so it also drives an echo server (Benchmarks/profile/uv_echo.c:
the CPU per message of a bare libuv echo). Several sockets may be given as SOCKET1,SOCKET2: the targets take turns in 0.5 s slices, so an A/B
comparison shares the machine's busy moments."""

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
        if op == "rawping":
            raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            raw.connect(path)
            # hello and a session (an echo server just sends them back): then pings are served.
            for frame in (baton.protocol.encode_hello(1, "cpu-per-op"), baton.protocol.encode_open_session(2, 10_000)):
                raw.sendall(frame)
                read_frame(raw)
            targets.append({"path": path, "pid": peer_pid_of(path), "client": raw, "key": "", "ops": 0, "cpu": 0.0})
            continue
        client = baton.Client(path, client_name="cpu-per-op")
        key = f"/cpu-per-op-{os.getpid()}"
        if op == "get":
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
                for _ in range(50):
                    if op == "rawping":
                        client.sendall(PING)
                        read_frame(client)
                    elif op == "ping":
                        client.ping()
                    elif op == "get":
                        client.get(key)
                    else:
                        client.release(client.acquire(key))
                n += 50
            t["cpu"] += cpu_seconds(t["pid"]) - before
            t["ops"] += n
    for t in targets:
        print(f"{op} {t['path']}: {t['ops']} ops, server CPU {1e6 * t['cpu'] / t['ops']:.1f} us/op")
        t["client"].close()


if __name__ == "__main__":
    main()
