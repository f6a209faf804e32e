"""The blocking client: one connection, one session, requests from any thread, a reader thread
that routes replies and events, and heartbeats while idle."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from typing import Callable, Iterator, List, Optional

from . import protocol as p
from ._core import (ConnectError, ConnectionClosed, Core, ElectionLeader, Grant, check_peer, default_socket_path,
                    election_leader, election_record, tcp_token)


class _Pending:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Optional[p.Reply] = None


class _TLS:
    """TLS under the frames of a blocking TCP connection, over memory buffers (``ssl.SSLObject``): the
    reader thread and the writers hold the lock only while bytes move through memory, never across
    a socket call, so a writer blocked on a full socket never keeps the reader from draining replies."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str) -> None:
        self._lock = threading.Lock()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._object = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        while True:  # the handshake, on the socket's connect timeout
            try:
                self._object.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError as error:
                with contextlib.suppress(OSError):
                    sock.sendall(self._outgoing.read())  # the alert says why
                raise ConnectError(f"TLS: {error}") from error
            pending = self._outgoing.read()
            if pending:
                sock.sendall(pending)
            if done:
                return
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectError("TLS: the server closed the connection during the handshake (does it serve TLS?)")
            self._incoming.write(chunk)

    def seal(self, frame: bytes) -> bytes:
        with self._lock:
            self._object.write(frame)
            return self._outgoing.read()

    def open(self, chunk: bytes) -> bytes:
        """The plaintext in ``chunk``; raises ``ssl.SSLError`` (an OSError) when TLS failed, e.g. the
        server's alert refusing this client's certificate right after the handshake."""
        with self._lock:
            self._incoming.write(chunk)
            plaintext = bytearray()
            while True:
                try:
                    data = self._object.read(65536)
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                    break
                if not data:
                    break
                plaintext += data
            return bytes(plaintext)


