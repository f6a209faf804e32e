"""Python client for batond, the Baton lock sidecar (standard library only).

    import baton
    with baton.Client() as client:
        client.on_lock_lost(lambda grant, reason: print("lost", grant.path, reason))
        with client.lock("/locks/report", timeout=5) as grant:
            write_report(fencing_token=grant.token)

``baton.aio.connect()`` gives the same API for asyncio. Written from Proto/PROTOCOL.md.
"""

from . import aio, protocol
from ._core import ConnectError, ConnectionClosed, ElectionLeader, Grant, default_socket_path, tls_context
from .client import Client
from .protocol import BatonError, LockEntry, Stat

__all__ = ["Client", "aio", "protocol", "BatonError", "ConnectError", "ConnectionClosed", "ElectionLeader", "Grant",
           "LockEntry", "Stat", "default_socket_path", "tls_context"]
