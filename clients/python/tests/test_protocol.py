import re
import unittest

from support import ROOT, baton, vectors

p = baton.protocol


class ElectionRecordTests(unittest.TestCase):
    """The election record (PROTOCOL.md §12.15) and who it names as leader, without a daemon."""

    def entry(self, position, token, node="/e/x-0000000001"):
        return p.LockEntry(node, "exclusive", position, 0x77, "leader-client", token, 5)

    def test_the_record_is_the_big_endian_token_then_the_value(self):
        self.assertEqual(baton._core.election_record(0x0102030405060708, b"v1"), bytes(range(1, 9)) + b"v1")

    def test_a_record_counts_only_under_the_holders_token(self):
        leader = baton._core.election_leader
        holder = self.entry("holder", 9)
        self.assertEqual(leader([holder], baton._core.election_record(9, b"me")),
                         baton.ElectionLeader(holder.node, 0x77, "leader-client", 9, b"me"))
        self.assertIsNone(leader([holder], baton._core.election_record(8, b"old")).value)
        self.assertIsNone(leader([holder], b"short").value)
        self.assertIsNone(leader([holder], None).value)
        self.assertEqual(leader([holder], baton._core.election_record(9, b"")).value, b"")
        self.assertIsNone(leader([self.entry("waiter", 3)], baton._core.election_record(3, b"w")))
        self.assertIsNone(leader([], None))


