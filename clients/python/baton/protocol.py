"""The Baton wire protocol, version 1 (Proto/PROTOCOL.md): frames in, values out, no I/O.

Every integer is big-endian. A frame is a u32 body length and the body. Client bodies are
``u8 opcode, u32 request id, fields``; server bodies start with a frame kind (1 reply, 2 event).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

PROTOCOL_VERSION = 1
MAGIC = 0x4241544E  # "BATN"

# §6 Opcodes.
HELLO, OPEN_SESSION, RESUME_SESSION, CLOSE_SESSION, PING, AUTHENTICATE = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
CREATE, DELETE, EXISTS, GET, SET, CHILDREN, CHECK, MULTI = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17
ADD_WATCH, REMOVE_WATCHES = 0x18, 0x19
ACQUIRE, RELEASE, CANCEL, CHECK_TOKEN, INSPECT = 0x20, 0x21, 0x22, 0x23, 0x24
ACQUIRE_OWNED, RENEW, REQUEST_REVOCATION, ACQUIRE_ALL = 0x25, 0x26, 0x27, 0x28
FORCE_RELEASE = 0x2A
BACKUP = 0x30

# §7 Error codes (names as the spec writes them; tests check this table against it).
ERROR_NAMES = {
    1: "malformedFrame", 2: "frameTooLarge", 3: "unknownOpcode", 4: "unsupportedVersion",
    5: "handshakeRequired", 6: "sessionRequired", 7: "sessionExpired", 8: "sessionSecretMismatch",
    9: "sessionAlreadyOpen", 10: "sessionBusy", 11: "invalidPath", 12: "pathTooLong", 13: "dataTooLarge",
    14: "noNode", 15: "nodeExists", 16: "badVersion", 17: "notEmpty", 18: "ephemeralParent",
    19: "invalidArgument", 20: "tooManyNodes", 21: "tooManyWatches", 22: "tooManySessions",
    23: "tooManyConnections", 24: "tooManyWaiters", 25: "tooManyOperations", 26: "tooManyPendingRequests",
    30: "lockTimeout", 31: "lockBusy", 32: "lockCancelled", 33: "notHolder", 34: "lockLost",
    35: "lockKindMismatch", 27: "replyTooLarge", 28: "quotaExceeded",
    29: "deadlineExceeded", 36: "lockNodeReserved", 37: "lockHeldBySession",
    38: "deadlock", 39: "noLease", 40: "notAuthorized", 41: "shuttingDown",
    42: "storageFailure", 43: "internalError", 44: "storageFull", 45: "storageUnavailable", 46: "permissionDenied",
    48: "loginThrottled", 51: "noWatch", 52: "unsupportedByStore",
}

# Lock kinds (§5.3) and node kinds (§2).
EXCLUSIVE, SHARED, SEMAPHORE = 0, 1, 2
LOCK_KIND_NAMES = {EXCLUSIVE: "exclusive", SHARED: "shared", SEMAPHORE: "semaphore"}
NODE_KIND_NAMES = {0: "persistent", 1: "ephemeral", 2: "container"}
WATCH_TYPE_NAMES = {1: "created", 2: "deleted", 3: "dataChanged", 4: "childrenChanged"}
LOCK_LOST_REASONS = {1: "sessionExpired", 2: "leaseExpired", 3: "nodeDeleted", 4: "backendSessionLost"}
# addWatch modes (§11.1).
PERSISTENT, PERSISTENT_RECURSIVE = 1, 2
WAIT_FOREVER = 0xFFFFFFFF
ANY_VERSION = -1


class ProtocolError(Exception):
    """The peer sent bytes this client cannot decode."""


class BatonError(Exception):
    """The server answered a request with an error code (``code``, ``name``, ``message``)."""

    def __init__(self, code: int, message: str = ""):
        self.code = code
        self.name = ERROR_NAMES.get(code, f"error{code}")
        self.message = message
        super().__init__(f"{self.name}: {message}" if message else self.name)


@dataclass(frozen=True)
class Stat:
    czxid: int
    mzxid: int
    pzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    ephemeral_owner: int
    data_length: int
    children_count: int
    kind: str


@dataclass(frozen=True)
class LockEntry:
    node: str
    kind: str
    position: str  # "holder" or "waiter"
    session_id: int
    client_name: str
    token: int
    age_milliseconds: int


@dataclass(frozen=True)
class Reply:
    request_id: int
    opcode: int
    error: Optional[BatonError]
    body: object = None


@dataclass(frozen=True)
class Event:
    kind: str  # "watch", "lockLost", "lockSuspended", "sessionExpired", "revocationRequested",
    #                "lockResumed" (only with the resumedEvents session flag, §12.8)
    fields: dict = field(default_factory=dict)


# Encoding (client -> server).

class Writer:
    def __init__(self) -> None:
        self.parts: List[bytes] = []

    def u8(self, v: int) -> "Writer":
        self.parts.append(struct.pack(">B", v)); return self

    def u16(self, v: int) -> "Writer":
        self.parts.append(struct.pack(">H", v)); return self

    def u32(self, v: int) -> "Writer":
        self.parts.append(struct.pack(">I", v)); return self

    def u64(self, v: int) -> "Writer":
        self.parts.append(struct.pack(">Q", v)); return self

    def i32(self, v: int) -> "Writer":
        self.parts.append(struct.pack(">i", v)); return self

    def boolean(self, v: bool) -> "Writer":
        return self.u8(1 if v else 0)

    def string(self, s: str) -> "Writer":
        data = s.encode("utf-8")
        if len(data) > 0xFFFF:
            raise ValueError("string over 65535 bytes")
        return self.u16(len(data)).raw(data)

    def bytes_(self, data: bytes) -> "Writer":
        return self.u32(len(data)).raw(bytes(data))

    def raw(self, data: bytes) -> "Writer":
        self.parts.append(data); return self

    def frame(self) -> bytes:
        body = b"".join(self.parts)
        return struct.pack(">I", len(body)) + body


def request(opcode: int, request_id: int) -> Writer:
    return Writer().u8(opcode).u32(request_id)


def encode_hello(request_id: int, client_name: str) -> bytes:
    return request(HELLO, request_id).u32(MAGIC).u16(PROTOCOL_VERSION).string(client_name).frame()


def encode_open_session(request_id: int, timeout_ms: int, keep_on_disconnect: bool = False) -> bytes:
    return request(OPEN_SESSION, request_id).u32(timeout_ms).u8(1 if keep_on_disconnect else 0).frame()


def encode_create(request_id: int, path: str, data: bytes, ephemeral=False, sequential=False, container=False) -> bytes:
    flags = (1 if ephemeral else 0) | (2 if sequential else 0) | (4 if container else 0)
    return request(CREATE, request_id).string(path).bytes_(data).u8(flags).frame()


def encode_resume_session(request_id: int, session_id: int, secret: "Secret") -> bytes:
    return request(RESUME_SESSION, request_id).u64(session_id).u64(secret[0]).u64(secret[1]).frame()


def encode_close_session(request_id: int) -> bytes:
    return request(CLOSE_SESSION, request_id).frame()


def encode_ping(request_id: int) -> bytes:
    return request(PING, request_id).frame()


def encode_authenticate(request_id: int, token: bytes) -> bytes:
    return request(AUTHENTICATE, request_id).bytes_(token).frame()


def encode_delete(request_id: int, path: str, version: int = ANY_VERSION) -> bytes:
    return request(DELETE, request_id).string(path).i32(version).frame()


def encode_exists(request_id: int, path: str, watch: bool = False) -> bytes:
    return request(EXISTS, request_id).string(path).boolean(watch).frame()


def encode_get(request_id: int, path: str, watch: bool = False) -> bytes:
    return request(GET, request_id).string(path).boolean(watch).frame()


def encode_set(request_id: int, path: str, data: bytes, version: int = ANY_VERSION) -> bytes:
    return request(SET, request_id).string(path).bytes_(data).i32(version).frame()


def encode_children(request_id: int, path: str, watch: bool = False, after: str = "", limit: int = 0) -> bytes:
    return request(CHILDREN, request_id).string(path).boolean(watch).string(after).u32(limit).frame()


def encode_add_watch(request_id: int, path: str, mode: int) -> bytes:
    """§11.1: a watch that stays after firing; ``mode`` PERSISTENT or PERSISTENT_RECURSIVE."""
    return request(ADD_WATCH, request_id).string(path).u8(mode).frame()


def encode_remove_watches(request_id: int, path: str, mode: int) -> bytes:
    return request(REMOVE_WATCHES, request_id).string(path).u8(mode).frame()


def encode_cancel(request_id: int, acquire_request_id: int) -> bytes:
    return request(CANCEL, request_id).u32(acquire_request_id).frame()


def encode_check_token(request_id: int, path: str, token: int) -> bytes:
    return request(CHECK_TOKEN, request_id).string(path).u64(token).frame()


def encode_inspect(request_id: int, path: str) -> bytes:
    return request(INSPECT, request_id).string(path).frame()


def encode_backup(request_id: int, file: str) -> bytes:
    """§10.8: the server writes the backup to `file`, an absolute path on its host (Unix socket only)."""
    return request(BACKUP, request_id).string(file).frame()


def encode_acquire(request_id: int, path: str, kind: int, permits: int, wait_ms: int, lease_ms: int) -> bytes:
    return request(ACQUIRE, request_id).string(path).u8(kind).u32(permits).u32(wait_ms).u32(lease_ms).frame()


def encode_acquire_owned(request_id: int, path: str, kind: int, permits: int, wait_ms: int, lease_ms: int,
                         owner: str, revocable: bool = False, lock_delay_ms: int = 0) -> bytes:
    """A reentrant acquire (§12.9): ``owner`` is 1-64 bytes; the reply carries a hold count. A
    ``revocable`` hold receives revocationRequested events (§12.11); ``lock_delay_ms`` keeps the lock from
    everyone that long if the holder's session dies holding it (§12.12)."""
    return (request(ACQUIRE_OWNED, request_id).string(path).u8(kind).u32(permits).u32(wait_ms).u32(lease_ms)
            .string(owner).u8(1 if revocable else 0).u32(lock_delay_ms).frame())


