"""What the blocking and the asyncio client share: where batond is, whom to trust, request ids,
and what an event means for the application. No I/O here."""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from . import protocol as p

UNIX_PATH_BYTES_MAX = 107


class ConnectError(Exception):
    """batond could not be reached, or the socket does not belong to a user we trust."""


class ConnectionClosed(Exception):
    """The connection to batond ended; requests in flight fail with this."""


def default_socket_path() -> str:
    """The rule batond and the CLI use (PROTOCOL.md §13)."""
    explicit = os.environ.get("BATON_SOCKET")
    if explicit:
        return explicit
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "baton.sock")
    return f"/tmp/baton-{os.getuid()}.sock"


def check_peer(sock, path: str) -> None:
    """A Unix socket must be served by our own user or root (PROTOCOL.md §13): another user could
    have created the socket first and would hand out fake grants."""
    if not hasattr(socket, "SO_PEERCRED"):
        return
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    if uid not in (os.getuid(), 0):
        raise ConnectError(f"{path} is served by uid {uid}, not by this user or root: refusing to trust it")


def read_token_file(path: str) -> bytes:
    with open(path, "rb") as f:
        token = f.read()
    return token[:-1] if token.endswith(b"\n") else token


def tcp_token(token: Optional[bytes], token_file: Optional[str]) -> bytes:
    """The token a TCP connection authenticates with: ``token``, else the one in ``token_file``."""
    if token is None and token_file is not None:
        token = read_token_file(token_file)
    if token is None:
        raise ConnectError("TCP needs batond's token (token= or token_file=)")
    return token


def tls_context(ca_file: Optional[str] = None, cert_file: Optional[str] = None,
                key_file: Optional[str] = None) -> ssl.SSLContext:
    """TLS for a TCP connection to batond (PROTOCOL.md §4.7, "TLS"): its certificate must chain to
    ``ca_file`` (else the system's CAs) and name the server; TLS 1.2 or later. ``cert_file`` and
    ``key_file`` are this client's certificate for batond's mutual TLS (``--tls-client-ca``)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if cert_file is not None or key_file is not None:
        if cert_file is None or key_file is None:
            raise ConnectError("a client certificate needs its key, and a key its certificate")
        context.load_cert_chain(cert_file, key_file)
    return context


@dataclass
class Grant:
    """A held lock: ``token`` is the fencing token to hand to the resource. ``lost`` is set when the
    hold ends other than by release (``lost_reason`` says why)."""
    path: str
    node: str
    token: int
    kind: str
    #: The owner token of a reentrant acquire (§12.9), and how many of its acquires the hold counted
    #: when this one was answered: every one needs a release; the lock passes on at the last.
    owner: Optional[str] = field(default=None, compare=False)
    hold_count: int = field(default=1, compare=False)
    lost: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    lost_reason: Optional[str] = field(default=None, compare=False)


@dataclass(frozen=True)
class ElectionLeader:
    """Who leads an election (PROTOCOL.md §12.15): the holder ``inspect`` lists, and ``value``, what it
    proclaimed, or None while it has proclaimed nothing under its own token."""
    node: str
    session_id: int
    client_name: str
    token: int
    value: Optional[bytes]


def election_record(token: int, value: bytes) -> bytes:
    """The lock node's data while someone leads: u64 fencing token (big-endian), then the value."""
    return struct.pack(">Q", token) + value


def election_leader(entries: List[p.LockEntry], data: Optional[bytes]) -> Optional[ElectionLeader]:
    """The leader from a lock's entries and the lock node's data, read one after the other: a record is
    believed only if its token is the holder's (an ex-leader's late write shows no value, not a wrong one)."""
    holder = next((entry for entry in entries if entry.position == "holder"), None)
    if holder is None:
        return None
    value = None
    if data is not None and len(data) >= 8 and struct.unpack(">Q", data[:8])[0] == holder.token:
        value = data[8:]
    return ElectionLeader(holder.node, holder.session_id, holder.client_name, holder.token, value)