class GoldenVectorTests(unittest.TestCase):
    """The codec against Proto/vectors, the same frames the Swift tests check."""

    def test_requests_encode_byte_for_byte(self):
        v = vectors("requests.hex")
        self.assertEqual(p.encode_hello(1, "orders"), v["hello"])
        self.assertEqual(p.encode_open_session(2, 10000, keep_on_disconnect=True), v["openSession"])
        self.assertEqual(p.encode_open_session(2, 0), v["openSession.defaults"])
        self.assertEqual(p.encode_resume_session(3, 0x0102030405060708, (0x1112131415161718, 0x2122232425262728)),
                         v["resumeSession"])
        self.assertEqual(p.encode_close_session(4), v["closeSession"])
        self.assertEqual(p.encode_ping(5), v["ping"])
        self.assertEqual(p.encode_authenticate(0x17, b"secret"), v["authenticate"])
        self.assertEqual(p.encode_create(6, "/locks/a", b"hi", ephemeral=True, sequential=True), v["create"])
        self.assertEqual(p.encode_create(7, "/c", b"", container=True), v["create.container"])
        self.assertEqual(p.encode_delete(8, "/a"), v["delete"])
        self.assertEqual(p.encode_exists(9, "/a", True), v["exists"])
        self.assertEqual(p.encode_get(10, "/a", False), v["get"])
        self.assertEqual(p.encode_set(11, "/a", b"\x00\xff", 7), v["set"])
        self.assertEqual(p.encode_children(12, "/", True, "a", 100), v["children"])
        self.assertEqual(p.encode_acquire(16, "/locks/a", p.EXCLUSIVE, 1, p.WAIT_FOREVER, 0), v["acquire"])
        self.assertEqual(p.encode_acquire(17, "/s", p.SEMAPHORE, 3, 0, 30000), v["acquire.semaphore-try"])
        self.assertEqual(p.encode_acquire(18, "/r", p.SHARED, 1, 5000, 0), v["acquire.shared"])
        self.assertEqual(p.encode_release(19, "/l/0000000007", 7), v["release"])
        self.assertEqual(p.encode_cancel(20, 16), v["cancel"])
        self.assertEqual(p.encode_check_token(21, "/l", 7), v["checkToken"])
        self.assertEqual(p.encode_inspect(22, "/l"), v["inspect"])
        self.assertEqual(p.encode_acquire_owned(0x18, "/locks/a", p.EXCLUSIVE, 1, p.WAIT_FOREVER, 0, "t1"),
                         v["acquireOwned"])
        self.assertEqual(p.encode_renew(0x19, "/l/0000000007", 7, 30000), v["renew"])
        self.assertEqual(p.encode_acquire_owned(0x1a, "/r", p.SHARED, 1, 5000, 30000, "t1", revocable=True,
                                                lock_delay_ms=5000),
                         v["acquireOwned.revocable"])
        self.assertEqual(p.encode_request_revocation(0x1b, "/l"), v["requestRevocation"])
        self.assertEqual(p.encode_force_release(0x1c, "/l", 0x0102030405060708), v["forceRelease"])
        self.assertEqual(p.encode_backup(0x18, "/b.bak"), v["backup"])
        self.assertEqual(p.encode_acquire_all(0x1c, [("/a", p.EXCLUSIVE, 1), ("/b", p.SHARED, 1)], 5000, 0),
                         v["acquireAll"])
        self.assertEqual(p.encode_add_watch(0x1c, "/a/b", p.PERSISTENT_RECURSIVE), v["addWatch"])
        self.assertEqual(p.encode_remove_watches(0x1d, "/a", p.PERSISTENT), v["removeWatches"])

    def test_every_reply_and_event_decodes(self):
        for name, frame in list(vectors("replies.hex").items()) + list(vectors("events.hex").items()):
            with self.subTest(name):
                self.assertEqual(int.from_bytes(frame[:4], "big"), len(frame) - 4)
                p.decode_server_body(frame[4:])

    def test_reply_values(self):
        v = vectors("replies.hex")
        hello = p.decode_server_body(v["hello"][4:])
        self.assertEqual(hello.body, {"version": 1, "server_name": "batond", "frame_bytes_max": 1114112})
        session = p.decode_server_body(v["session"][4:]).body
        self.assertEqual(session["session_id"], 0x0102030405060708)
        self.assertEqual(session["timeout_ms"], 10000)
        created = p.decode_server_body(v["created"][4:]).body
        self.assertEqual(created["path"], "/locks/a0000000001")
        self.assertEqual(created["stat"].czxid, 5)
        self.assertEqual(created["stat"].ctime, 1700000000000)
        self.assertEqual(created["stat"].kind, "ephemeral")
        self.assertEqual(created["stat"].ephemeral_owner, 0xAB)
        children = p.decode_server_body(v["children"][4:]).body
        self.assertEqual(children["names"], ["a", "locks"])
        granted = p.decode_server_body(v["granted"][4:]).body
        self.assertEqual(p.decode_server_body(v["backedUp"][4:]).body, {"lsn": 42, "bytes": 4096})
        self.assertEqual(granted, {"node": "/l/0000000007", "token": 7})
        entries = p.decode_server_body(v["lockEntries"][4:]).body
        self.assertEqual([(e.position, e.client_name, e.token, e.age_milliseconds) for e in entries],
                         [("holder", "orders", 7, 1500), ("waiter", "", 8, 0)])
        error = p.decode_server_body(v["error.noNode"][4:])
        self.assertEqual((error.error.name, error.error.message), ("noNode", "no node"))
        self.assertEqual(p.decode_server_body(v["revocation"][4:]).body, 2)
        self.assertEqual(p.decode_server_body(v["forceReleased"][4:]).body, 1)
        self.assertEqual(p.decode_server_body(v["grantedAll"][4:]).body,
                         [{"node": "/a/0000000007", "token": 7}, {"node": "/b/0000000003", "token": 3}])
        revoke = p.decode_server_body(vectors("events.hex")["revocationRequested"][4:])
        self.assertEqual((revoke.kind, revoke.fields), ("revocationRequested", {"node": "/l/0000000007", "token": 7, "requester": 9}))
        resumed = p.decode_server_body(vectors("events.hex")["lockResumed"][4:])
        self.assertEqual((resumed.kind, resumed.fields), ("lockResumed", {"node": "/l/0000000007", "token": 7}))
        lost = p.decode_server_body(vectors("events.hex")["lockLost.leaseExpired"][4:])
        self.assertEqual(lost.fields, {"node": "/l/0000000007", "token": 7, "reason": "leaseExpired"})

    def test_truncated_frames_are_protocol_errors(self):
        frame = vectors("replies.hex")["lockEntries"][4:]
        for cut in range(1, len(frame)):
            with self.assertRaises(p.ProtocolError):
                p.decode_server_body(frame[:cut])

    def test_error_table_matches_the_spec(self):
        spec = open(f"{ROOT}/Proto/PROTOCOL.md").read()
        section = spec[spec.index("## 7. Error codes"):spec.index("## 8. Limits")]
        table = {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| (\d+) \| `(\w+)` \|", section, re.M)}
        table.pop(0)
        self.assertEqual(p.ERROR_NAMES, table)


if __name__ == "__main__":
    unittest.main()
