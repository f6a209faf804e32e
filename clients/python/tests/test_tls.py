"""TLS over TCP against a real batond, with certificates the test makes with the openssl command."""

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from support import Daemon, baton


def _openssl(*arguments):
    subprocess.run(["openssl", *arguments], check=True, capture_output=True)


def _make_certificates(directory):
    """A CA, a server certificate for 127.0.0.1, a client certificate (CN py-client), another CA."""
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", *curve, "-keyout", f"{directory}/{ca}.key", "-out", f"{directory}/{ca}.crt",
                 "-days", "2", "-subj", f"/CN={ca}")
    for name, cn, usage in (("server", "localhost", "serverAuth"), ("client", "py-client", "clientAuth")):
        base = f"{directory}/{name}"
        with open(base + ".ext", "w") as f:
            f.write(("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if name == "server" else "")
                    + f"extendedKeyUsage={usage}\n")
        _openssl("req", *curve, "-keyout", base + ".key", "-out", base + ".csr", "-subj", f"/CN={cn}")
        _openssl("x509", "-req", "-in", base + ".csr", "-CA", f"{directory}/ca.crt", "-CAkey", f"{directory}/ca.key",
                 "-CAcreateserial", "-out", base + ".crt", "-days", "2", "-extfile", base + ".ext")


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl command")
class TLSTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certificates = tempfile.mkdtemp(prefix="baton-py-tls-")
        _make_certificates(cls.certificates)
        cls.token_file = os.path.join(cls.certificates, "token")
        with open(cls.token_file, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.chmod(cls.token_file, 0o600)
        cls.port = _free_port()
        c = cls.certificates
        cls.daemon = Daemon("--listen", f"127.0.0.1:{cls.port}", "--tcp-token-file", cls.token_file,
                            "--tls-cert", f"{c}/server.crt", "--tls-key", f"{c}/server.key",
                            "--tls-client-ca", f"{c}/ca.crt", "--log-level", "debug")
        deadline = time.monotonic() + 30
        while True:  # the Unix socket accepts first; wait for TCP too
            try:
                socket.create_connection(("127.0.0.1", cls.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()
        shutil.rmtree(cls.certificates, ignore_errors=True)

    def context(self, ca="ca", client=True):
        c = self.certificates
        if client:
            return baton.tls_context(f"{c}/{ca}.crt", f"{c}/client.crt", f"{c}/client.key")
        return baton.tls_context(f"{c}/{ca}.crt")

    def connect(self, **options):
        return baton.Client(tcp=("127.0.0.1", self.port), token_file=self.token_file, **options)

    def test_blocking_client_locks_over_mutual_tls(self):
        with self.connect(tls=self.context()) as client:
            with client.lock("/locks/py-tls") as grant:
                self.assertGreater(grant.token, 0)
                client.create("/py-tls", b"x" * 100_000)  # several TLS records each way
                self.assertEqual(client.get("/py-tls")[0], b"x" * 100_000)
        with open(self.daemon.log.name) as f:
            self.assertIn("tls_peer=py-client", f.read())

    def test_refusals(self):
        with self.assertRaises(baton.ConnectError) as wrong_ca:
            self.connect(tls=self.context(ca="other-ca"))
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(wrong_ca.exception))
        with self.assertRaises(baton.ConnectError):
            self.connect(tls=self.context(), server_hostname="batond.example")
        # TLS 1.3: the server's refusal of a missing client certificate comes with its first reply.
        with self.assertRaises((baton.ConnectError, baton.ConnectionClosed)) as missing:
            self.connect(tls=self.context(client=False))
        self.assertIn("CERTIFICATE_REQUIRED", str(missing.exception).upper().replace(" ", "_"))
        # Without TLS the connection is closed, not left hanging.
        with self.assertRaises((baton.ConnectError, baton.ConnectionClosed, baton.BatonError, OSError)):
            self.connect(connect_timeout=10)

    def test_asyncio_client_over_tls(self):
        async def run():
            client = await baton.aio.connect(tcp=("127.0.0.1", self.port), token_file=self.token_file,
                                             tls=self.context())
            async with client:
                async with client.lock("/locks/py-aio-tls") as grant:
                    self.assertGreater(grant.token, 0)
            with self.assertRaises(baton.ConnectError):
                await baton.aio.connect(tcp=("127.0.0.1", self.port), token_file=self.token_file,
                                        tls=self.context(ca="other-ca"))
        asyncio.run(run())


if __name__ == "__main__":
    unittest.main()