def encode_acquire_all(request_id: int, locks: List[Tuple[str, int, int]], wait_ms: int, lease_ms: int) -> bytes:
    """Several locks, all or none (§12.14): ``locks`` is (path, kind, permits) for each, 1 to 16; the
    reply is one {"node", "token"} per lock in the same order."""
    message = request(ACQUIRE_ALL, request_id).u32(wait_ms).u32(lease_ms).u16(len(locks))
    for path, kind, permits in locks:
        message = message.string(path).u8(kind).u32(permits)
    return message.frame()


def encode_request_revocation(request_id: int, path: str) -> bytes:
    return request(REQUEST_REVOCATION, request_id).string(path).frame()


def encode_force_release(request_id: int, path: str, session_id: int = 0) -> bytes:
    """Ends the holds and waits of ``session_id`` on the lock (0: every current holder); needs the
    ``admin`` permission (§12.12). The reply is how many were ended."""
    return request(FORCE_RELEASE, request_id).string(path).u64(session_id).frame()


def encode_renew(request_id: int, node: str, token: int, lease_ms: int) -> bytes:
    """Sets a held lease to end ``lease_ms`` after the server receives this (§12.5)."""
    return request(RENEW, request_id).string(node).u64(token).u32(lease_ms).frame()


def encode_release(request_id: int, node: str, token: int) -> bytes:
    return request(RELEASE, request_id).string(node).u64(token).frame()


