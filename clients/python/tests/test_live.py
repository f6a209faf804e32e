"""The Python client against a real batond (built by swift build; $BATOND names another)."""

import asyncio
import json
import os
import socket
import subprocess
import threading
import time
import unittest

from support import Daemon, baton, batond_path


class LiveTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon()

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def client(self, name="py-test", **options):
        client = baton.Client(self.daemon.socket, client_name=name, **options)
        self.addCleanup(client.close)
        return client

    def test_namespace_round_trip(self):
        c = self.client()
        self.assertTrue(c.server_name.startswith("batond"))
        c.ping()
        self.assertEqual(c.create("/py", b"top"), "/py")
        for name in ["b", "a", "c"]:
            c.create(f"/py/{name}")
        self.assertEqual(c.children("/py"), ["a", "b", "c"])
        data, stat = c.get("/py")
        self.assertEqual((data, stat.version, stat.kind), (b"top", 0, "persistent"))
        self.assertEqual(c.set("/py", b"new", stat.version).version, 1)
        with self.assertRaises(baton.BatonError) as caught:
            c.set("/py", b"stale", 0)
        self.assertEqual(caught.exception.name, "badVersion")
        with self.assertRaises(baton.BatonError) as caught:
            c.get("/py/missing")
        self.assertEqual(caught.exception.name, "noNode")
        sequential = c.create("/py/job-", sequential=True)
        self.assertRegex(sequential, r"^/py/job-\d{10}$")
        self.assertIsNone(c.exists("/py/nothing"))

    def test_children_pages_through_a_big_directory(self):
        c = self.client()
        c.create("/many")
        names = [f"n{i:05d}" for i in range(10_050)]
        for name in names:
            c.create(f"/many/{name}")
        self.assertEqual(c.children("/many"), names)

    def test_watch_fires_once(self):
        c = self.client()
        other = self.client("other")
        fired = []
        done = threading.Event()
        c.exists("/watched", watch=lambda kind, path: (fired.append((kind, path)), done.set()))
        other.create("/watched")
        self.assertTrue(done.wait(10))
        other.set("/watched", b"x")
        other.ping()
        self.assertEqual(fired, [("created", "/watched")])

    def test_persistent_and_recursive_watches_keep_firing_until_removed(self):
        c = self.client()
        other = self.client("other")
        fired = []
        c.add_watch("/pw", lambda kind, path: fired.append(("exact", kind, path)))
        c.add_watch("/tree", lambda kind, path: fired.append(("tree", kind, path)), recursive=True)
        other.create("/pw")
        other.set("/pw", b"1")
        other.set("/pw", b"2")
        other.create("/tree")
        other.create("/tree/leaf")
        c.ping()  # the events of the changes above come before this reply
        c.remove_watch("/pw")
        with self.assertRaises(baton.BatonError) as caught:
            c.remove_watch("/pw")
        self.assertEqual(caught.exception.name, "noWatch")
        other.set("/pw", b"3")
        c.ping()
        self.assertEqual(fired, [("exact", "created", "/pw"), ("exact", "dataChanged", "/pw"),
                                 ("exact", "dataChanged", "/pw"), ("tree", "created", "/tree"),
                                 ("tree", "created", "/tree/leaf")])

    def test_locks_exclude_and_tokens_increase(self):
        a, b = self.client("a"), self.client("b")
        with a.lock("/locks/py") as first:
            with self.assertRaises(baton.BatonError) as caught:
                b.acquire("/locks/py", timeout=0)
            self.assertEqual(caught.exception.name, "lockBusy")
            self.assertTrue(b.check_token("/locks/py", first.token))
            entries = b.inspect("/locks/py")
            self.assertEqual([(e.position, e.client_name, e.token) for e in entries], [("holder", "a", first.token)])
        self.assertFalse(b.check_token("/locks/py", first.token))
        with b.lock("/locks/py", timeout=5) as second:
            self.assertGreater(second.token, first.token)

    def test_a_waiter_gets_the_lock_when_the_holder_releases(self):
        a, b = self.client("a"), self.client("b")
        held = a.acquire("/locks/wait")
        granted = []
        waiter = threading.Thread(target=lambda: granted.append(b.acquire("/locks/wait", timeout=10)))
        waiter.start()
        time.sleep(0.2)
        self.assertEqual(granted, [])
        a.release(held)
        waiter.join(10)
        self.assertEqual(len(granted), 1)
        self.assertGreater(granted[0].token, held.token)

    def test_acquire_all_takes_every_lock_or_none(self):
        a, b = self.client("a"), self.client("b")
        held = b.acquire("/locks/set-b")
        with self.assertRaises(baton.BatonError) as caught:
            a.acquire_all(["/locks/set-a", "/locks/set-b"], timeout=0)
        self.assertEqual(caught.exception.name, "lockBusy")
        self.assertEqual(b.acquire("/locks/set-a", timeout=0).path, "/locks/set-a", "the failed set kept nothing")
        b.close()
        grants = a.acquire_all(["/locks/set-b", "/locks/set-a"], timeout=5)
        self.assertEqual([g.path for g in grants], ["/locks/set-b", "/locks/set-a"])
        self.assertTrue(all(a.check_token(g.path, g.token) for g in grants))
        for grant in grants:
            a.release(grant)

    def test_lost_lock_callback_on_lease_expiry(self):
        c = self.client()
        reasons = []
        c.on_lock_lost(lambda grant, reason: reasons.append((grant.path, reason)))
        grant = c.acquire("/locks/lease", lease=0.2)
        self.assertTrue(grant.lost.wait(10), "lockLost never arrived")
        self.assertEqual(grant.lost_reason, "leaseExpired")
        self.assertEqual(reasons, [("/locks/lease", "leaseExpired")])
        with self.assertRaises(baton.BatonError) as caught:
            c.release(grant)
        self.assertEqual(caught.exception.name, "lockLost")

    def test_reentrant_acquire_renew_and_deadlock(self):
        a, b = self.client("a"), self.client("b")
        first = a.acquire("/locks/re", owner="t1", lease=30)
        again = a.acquire("/locks/re", owner="t1")
        self.assertEqual((again.node, again.token, again.hold_count), (first.node, first.token, 2))
        a.renew(first, 30)
        a.release(again)
        self.assertTrue(b.check_token("/locks/re", first.token), "one count left")
        a.release(first)
        self.assertFalse(b.check_token("/locks/re", first.token))
        with self.assertRaises(baton.BatonError) as caught:
            a.renew(first, 1)
        self.assertEqual(caught.exception.name, "lockLost")
        plain = a.acquire("/locks/plain")
        with self.assertRaises(baton.BatonError) as caught:
            a.acquire("/locks/plain", timeout=10)
        self.assertEqual(caught.exception.name, "lockHeldBySession")
        a.release(plain)

        one, two = a.acquire("/locks/one"), b.acquire("/locks/two")
        granted = []
        waiter = threading.Thread(target=lambda: granted.append(a.acquire("/locks/two", timeout=20)))
        waiter.start()
        while len(b.inspect("/locks/two")) < 2:
            time.sleep(0.01)
        with self.assertRaises(baton.BatonError) as caught:
            b.acquire("/locks/one", timeout=20)
        self.assertEqual(caught.exception.name, "deadlock")
        b.release(two)
        waiter.join(20)
        self.assertEqual(len(granted), 1)
        a.release(granted[0])
        a.release(one)

    def test_revocation_request_reaches_the_revocable_holder(self):
        a, b = self.client("a"), self.client("b")
        asked = threading.Event()
        seen = []
        a.on_revocation_requested(lambda node, token, requester: (seen.append((node, token)), asked.set()))
        grant = a.acquire("/locks/rv", owner="job", revocable=True)
        self.assertEqual(b.request_revocation("/locks/rv"), 1)
        self.assertTrue(asked.wait(10), "revocationRequested never arrived")
        self.assertEqual(seen, [(grant.node, grant.token)])
        a.release(grant)
        self.assertEqual(b.request_revocation("/locks/rv"), 0)

    def test_force_release_ends_another_sessions_hold(self):
        a, b = self.client("a"), self.client("b")
        grant = a.acquire("/locks/forced")
        self.assertEqual(b.force_release("/locks/forced"), 1)
        with self.assertRaises(baton.BatonError) as caught:
            a.release(grant)
        self.assertEqual(caught.exception.name, "lockLost")
        again = b.acquire("/locks/forced", timeout=10)
        self.assertGreater(again.token, grant.token)
        b.release(again)
        self.assertEqual(b.force_release("/locks/forced", 12345), 0)

    def test_a_stale_release_does_not_end_a_later_hold(self):
        c = self.client()
        first = c.acquire("/reuse/L")
        c.release(first)
        c.delete("/reuse/L")
        second = c.acquire("/reuse/L")
        self.assertEqual(second.node, first.node)
        with self.assertRaises(baton.BatonError):
            c.release(first)
        self.assertTrue(c.check_token("/reuse/L", second.token))
        c.release(second)

    def test_session_ends_when_the_process_dies(self):
        holder = baton.Client(self.daemon.socket, client_name="doomed")
        holder.acquire("/locks/die")
        waiter = self.client("heir")
        holder._sock.close()  # as if the process died: no closeSession
        grant = waiter.acquire("/locks/die", timeout=10)
        self.assertEqual(grant.path, "/locks/die")

    def test_no_daemon_is_a_connect_error(self):
        with self.assertRaises(baton.ConnectError) as caught:
            baton.Client(os.path.join(self.daemon.directory, "nobody.sock"))
        self.assertIn("is batond running", str(caught.exception))

    def test_election_campaign_leader_proclaim_and_resign(self):
        path = "/elections/py"
        a, b, observer = self.client("py-a"), self.client("py-b"), self.client("py-observer")
        self.assertIsNone(observer.leader(path), "nobody has campaigned")
        first = a.campaign(path, b"alpha", timeout=5)
        self.assertEqual(observer.leader(path),
                         baton.ElectionLeader(first.node, a.session_id, "py-a", first.token, b"alpha"))
        a.proclaim(first, b"alpha-2")
        self.assertEqual(observer.leader(path).value, b"alpha-2")

        # A second candidate queues behind the leader and leads once it resigns.
        campaigned = {}
        waiting = threading.Thread(target=lambda: campaigned.update(grant=b.campaign(path, b"beta", timeout=10)))
        waiting.start()
        deadline = time.monotonic() + 10
        while len(observer.inspect(path)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(observer.leader(path).client_name, "py-a", "the candidate waits")
        a.resign(first)
        waiting.join(10)
        second = campaigned["grant"]
        self.assertGreater(second.token, first.token)
        self.assertEqual((observer.leader(path).client_name, observer.leader(path).value), ("py-b", b"beta"))
        self.assert_baton_leader_shows(path, "beta", second.token)

        # An ex-leader's late write carries its own token: no value rather than a wrong one.
        a.set(path, baton._core.election_record(first.token, b"stale"))
        self.assertEqual((observer.leader(path).client_name, observer.leader(path).value), ("py-b", None))
        b.proclaim(second, b"beta")
        b.resign(second)
        self.assertIsNone(observer.leader(path))

    def assert_baton_leader_shows(self, path, value, token):
        """The Swift CLI reads the record the Python client wrote (the two follow §12.15 alike)."""
        cli = os.path.join(os.path.dirname(batond_path()), "baton")
        if not os.access(cli, os.X_OK):
            return
        shown = subprocess.run([cli, "leader", "--json", "--socket", self.daemon.socket, path],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(shown.returncode, 0, shown.stderr)
        leader = json.loads(shown.stdout)
        self.assertEqual((leader["value"], leader["token"], leader["client"]), (value, token, "py-b"))

    def test_asyncio_client(self):
        async def scenario():
            async with await baton.aio.connect(self.daemon.socket, client_name="aio") as a:
                b = await baton.aio.connect(self.daemon.socket, client_name="aio-b")
                await a.create("/aio", b"v")
                self.assertEqual((await a.get("/aio"))[0], b"v")
                self.assertEqual(await b.children("/"), sorted(await b.children("/")))
                async with a.lock("/locks/aio") as grant:
                    waiting = asyncio.ensure_future(b.acquire("/locks/aio", timeout=10))
                    await asyncio.sleep(0.1)
                    self.assertFalse(waiting.done())
                    self.assertTrue(await b.check_token("/locks/aio", grant.token))
                next_grant = await waiting
                self.assertGreater(next_grant.token, grant.token)
                await b.release(next_grant)
                first = await a.acquire("/locks/aio-re", owner="task-1", lease=30, revocable=True, lock_delay=1)
                again = await a.acquire("/locks/aio-re", owner="task-1")
                self.assertEqual((again.token, again.hold_count), (first.token, 2))
                await a.renew(first, 30)
                self.assertEqual(await b.request_revocation("/locks/aio-re"), 1)
                await a.release(again)
                await a.release(first)
                self.assertFalse(await b.check_token("/locks/aio-re", first.token))
                leading = await a.campaign("/elections/aio", b"aio-value", timeout=5)
                leader = await b.leader("/elections/aio")
                self.assertEqual((leader.client_name, leader.token, leader.value), ("aio", leading.token, b"aio-value"))
                await a.resign(leading)
                self.assertIsNone(await b.leader("/elections/aio"))
                await b.close()
        asyncio.run(scenario())


class TrustTests(unittest.TestCase):
    @unittest.skipUnless(os.getuid() == 0, "needs root to run an impostor as another user")
    def test_a_socket_served_by_another_user_is_refused(self):
        import pwd
        import subprocess
        import tempfile
        user = "batonpyimpostor"
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", user], check=False,
                       capture_output=True)
        self.addCleanup(subprocess.run, ["userdel", user], capture_output=True)
        uid = pwd.getpwnam(user).pw_uid
        directory = tempfile.mkdtemp()
        os.chmod(directory, 0o777)
        path = os.path.join(directory, "fake.sock")
        listener = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "python3", "-c",
                                     "import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); "
                                     "s.listen(); c,_=s.accept(); time.sleep(5)", path])
        self.addCleanup(listener.kill)
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        with self.assertRaises(baton.ConnectError) as caught:
            baton.Client(path)
        self.assertIn(f"uid {uid}", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