class Client:
    """``Client()`` connects to the default socket (``$BATON_SOCKET``, ``$XDG_RUNTIME_DIR/baton.sock``,
    ``/tmp/baton-$UID.sock``) and opens a session; ``close()`` (or ``with``) ends it.

    ``with client.lock("/locks/x") as grant:`` holds the lock for the block; ``grant.token`` is the
    fencing token, ``grant.lost`` an Event set if the hold ends early; ``on_lock_lost`` registers a
    callback for that.

    Over TCP (``tcp=(host, port)``) with ``tls=baton.tls_context(ca_file=...)``, the connection speaks
    TLS and batond's certificate must name ``server_hostname`` (default: the host)."""

    def __init__(self, socket_path: Optional[str] = None, *, tcp: Optional[tuple] = None,
                 token: Optional[bytes] = None, token_file: Optional[str] = None,
                 client_name: str = "python", session_timeout_ms: int = 10_000,
                 connect_timeout: float = 5.0, tls: Optional[ssl.SSLContext] = None,
                 server_hostname: Optional[str] = None) -> None:
        self.core = Core()
        self._pending: dict = {}
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed: Optional[BaseException] = None
        self._last_sent = time.monotonic()
        self._stop = threading.Event()
        self._tls: Optional[_TLS] = None
        if tcp is not None:
            token = tcp_token(token, token_file)
            try:
                self._sock = socket.create_connection(tcp, timeout=connect_timeout)
            except OSError as error:
                raise ConnectError(f"cannot connect to {tcp[0]}:{tcp[1]}: {error}") from error
            # Requests are small and latency-bound (and TLS writes its Finished and the first frame
            # back to back): never wait to coalesce them.
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                try:
                    self._tls = _TLS(self._sock, tls, server_hostname or tcp[0])
                except BaseException:
                    self._sock.close()
                    raise
        else:
            path = socket_path or default_socket_path()
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.settimeout(connect_timeout)
            try:
                self._sock.connect(path)
            except OSError as error:
                self._sock.close()
                raise ConnectError(f"cannot connect to {path}: {error.strerror}; is batond running?") from error
            check_peer(self._sock, path)
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, name="baton-reader", daemon=True)
        self._reader.start()
        try:
            hello = self._call(p.encode_hello, client_name)
            self.server_name = hello["server_name"]
            self.core.frame_bytes_max = max(self.core.frame_bytes_max, hello["frame_bytes_max"])
            if tcp is not None:
                self._call(p.encode_authenticate, token)
            session = self._call(p.encode_open_session, session_timeout_ms)
        except BaseException:
            self._shutdown(ConnectionClosed("handshake failed"))
            raise
        self.session_id = session["session_id"]
        self.session_timeout_ms = session["timeout_ms"]
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="baton-heartbeat", daemon=True)
        self._heartbeat.start()

    # Plumbing.

    def _call(self, encode, *args, watch: Optional[Callable] = None, watch_path: Optional[str] = None,
              timeout: Optional[float] = None):
        request_id = self.core.request_id()
        pending = _Pending()
        with self._pending_lock:
            if self._closed is not None:
                raise ConnectionClosed(str(self._closed))
            self._pending[request_id] = pending
        frame = encode(request_id, *args)
        try:
            with self._write_lock:
                self._sock.sendall(self._tls.seal(frame) if self._tls is not None else frame)
                self._last_sent = time.monotonic()
        except OSError as error:
            self._shutdown(ConnectionClosed(f"write failed: {error}"))
        if not pending.done.wait(timeout):
            raise TimeoutError("no reply from batond")
        reply = pending.reply
        if reply is None:
            raise ConnectionClosed(str(self._closed))
        if reply.error is not None:
            raise reply.error
        if watch is not None:
            # The reply came after the server registered the watch, and events come in order.
            self.core.add_watch(watch_path, watch)
        return reply.body

    def _read_loop(self) -> None:
        buffer = bytearray()
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise ConnectionClosed("batond closed the connection")
                buffer += self._tls.open(chunk) if self._tls is not None else chunk
                for message in self.core.replies(buffer):
                    with self._pending_lock:
                        pending = self._pending.pop(message.request_id, None)
                    if pending is not None:
                        pending.reply = message
                        pending.done.set()
                    elif (closing := self.core.closing_error(message)) is not None:
                        raise closing
        except (OSError, ConnectionClosed, p.ProtocolError) as error:
            self._shutdown(error)

    def _shutdown(self, error: BaseException) -> None:
        with self._pending_lock:
            if self._closed is None:
                self._closed = error
            pending, self._pending = list(self._pending.values()), {}
        self._stop.set()
        for each in pending:
            each.done.set()
        self.core.lose_all("connectionClosed")
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def _heartbeat_loop(self) -> None:
        interval = max(self.session_timeout_ms / 3000.0, 0.05)
        while not self._stop.wait(interval / 4):
            if time.monotonic() - self._last_sent >= interval:
                with contextlib.suppress(Exception):
                    self._call(p.encode_ping, timeout=self.session_timeout_ms / 1000.0)

    # Session.

    def close(self) -> None:
        """Ends the session (its ephemeral nodes and holds go) and the connection."""
        if self._closed is None:
            with contextlib.suppress(Exception):
                self._call(p.encode_close_session, timeout=5)
        self._shutdown(ConnectionClosed("closed by the client"))
        self._sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ping(self) -> None:
        self._call(p.encode_ping)

    # Namespace.

    def create(self, path: str, data: bytes = b"", *, ephemeral=False, sequential=False, container=False) -> str:
        return self._call(p.encode_create, path, data, ephemeral, sequential, container)["path"]

    def delete(self, path: str, version: int = p.ANY_VERSION) -> None:
        self._call(p.encode_delete, path, version)

    def exists(self, path: str, watch: Optional[Callable[[str, str], None]] = None) -> Optional[p.Stat]:
        return self._call(p.encode_exists, path, watch is not None, watch=watch, watch_path=path)

    def get(self, path: str, watch: Optional[Callable[[str, str], None]] = None) -> tuple:
        body = self._call(p.encode_get, path, watch is not None, watch=watch, watch_path=path)
        return body["data"], body["stat"]

    def set(self, path: str, data: bytes, version: int = p.ANY_VERSION) -> p.Stat:
        return self._call(p.encode_set, path, data, version)

    def children(self, path: str, watch: Optional[Callable[[str, str], None]] = None) -> List[str]:
        """Every child name, sorted by UTF-8 bytes, read page by page (PROTOCOL.md §5.2)."""
        names: List[str] = []
        after, first = "", True
        while True:
            page = self._call(p.encode_children, path, first and watch is not None, after, 0,
                              watch=watch if first else None, watch_path=path)
            names += page["names"]
            if not page["more"] or not page["names"]:
                return names
            after, first = page["names"][-1], False

    # Locks.

    def acquire(self, path: str, *, kind: str = "exclusive", permits: int = 1,
                timeout: Optional[float] = None, lease: Optional[float] = None,
                owner: Optional[str] = None, revocable: bool = False,
                lock_delay: Optional[float] = None) -> Grant:
        """Waits for the lock (``timeout`` seconds at most; 0 tries once) and returns the grant.
        Raises BatonError lockTimeout / lockBusy when not granted."""
        encode, fields = self.core.acquire_request(path, kind, permits, timeout, lease, owner, revocable, lock_delay)
        return self.core.granted(path, kind, owner, self._call(encode, *fields))

    def acquire_all(self, paths: List[str], *, kind: str = "exclusive", permits: int = 1,
                    timeout: Optional[float] = None, lease: Optional[float] = None) -> List[Grant]:
        """Acquires every lock of ``paths`` or none (§12.14; the server takes them in path order, so sets
        never deadlock each other) and returns one grant per path, in order. ``timeout`` bounds the set."""
        encode, fields = self.core.acquire_all_request(paths, kind, permits, timeout, lease)
        return self.core.granted_all(paths, kind, self._call(encode, *fields))

    def release(self, grant: Grant) -> None:
        self.core.released(grant)
        self._call(p.encode_release, grant.node, grant.token)

    def force_release(self, path: str, session_id: int = 0) -> int:
        """Ends another session's hold or wait of the lock (0: every current holder); needs the ``admin``
        permission (§12.13). Returns how many holds and waits were ended."""
        return self._call(p.encode_force_release, path, session_id)

    def add_watch(self, path: str, callback: Optional[Callable[[str, str], None]] = None,
                  recursive: bool = False) -> None:
        """A watch that stays after it fires (§11.1): ``callback(type, path)`` for every event of ``path``,
        or with ``recursive`` for created/deleted/dataChanged of ``path`` and its subtree."""
        # Registered before the request: its events can only follow the reply, but must not be missed.
        self.core.add_persistent_watch(path, recursive, callback)
        self._call(p.encode_add_watch, path, p.PERSISTENT_RECURSIVE if recursive else p.PERSISTENT)

    def remove_watch(self, path: str, recursive: bool = False) -> None:
        """Removes that watch; BatonError noWatch if the session holds none."""
        self.core.add_persistent_watch(path, recursive, None)
        self._call(p.encode_remove_watches, path, p.PERSISTENT_RECURSIVE if recursive else p.PERSISTENT)

    def request_revocation(self, path: str) -> int:
        """Asks every revocable holder of the lock to give it up (§12.11); returns how many were asked."""
        return self._call(p.encode_request_revocation, path)

    def on_revocation_requested(self, callback: Callable[[str, int, int], None]) -> None:
        """``callback(node, token, requester_session)`` runs when someone asks a revocable hold of this
        session to be given up; releasing it is the holder's choice."""
        with self.core.lock:
            self.core.revocation_handlers.append(callback)

    def renew(self, grant: Grant, lease: float) -> None:
        """Sets the hold's lease to end ``lease`` seconds from now (§12.5): renew well before it ends.
        Raises BatonError noLease (granted without a lease) or lockLost (the hold already ended)."""
        self._call(p.encode_renew, grant.node, grant.token, int(lease * 1000))

    @contextlib.contextmanager
    def lock(self, path: str, **options) -> Iterator[Grant]:
        """Holds the lock for the ``with`` block and releases it after, whatever the block does."""
        grant = self.acquire(path, **options)
        try:
            yield grant
        finally:
            if not grant.lost.is_set():
                with contextlib.suppress(p.BatonError, ConnectionClosed):
                    self.release(grant)

    def on_lock_lost(self, callback: Callable[[Grant, str], None]) -> None:
        """``callback(grant, reason)`` runs on the reader thread when a hold ends other than by release
        (reasons: leaseExpired, sessionExpired, nodeDeleted, backendSessionLost, connectionClosed)."""
        with self.core.lock:
            self.core.lost_handlers.append(callback)

    def check_token(self, path: str, token: int) -> bool:
        return self._call(p.encode_check_token, path, token)

    def inspect(self, path: str) -> List[p.LockEntry]:
        return self._call(p.encode_inspect, path)

    # Leader election (§12.15): a recipe over the lock, as the Swift client's campaign/proclaim/leader/resign.

    def campaign(self, path: str, value: bytes, *, timeout: Optional[float] = None,
                 lease: Optional[float] = None) -> Grant:
        """Waits (``timeout`` seconds at most) to lead the election at ``path``, then proclaims ``value``.
        Leadership lasts until ``resign``, the session's end or the lease: ``on_lock_lost`` tells of its loss."""
        grant = self.acquire(path, kind="exclusive", timeout=timeout, lease=lease)
        try:
            self.proclaim(grant, value)
        except BaseException:
            with contextlib.suppress(p.BatonError, ConnectionClosed):
                self.release(grant)
            raise
        return grant

    def proclaim(self, grant: Grant, value: bytes) -> None:
        """Replaces the leader's value (at most dataBytesMax - 8 bytes)."""
        self.set(grant.path, election_record(grant.token, value))

    def resign(self, grant: Grant) -> None:
        self.release(grant)

    def leader(self, path: str) -> Optional[ElectionLeader]:
        """The current leader of the election at ``path``, or None if nobody leads."""
        try:
            entries = self.inspect(path)
            data = self.get(path)[0] if entries else None
        except p.BatonError as error:
            if error.name == "noNode":  # no election, or its lock node went between the two reads
                return None
            raise
        return election_leader(entries, data)
