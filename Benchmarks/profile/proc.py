"""What the profile scripts read of a running batond: its pid (the peer of a Unix socket), resident
memory and CPU time from /proc, and whole frames off a bare socket. Also puts clients/python on the
import path, so that a script may `import baton` after `import proc`."""

import os
import socket
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))


def peer_pid(s: socket.socket) -> int:
    """The pid of the process at the other end of a connected Unix socket (SO_PEERCRED)."""
    pid, _, _ = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return pid


def rss(pid: int) -> int:
    """Resident memory in bytes (VmRSS), 0 if /proc does not say."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """On-CPU time of all the process's threads, in ns resolution (/proc/PID/task/*/schedstat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass
    return total / 1e9


def read_frame(s: socket.socket) -> bytes:
    """One length-prefixed frame's body (blocking)."""
    header = s.recv(4, socket.MSG_WAITALL)
    return s.recv(struct.unpack(">I", header)[0], socket.MSG_WAITALL)
