#!/usr/bin/env python3
"""batond's resident memory per open session: N connections, each with hello and a session, held open.

    python3 Benchmarks/profile/sessions.py SOCKET [N]   (raise the open-file limit first: ulimit -n 20000)"""

import os
import resource
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "clients", "python"))
from baton import protocol as p  # noqa: E402


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def read_frame(s: socket.socket) -> bytes:
    header = s.recv(4, socket.MSG_WAITALL)
    return s.recv(struct.unpack(">I", header)[0], socket.MSG_WAITALL)


def main() -> None:
    path, count = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    first = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    first.connect(path)
    pid, _, _ = struct.unpack("3i", first.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    before = rss(pid)
    held = []
    for index in range(count):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(p.encode_hello(1, f"sessions-{index}") + p.encode_open_session(2, 60_000))
        read_frame(s)
        read_frame(s)
        held.append(s)
    time.sleep(0.2)
    after = rss(pid)
    print(f"{count} sessions: RSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB, {(after - before) / count:.0f} B/session")


if __name__ == "__main__":
    main()
