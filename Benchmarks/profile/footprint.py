#!/usr/bin/env python3
"""batond's resident memory with N nodes of 16 bytes (the footprint scenario of BatonBenchKit:
1,000 directories of up to 1,000 nodes each, created 256 at a time over one session).

    python3 Benchmarks/profile/footprint.py SOCKET [NODES]

Prints VmRSS before and after, and bytes per node."""

import os
import socket
import sys
import time

from proc import peer_pid, rss  # also puts clients/python on the path
from baton import protocol as p  # noqa: E402



def main() -> None:
    path = sys.argv[1]
    nodes = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    pid = peer_pid(s)
    buffer = bytearray()

    def replies(count: int) -> None:
        got = 0
        while got < count:
            chunk = s.recv(1 << 20)
            if not chunk:
                raise SystemExit("batond closed the connection")
            buffer.extend(chunk)
            for body in p.split_frames(buffer, 1 << 24):
                message = p.decode_server_body(body)
                if isinstance(message, p.Reply):
                    if message.error is not None and "nodeExists" not in str(message.error):
                        raise SystemExit(f"error: {message.error}")
                    got += 1

    s.sendall(p.encode_hello(1, "footprint") + p.encode_open_session(2, 60_000))
    replies(2)
    before = rss(pid)
    directory = f"/footprint-{os.getpid()}"
    s.sendall(p.encode_create(3, directory, b""))
    replies(1)
    data = b"b" * 16
    created, request_id = 0, 10
    started = time.monotonic()
    while created < nodes:
        frames = []
        while len(frames) < 256 and created < nodes:
            parent = f"{directory}/d{created // 1000}"
            if created % 1000 == 0:
                frames.append(p.encode_create(request_id, parent, b"")); request_id += 1
            frames.append(p.encode_create(request_id, f"{parent}/n{created % 1000}", data)); request_id += 1
            created += 1
        s.sendall(b"".join(frames))
        replies(len(frames))
    elapsed = time.monotonic() - started
    time.sleep(0.2)
    after = rss(pid)
    print(f"{nodes} nodes in {elapsed:.1f} s: RSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB, "
          f"{(after - before) / nodes:.0f} B/node")


if __name__ == "__main__":
    main()
