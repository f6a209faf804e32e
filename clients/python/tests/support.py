"""Shared by the tests: the repository's golden vectors and a real batond on a temporary socket."""

import os
import socket
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, ".."))

import baton  # noqa: E402


def vectors(name):
    """``{name: frame bytes}`` of one Proto/vectors file (format: Proto/vectors/README.md)."""
    entries = {}
    with open(os.path.join(ROOT, "Proto", "vectors", name)) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if ":" in line:
                key, digits = line.split(":", 1)
                entries[key.strip()] = bytes.fromhex("".join(digits.split()))
    return entries


def batond_path():
    path = os.environ.get("BATOND") or os.path.join(ROOT, ".build", "debug", "batond")
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest(f"no batond at {path}: build it (swift build) or set $BATOND")
    return path


class Daemon:
    """A batond on a temporary socket, in memory; stopped with SIGTERM."""

    def __init__(self, *extra):
        self.directory = tempfile.mkdtemp(prefix="baton-py-")
        os.chmod(self.directory, 0o700)
        self.socket = os.path.join(self.directory, "baton.sock")
        self.log = open(os.path.join(self.directory, "batond.log"), "wb")
        self.process = subprocess.Popen([batond_path(), "--socket", self.socket, "--in-memory", *extra],
                                        stdout=self.log, stderr=self.log)
        # Wait until a connect succeeds: the socket file appears at bind, before batond listens.
        deadline = time.monotonic() + 30
        while not self._accepts():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("batond did not start: " + open(self.log.name).read())
            time.sleep(0.01)

    def _accepts(self):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)
