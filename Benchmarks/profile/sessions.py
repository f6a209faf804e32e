#!/usr/bin/env python3
"""batond's resident memory per open session: N connections, each with hello and a session, held open.

    python3 Benchmarks/profile/sessions.py SOCKET [N]   (raise the open-file limit first: ulimit -n 20000)"""

import resource
import socket
import sys
import time

from proc import peer_pid, read_frame, rss  # also puts clients/python on the path
from baton import protocol as p  # noqa: E402


def main() -> None:
    path, count = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    first = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    first.connect(path)
    pid = peer_pid(first)
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