class Core:
    """Request ids, watch and lock-lost callbacks, and the grants a session holds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_id = 1
        self.watches: Dict[str, List[Callable[[str, str], None]]] = {}
        self.lost_handlers: List[Callable[[Grant, str], None]] = []
        self.revocation_handlers: List[Callable[[str, int, int], None]] = []
        # Persistent watches (§11.1): (path, recursive) -> callback; they stay after firing.
        self.persistent_watches: Dict[tuple, Callable[[str, str], None]] = {}
        self.grants: Dict[tuple, Grant] = {}
        self.counts: Dict[tuple, int] = {}
        self.frame_bytes_max = 32 * 1024 * 1024

    def request_id(self) -> int:
        with self.lock:
            value = self.next_id
            self.next_id = value + 1 if value < 0xFFFFFFFF else 1
            return value

    def add_watch(self, path: str, callback: Optional[Callable[[str, str], None]]) -> None:
        if callback is not None:
            with self.lock:
                self.watches.setdefault(path, []).append(callback)

    def add_persistent_watch(self, path: str, recursive: bool, callback: Optional[Callable[[str, str], None]]) -> None:
        with self.lock:
            if callback is None:
                self.persistent_watches.pop((path, recursive), None)
            else:
                self.persistent_watches[(path, recursive)] = callback

    @staticmethod
    def covers(watched: str, recursive: bool, path: str) -> bool:
        if path == watched:
            return True
        return recursive and (watched == "/" or path.startswith(watched + "/"))

    @staticmethod
    def acquire_request(path: str, kind: str, permits: int, timeout: Optional[float], lease: Optional[float],
                        owner: Optional[str], revocable: bool, lock_delay: Optional[float]) -> tuple:
        """The encoder and its fields for an acquire: plain, or reentrant when it names an owner (§12.9)."""
        kinds = {"exclusive": p.EXCLUSIVE, "shared": p.SHARED, "semaphore": p.SEMAPHORE}
        wait = p.WAIT_FOREVER if timeout is None else int(timeout * 1000)
        if (revocable or lock_delay) and owner is None:
            raise ValueError("a revocable or lock-delayed acquire names an owner")
        if owner is None:
            return p.encode_acquire, (path, kinds[kind], permits, wait, int((lease or 0) * 1000))
        # The owner's second acquire returns the same hold, counted.
        return p.encode_acquire_owned, (path, kinds[kind], permits, wait, int((lease or 0) * 1000), owner,
                                        revocable, int((lock_delay or 0) * 1000))

    @staticmethod
    def acquire_all_request(paths: List[str], kind: str, permits: int, timeout: Optional[float],
                            lease: Optional[float]) -> tuple:
        """The encoder and its fields for acquireAll (§12.14)."""
        kinds = {"exclusive": p.EXCLUSIVE, "shared": p.SHARED, "semaphore": p.SEMAPHORE}
        wait = p.WAIT_FOREVER if timeout is None else int(timeout * 1000)
        locks = [(path, kinds[kind], permits) for path in paths]
        return p.encode_acquire_all, (locks, wait, int((lease or 0) * 1000))

    def granted_all(self, paths: List[str], kind: str, body: list) -> List[Grant]:
        """The Grants of an acquireAll's reply, in the order of ``paths``."""
        return [self.held(Grant(path, hold["node"], hold["token"], kind, None, 1)) for path, hold in zip(paths, body)]

    def granted(self, path: str, kind: str, owner: Optional[str], body: dict) -> Grant:
        """The Grant for an acquire's reply, recorded for lost-lock tracking."""
        return self.held(Grant(path, body["node"], body["token"], kind, owner, body.get("hold_count", 1)))

    def replies(self, buffer: bytearray):
        """The replies among the whole frames at the front of ``buffer``, in order; events among them are
        handled here as they come (their callbacks run before any later reply is handed on)."""
        for body in p.split_frames(buffer, self.frame_bytes_max):
            message = p.decode_server_body(body)
            if isinstance(message, p.Event):
                self.event(message)
            else:
                yield message

    @staticmethod
    def closing_error(reply: p.Reply) -> Optional[ConnectionClosed]:
        """A reply to no pending request that ends the connection: the server's goodbye, or an error about
        the connection as a whole (tooManyConnections, deadlineExceeded, loginThrottled; §3.4)."""
        if reply.error is None:
            return None
        if reply.error.name == "shuttingDown":
            return ConnectionClosed("batond is shutting down")
        if reply.request_id == 0:
            return ConnectionClosed(f"batond closed the connection: {reply.error}")
        return None

    def held(self, grant: Grant) -> Grant:
        """Records a grant; a reentrant one returns the hold's first grant (whose ``lost`` is the one set)."""
        key = (grant.node, grant.token)
        with self.lock:
            first = self.grants.setdefault(key, grant)
            self.counts[key] = grant.hold_count
            return grant if first is grant else Grant(grant.path, grant.node, grant.token, grant.kind, grant.owner,
                                                      grant.hold_count, first.lost)

    def released(self, grant: Grant) -> None:
        key = (grant.node, grant.token)
        with self.lock:
            self.counts[key] = self.counts.get(key, 1) - 1
            if self.counts[key] <= 0:
                self.counts.pop(key, None)
                self.grants.pop(key, None)

    def event(self, event: p.Event) -> None:
        """Runs the callbacks an event calls for (on the caller's thread or task)."""
        if event.kind == "watch":
            with self.lock:
                callbacks = self.watches.pop(event.fields["path"], [])
                callbacks += [callback for (watched, recursive), callback in self.persistent_watches.items()
                              if self.covers(watched, recursive, event.fields["path"])]
            for callback in callbacks:
                callback(event.fields["type"], event.fields["path"])
        elif event.kind == "revocationRequested":
            with self.lock:
                handlers = list(self.revocation_handlers)
            for handler in handlers:
                handler(event.fields["node"], event.fields["token"], event.fields["requester"])
        elif event.kind == "lockLost":
            self.lose(event.fields["node"], event.fields["token"], event.fields["reason"])
        elif event.kind == "sessionExpired":
            with self.lock:
                grants = list(self.grants.values())
            for grant in grants:
                self.lose(grant.node, grant.token, "sessionExpired")

    def lose(self, node: str, token: int, reason: str) -> None:
        with self.lock:
            grant = self.grants.pop((node, token), None)
            handlers = list(self.lost_handlers)
        if grant is None:
            return
        grant.lost_reason = reason
        grant.lost.set()
        for handler in handlers:
            handler(grant, reason)

    def lose_all(self, reason: str) -> None:
        with self.lock:
            grants = list(self.grants.values())
        for grant in grants:
            self.lose(grant.node, grant.token, reason)
