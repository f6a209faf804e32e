"""The asyncio client: the same session and operations as ``baton.Client``, awaited.

    async with await baton.aio.connect() as client:
        async with client.lock("/locks/report") as grant:
            await write_report(fencing_token=grant.token)
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Callable, List, Optional

from . import protocol as p
from ._core import (ConnectError, ConnectionClosed, Core, ElectionLeader, Grant, check_peer, default_socket_path,
                    election_leader, election_record, tcp_token)


async def connect(socket_path: Optional[str] = None, *, tcp: Optional[tuple] = None,
                  token: Optional[bytes] = None, token_file: Optional[str] = None,
                  client_name: str = "python-asyncio", session_timeout_ms: int = 10_000,
                  tls: Optional[ssl.SSLContext] = None, server_hostname: Optional[str] = None) -> "AsyncClient":
    """Connects (default socket as for ``baton.Client``), greets, opens a session. Over TCP with
    ``tls=baton.tls_context(...)`` it speaks TLS, checking ``server_hostname`` (default: the host)."""
    if tcp is not None:
        token = tcp_token(token, token_file)
        try:
            if tls is not None:
                reader, writer = await asyncio.open_connection(*tcp, ssl=tls,
                                                               server_hostname=server_hostname or tcp[0])
            else:
                reader, writer = await asyncio.open_connection(*tcp)
        except ssl.SSLError as error:
            raise ConnectError(f"TLS: {error}") from error
        except OSError as error:
            raise ConnectError(f"cannot connect to {tcp[0]}:{tcp[1]}: {error}") from error
    else:
        path = socket_path or default_socket_path()
        try:
            reader, writer = await asyncio.open_unix_connection(path)
        except OSError as error:
            raise ConnectError(f"cannot connect to {path}: {error.strerror}; is batond running?") from error
        try:
            check_peer(writer.get_extra_info("socket"), path)  # asyncio's socket view has getsockopt
        except ConnectError:
            writer.close()
            raise
    client = AsyncClient(reader, writer)
    try:
        hello = await client._call(p.encode_hello, client_name)
        client.server_name = hello["server_name"]
        if tcp is not None:
            await client._call(p.encode_authenticate, token)
        session = await client._call(p.encode_open_session, session_timeout_ms)
    except BaseException:
        client._shutdown(ConnectionClosed("handshake failed"))
        raise
    client.session_id = session["session_id"]
    client.session_timeout_ms = session["timeout_ms"]
    client._heartbeat = asyncio.ensure_future(client._heartbeat_loop())
    return client


class AsyncClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.core = Core()
        self._reader = reader
        self._writer = writer
        self._pending: dict = {}
        self._closed: Optional[BaseException] = None
        self._last_sent = time.monotonic()
        self._heartbeat: Optional[asyncio.Future] = None
        self._read_task = asyncio.ensure_future(self._read_loop())
        self.server_name = ""
        self.session_id = 0
        self.session_timeout_ms = 0

    async def _call(self, encode, *args, watch: Optional[Callable] = None, watch_path: Optional[str] = None):
        if self._closed is not None:
            raise ConnectionClosed(str(self._closed))
        request_id = self.core.request_id()
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._writer.write(encode(request_id, *args))
        self._last_sent = time.monotonic()
        await self._writer.drain()
        reply = await future
        if reply.error is not None:
            raise reply.error
        if watch is not None:
            self.core.add_watch(watch_path, watch)
        return reply.body

    async def _read_loop(self) -> None:
        buffer = bytearray()
        try:
            while True:
                chunk = await self._reader.read(65536)
                if not chunk:
                    raise ConnectionClosed("batond closed the connection")
                buffer += chunk
                for message in self.core.replies(buffer):
                    future = self._pending.pop(message.request_id, None)
                    if future is not None and not future.done():
                        future.set_result(message)
                    elif future is None and (closing := self.core.closing_error(message)) is not None:
                        raise closing
        except (OSError, ConnectionClosed, p.ProtocolError, asyncio.CancelledError) as error:
            self._shutdown(error if not isinstance(error, asyncio.CancelledError) else ConnectionClosed("closed"))

    def _shutdown(self, error: BaseException) -> None:
        if self._closed is None:
            self._closed = error
        pending, self._pending = list(self._pending.values()), {}
        for future in pending:
            if not future.done():
                future.set_exception(ConnectionClosed(str(error)))
        self.core.lose_all("connectionClosed")
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        self._writer.close()

    async def _heartbeat_loop(self) -> None:
        interval = max(self.session_timeout_ms / 3000.0, 0.05)
        while self._closed is None:
            await asyncio.sleep(interval / 4)
            if time.monotonic() - self._last_sent >= interval:
                with contextlib.suppress(Exception):
                    await self._call(p.encode_ping)

    async def close(self) -> None:
        if self._closed is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._call(p.encode_close_session), 5)
        self._shutdown(ConnectionClosed("closed by the client"))
        self._read_task.cancel()
        with contextlib.suppress(BaseException):
            await self._read_task

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def ping(self) -> None:
        await self._call(p.encode_ping)

    async def create(self, path: str, data: bytes = b"", *, ephemeral=False, sequential=False, container=False) -> str:
        return (await self._call(p.encode_create, path, data, ephemeral, sequential, container))["path"]

    async def delete(self, path: str, version: int = p.ANY_VERSION) -> None:
        await self._call(p.encode_delete, path, version)

    async def exists(self, path: str, watch: Optional[Callable[[str, str], None]] = None) -> Optional[p.Stat]:
        return await self._call(p.encode_exists, path, watch is not None, watch=watch, watch_path=path)

    async def get(self, path: str, watch: Optional[Callable[[str, str], None]] = None) -> tuple:
        body = await self._call(p.encode_get, path, watch is not None, watch=watch, watch_path=path)
        return body["data"], body["stat"]

    async def set(self, path: str, data: bytes, version: int = p.ANY_VERSION) -> p.Stat:
        return await self._call(p.encode_set, path, data, version)

    async def children(self, path: str) -> List[str]:
        names: List[str] = []
        after = ""
        while True:
            page = await self._call(p.encode_children, path, False, after, 0)
            names += page["names"]
            if not page["more"] or not page["names"]:
                return names
            after = page["names"][-1]

    async def acquire(self, path: str, *, kind: str = "exclusive", permits: int = 1,
                      timeout: Optional[float] = None, lease: Optional[float] = None,
                      owner: Optional[str] = None, revocable: bool = False,
                      lock_delay: Optional[float] = None) -> Grant:
        encode, fields = self.core.acquire_request(path, kind, permits, timeout, lease, owner, revocable, lock_delay)
        return self.core.granted(path, kind, owner, await self._call(encode, *fields))

    async def acquire_all(self, paths: List[str], *, kind: str = "exclusive", permits: int = 1,
                          timeout: Optional[float] = None, lease: Optional[float] = None) -> List[Grant]:
        """See ``Client.acquire_all``: every lock or none, one grant per path in order."""
        encode, fields = self.core.acquire_all_request(paths, kind, permits, timeout, lease)
        return self.core.granted_all(paths, kind, await self._call(encode, *fields))

    async def release(self, grant: Grant) -> None:
        self.core.released(grant)
        await self._call(p.encode_release, grant.node, grant.token)

    async def force_release(self, path: str, session_id: int = 0) -> int:
        """Ends another session's hold or wait of the lock (0: every current holder); needs the ``admin``
        permission (§12.13). Returns how many holds and waits were ended."""
        return await self._call(p.encode_force_release, path, session_id)

    async def add_watch(self, path: str, callback: Optional[Callable[[str, str], None]] = None,
                        recursive: bool = False) -> None:
        """A watch that stays after it fires (§11.1), as in the blocking client."""
        self.core.add_persistent_watch(path, recursive, callback)
        await self._call(p.encode_add_watch, path, p.PERSISTENT_RECURSIVE if recursive else p.PERSISTENT)

    async def remove_watch(self, path: str, recursive: bool = False) -> None:
        self.core.add_persistent_watch(path, recursive, None)
        await self._call(p.encode_remove_watches, path, p.PERSISTENT_RECURSIVE if recursive else p.PERSISTENT)

    async def request_revocation(self, path: str) -> int:
        """Asks every revocable holder of the lock to give it up (§12.11); returns how many were asked."""
        return await self._call(p.encode_request_revocation, path)

    def on_revocation_requested(self, callback: Callable[[str, int, int], None]) -> None:
        """``callback(node, token, requester_session)`` runs when someone asks a revocable hold of this
        session to be given up; releasing it is the holder's choice."""
        with self.core.lock:
            self.core.revocation_handlers.append(callback)

    async def renew(self, grant: Grant, lease: float) -> None:
        """Sets the hold's lease to end ``lease`` seconds from now (§12.5): renew well before it ends.
        Raises BatonError noLease (granted without a lease) or lockLost (the hold already ended)."""
        await self._call(p.encode_renew, grant.node, grant.token, int(lease * 1000))

    @contextlib.asynccontextmanager
    async def lock(self, path: str, **options):
        grant = await self.acquire(path, **options)
        try:
            yield grant
        finally:
            if not grant.lost.is_set():
                with contextlib.suppress(p.BatonError, ConnectionClosed):
                    await self.release(grant)

    def on_lock_lost(self, callback: Callable[[Grant, str], None]) -> None:
        with self.core.lock:
            self.core.lost_handlers.append(callback)

    async def check_token(self, path: str, token: int) -> bool:
        return await self._call(p.encode_check_token, path, token)

    async def inspect(self, path: str) -> List[p.LockEntry]:
        return await self._call(p.encode_inspect, path)

    # Leader election (§12.15): see ``Client.campaign``, ``proclaim``, ``resign`` and ``leader``.

    async def campaign(self, path: str, value: bytes, *, timeout: Optional[float] = None,
                       lease: Optional[float] = None) -> Grant:
        grant = await self.acquire(path, kind="exclusive", timeout=timeout, lease=lease)
        try:
            await self.proclaim(grant, value)
        except BaseException:
            with contextlib.suppress(p.BatonError, ConnectionClosed):
                await self.release(grant)
            raise
        return grant

    async def proclaim(self, grant: Grant, value: bytes) -> None:
        await self.set(grant.path, election_record(grant.token, value))

    async def resign(self, grant: Grant) -> None:
        await self.release(grant)

    async def leader(self, path: str) -> Optional[ElectionLeader]:
        try:
            entries = await self.inspect(path)
            data = (await self.get(path))[0] if entries else None
        except p.BatonError as error:
            if error.name == "noNode":  # no election, or its lock node went between the two reads
                return None
            raise
        return election_leader(entries, data)