# Decoding (server -> client).

class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, n: int) -> bytes:
        if self.offset + n > len(self.data):
            raise ProtocolError("frame ends inside a field")
        chunk = self.data[self.offset:self.offset + n]
        self.offset += n
        return chunk

    def u8(self) -> int: return self.take(1)[0]
    def u16(self) -> int: return struct.unpack(">H", self.take(2))[0]
    def u32(self) -> int: return struct.unpack(">I", self.take(4))[0]
    def u64(self) -> int: return struct.unpack(">Q", self.take(8))[0]
    def i32(self) -> int: return struct.unpack(">i", self.take(4))[0]

    def boolean(self) -> bool:
        v = self.u8()
        if v > 1:
            raise ProtocolError("bool not 0 or 1")
        return v == 1

    def string(self) -> str:
        try:
            return self.take(self.u16()).decode("utf-8")
        except UnicodeDecodeError as error:
            raise ProtocolError("string not UTF-8") from error

    def bytes_(self) -> bytes:
        return self.take(self.u32())

    def stat(self) -> Stat:
        czxid, mzxid, pzxid, ctime, mtime = self.u64(), self.u64(), self.u64(), self.u64(), self.u64()
        version, cversion, owner = self.i32(), self.i32(), self.u64()
        length, count, kind = self.u32(), self.u32(), self.u8()
        if kind not in NODE_KIND_NAMES:
            raise ProtocolError(f"unknown node kind {kind}")
        return Stat(czxid, mzxid, pzxid, ctime, mtime, version, cversion, owner, length, count, NODE_KIND_NAMES[kind])

    def end(self) -> None:
        if self.offset != len(self.data):
            raise ProtocolError("trailing bytes after the frame's fields")


def _reply_body(opcode: int, r: Reader):
    if opcode == HELLO:
        return {"version": r.u16(), "server_name": r.string(), "frame_bytes_max": r.u32()}
    if opcode == OPEN_SESSION:
        return {"session_id": r.u64(), "secret": (r.u64(), r.u64()), "timeout_ms": r.u32()}
    if opcode == RESUME_SESSION:
        return {"timeout_ms": r.u32()}
    if opcode in (CLOSE_SESSION, PING, AUTHENTICATE, DELETE, CHECK, RELEASE, CANCEL, RENEW, ADD_WATCH, REMOVE_WATCHES):
        return None
    if opcode == CREATE:
        return {"path": r.string(), "stat": r.stat()}
    if opcode == EXISTS:
        return r.stat() if r.boolean() else None
    if opcode == GET:
        stat = r.stat()
        return {"stat": stat, "data": r.bytes_()}
    if opcode == SET:
        return r.stat()
    if opcode == CHILDREN:
        stat = r.stat()
        names = [r.string() for _ in range(r.u32())]
        return {"stat": stat, "names": names, "more": r.boolean()}
    if opcode == MULTI:
        results = []
        for _ in range(r.u16()):
            op = r.u8()
            if op == CREATE:
                results.append(("created", r.string(), r.stat()))
            elif op == DELETE:
                results.append(("deleted",))
            elif op == SET:
                results.append(("set", r.stat()))
            elif op == CHECK:
                results.append(("checked",))
            else:
                raise ProtocolError(f"unknown multi result 0x{op:02x}")
        return results
    if opcode == ACQUIRE:
        return {"node": r.string(), "token": r.u64()}
    if opcode == REQUEST_REVOCATION or opcode == FORCE_RELEASE:
        return r.u32()
    if opcode == ACQUIRE_OWNED:
        return {"node": r.string(), "token": r.u64(), "hold_count": r.u32()}
    if opcode == ACQUIRE_ALL:
        return [{"node": r.string(), "token": r.u64()} for _ in range(r.u16())]
    if opcode == CHECK_TOKEN:
        return r.boolean()
    if opcode == INSPECT:
        entries = []
        for _ in range(r.u32()):
            node, kind, position = r.string(), r.u8(), r.u8()
            if kind not in LOCK_KIND_NAMES or position > 1:
                raise ProtocolError("bad lock entry")
            entries.append(LockEntry(node, LOCK_KIND_NAMES[kind], "waiter" if position else "holder",
                                     r.u64(), r.string(), r.u64(), r.u64()))
        return entries
    if opcode == BACKUP:
        return {"lsn": r.u64(), "bytes": r.u64()}
    raise ProtocolError(f"reply to unknown opcode 0x{opcode:02x}")


def decode_server_body(body: bytes):
    """Decodes one server frame body into a Reply or an Event."""
    r = Reader(body)
    kind = r.u8()
    if kind == 1:
        request_id, opcode, code = r.u32(), r.u8(), r.u16()
        if code != 0:
            message = r.string()
            r.end()
            return Reply(request_id, opcode, BatonError(code, message))
        value = _reply_body(opcode, r)
        r.end()
        return Reply(request_id, opcode, None, value)
    if kind == 2:
        event_kind = r.u8()
        if event_kind == 1:
            watch_type = r.u8()
            if watch_type not in WATCH_TYPE_NAMES:
                raise ProtocolError(f"unknown watch type {watch_type}")
            event = Event("watch", {"type": WATCH_TYPE_NAMES[watch_type], "path": r.string()})
        elif event_kind == 2:
            node, token, reason = r.string(), r.u64(), r.u8()
            event = Event("lockLost", {"node": node, "token": token,
                                       "reason": LOCK_LOST_REASONS.get(reason, f"reason{reason}")})
        elif event_kind == 3:
            event = Event("lockSuspended", {"node": r.string(), "token": r.u64()})
        elif event_kind == 4:
            event = Event("sessionExpired", {"session_id": r.u64()})
        elif event_kind == 5:
            event = Event("revocationRequested", {"node": r.string(), "token": r.u64(), "requester": r.u64()})
        elif event_kind == 6:
            event = Event("lockResumed", {"node": r.string(), "token": r.u64()})
        else:
            raise ProtocolError(f"unknown event kind {event_kind}")
        r.end()
        return event
    raise ProtocolError(f"unknown frame kind {kind}")


def split_frames(buffer: bytearray, frame_bytes_max: int) -> List[bytes]:
    """Removes and returns the whole frame bodies at the front of ``buffer``."""
    bodies = []
    while len(buffer) >= 4:
        (length,) = struct.unpack(">I", buffer[:4])
        if length == 0 or length > frame_bytes_max:
            raise ProtocolError(f"server frame of {length} bytes")
        if len(buffer) < 4 + length:
            break
        bodies.append(bytes(buffer[4:4 + length]))
        del buffer[:4 + length]
    return bodies


def lock_path_of(node: str) -> str:
    return node.rsplit("/", 1)[0] or "/"


Secret = Tuple[int, int]
