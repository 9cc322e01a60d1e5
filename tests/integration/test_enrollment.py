#!/usr/bin/env python3
"""Enrollment with join tokens in the lab: an admin creates a token with `bulkhead tokens
create`; on a lab host, `bulkhead-agent enroll --token` makes the host's key there, gets its
certificate from the controller's enrollment listener, and the agent started with that
identity comes online with the token's labels (what it claims itself is only shown as
reported). Used-up, revoked, malformed, forged-pin and unreachable tokens and a
taken host id each get one line, and nothing is written. The enrollment listener serves
nothing but enrollment. An agent whose certificate nears its end renews it over its stream
(same key, a new certificate) and reconnects with it. Root only.
"""

import base64
import json
import os
import signal
import stat
import subprocess
import sys
import time
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed, wait_until  # noqa: E402
from fleet import Fleet  # noqa: E402

IS_ROOT = os.geteuid() == 0
ENROLL_PORT = 7444


def token_doc(text: str) -> dict:
    body = text[len("bhjt1."):]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def token_text(doc: dict) -> str:
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return "bhjt1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class EnrollmentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=2)
        cls.addClassCleanup(cls.lab.close)
        cls.fleet = Fleet(cls.lab)
        cls.fleet.start_controller(extra=[
            "--enroll-listen", f"[::]:{ENROLL_PORT}",
            "--ca-key", os.path.join(cls.fleet.pki, "ca", "ca.key")])

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()

    # ---- helpers ---------------------------------------------------------------------------

    def create_token(self, *extra: str) -> dict:
        rc, doc, err = self.fleet.cli("tokens", "create", "--reason", "CHG-1", *extra)
        self.assertEqual(rc, 0, err)
        return doc

    def identity_dir(self, name: str) -> str:
        return os.path.join(self.lab.tmpdir, f"enrolled-{name}")

    def enroll(self, node: str, token: str, host_id: str, identity: str = ""):
        return self.lab.run(node, [self.fleet.bin("bulkhead-agent"), "enroll", "--token", token,
                                   "--host-id", host_id, "--identity",
                                   identity or self.identity_dir(host_id), "--timeout", "5s"],
                            timeout=30)

    def assert_refused(self, r, code: int, words: str, host_id: str):
        self.assertEqual(r.returncode, code, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)  # one clear line
        self.assertIn(words, lines[0])
        self.assertFalse(os.path.exists(os.path.join(self.identity_dir(host_id), "tls.key")))
        self.assertFalse(os.path.exists(os.path.join(self.identity_dir(host_id), "tls.crt")))

    def token_record(self, token_id: str) -> dict:
        rc, doc, err = self.fleet.cli("tokens")
        self.assertEqual(rc, 0, err)
        return next(t for t in doc["tokens"] if t["token_id"] == token_id)

    # ---- tests -----------------------------------------------------------------------------

    def test_a_server_enrolls_with_a_token_and_its_agent_comes_online(self):
        made = self.create_token("--labels", "role=web,env=prod", "--ttl", "1h", "--uses", "2")
        text = made["token_text"]
        doc = token_doc(text)
        self.assertEqual(doc["enroll"][0], f"{self.lab.ip4('ctl')}:{ENROLL_PORT}")
        with open(os.path.join(self.fleet.pki, "ca", "ca.crt")) as f:
            ca_pem = f.read()
        r = self.lab.run("ctl", ["sh", "-c", "openssl x509 -outform DER | sha256sum"],
                         input=ca_pem)
        self.assertEqual(doc["ca_sha256"], r.stdout.split()[0])  # the README's openssl pin

        r = self.enroll("h1", text, "web-new-1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("enrolled as web-new-1", r.stdout)
        self.assertIn("labels env=prod,role=web", r.stdout)
        ident = self.identity_dir("web-new-1")
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(ident, "tls.key")).st_mode), 0o600)
        # The certificate is the controller's, for this host, for the key made here.
        r = self.lab.run("ctl", ["openssl", "verify", "-CAfile",
                                 os.path.join(self.fleet.pki, "ca", "ca.crt"),
                                 os.path.join(ident, "tls.crt")])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = self.lab.run("ctl", ["openssl", "x509", "-noout", "-subject", "-in",
                                 os.path.join(ident, "tls.crt")])
        self.assertIn("CN = web-new-1", r.stdout)
        pub_cert = self.lab.run("ctl", ["sh", "-c", f"openssl x509 -noout -pubkey -in "
                                        f"{ident}/tls.crt"]).stdout
        pub_key = self.lab.run("ctl", ["sh", "-c", f"openssl pkey -pubout -in "
                                       f"{ident}/tls.key"]).stdout
        self.assertEqual(pub_cert, pub_key)

        # The agent claims another role: the controller keeps the token's labels.
        self.fleet.start_agent("h1", identity=ident, labels={"role": "db"})
        self.fleet.wait_online(["web-new-1"], timeout=30)
        host = self.fleet.hosts()["web-new-1"]
        self.assertEqual(host["labels"], {"role": "web", "env": "prod"})
        self.assertTrue(host["labels_from_enrollment"])
        self.assertEqual(host["reported_labels"], {"role": "db"})
        rc, doc, err = self.fleet.cli("hosts", "--selector", "role=db")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("web-new-1", [h["host_id"] for h in doc.get("hosts", [])])
        rc, doc, err = self.fleet.cli("hosts", "--selector", "role=web")
        self.assertIn("web-new-1", [h["host_id"] for h in doc.get("hosts", [])])
        record = self.token_record(made["token"]["token_id"])
        self.assertEqual(record["uses"], 1)
        self.assertEqual(record["enrolled_hosts"], ["web-new-1"])
        rc, audit, err = self.fleet.cli("audit", "--limit", "200")
        self.assertEqual(rc, 0, err)
        rows = [a for a in audit["records"] if a["action"] == "agent-enroll"]
        self.assertTrue(any(a["target"] == "web-new-1" and a["outcome"] == "ok" for a in rows),
                        rows)
        # A compromised enrolled host is cut off like any other: its serial (the controller
        # issued it, so the PKI directory never saw it) into the CRL, SIGHUP.
        r = self.lab.run("ctl", ["openssl", "x509", "-noout", "-serial", "-in",
                                 os.path.join(ident, "tls.crt")])
        serial = r.stdout.strip().split("=", 1)[1]
        r = self.lab.run("ctl", [self.fleet.bin("bulkhead"), "pki", "revoke", "--dir",
                                 self.fleet.pki, "--serial", serial, "--issued-by-controller",
                                 "web-new-1", "--reason", "INC-11 compromised"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.fleet.controller.send_signal(signal.SIGHUP)
        self.fleet.wait_online(["web-new-1"], timeout=30, online=False)
        # The same host id again, even with uses left: refused, nothing written.
        other = os.path.join(self.lab.tmpdir, "enrolled-again")
        r = self.enroll("h2", text, "web-new-1", identity=other)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("already enrolled or known", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(other, "tls.key")))

    def test_refused_tokens_get_one_line_and_nothing_is_written(self):
        one = self.create_token("--uses", "1")
        self.assertEqual(self.enroll("h2", one["token_text"], "web-a").returncode, 0)
        self.assert_refused(self.enroll("h2", one["token_text"], "web-b"), 1, "is used up",
                            "web-b")

        self.assert_refused(self.enroll("h2", "bhjt1.not-a-token", "web-c"), 2, "token: damaged",
                            "web-c")

        revoked = self.create_token("--uses", "5")
        rc, _, err = self.fleet.cli("tokens", "revoke", revoked["token"]["token_id"],
                                    "--reason", "INC-9")
        self.assertEqual(rc, 0, err)
        self.assert_refused(self.enroll("h2", revoked["token_text"], "web-d"), 1, "was revoked",
                            "web-d")

        # A token whose pin is not this controller's CA: nothing is sent, no use is spent.
        good = self.create_token("--uses", "5")
        forged = token_doc(good["token_text"])
        forged["ca_sha256"] = "0" * 64
        self.assert_refused(self.enroll("h2", token_text(forged), "web-e"), 1,
                            "does not match the token's pin", "web-e")
        self.assertEqual(self.token_record(good["token"]["token_id"])["uses"], 0)

        # Nobody listening there.
        away = token_doc(good["token_text"])
        away["enroll"] = [f"{self.lab.ip4('jump')}:{ENROLL_PORT}"]
        self.assert_refused(self.enroll("h2", token_text(away), "web-f"), 1,
                            f"{self.lab.ip4('jump')}:{ENROLL_PORT}", "web-f")

        # An existing identity is never overwritten.
        ident = self.identity_dir("web-a")
        r = self.enroll("h2", good["token_text"], "web-g", identity=ident)
        self.assertEqual(r.returncode, 1)
        self.assertIn("already holds an identity", r.stderr)

    def test_an_agent_renews_its_certificate_over_its_stream(self):
        ident = self.fleet.agent_identity("h2")  # 825 days: replaced by a 10-day one
        subprocess.run([self.fleet.bin("bulkhead"), "pki", "issue", "agent", "--host-id", "h2",
                        "--dir", self.fleet.pki, "--valid-for", "10d", "--replace"],
                       check=True, capture_output=True, text=True, timeout=30)
        with open(os.path.join(ident, "tls.key")) as f:
            key = f.read()
        with open(os.path.join(ident, "tls.crt")) as f:
            short = f.read()
        self.fleet.start_agent("h2", extra=["--renew-before", "30d"])
        year_ms = 300 * 24 * 3600 * 1000

        def renewed():
            h = self.fleet.hosts().get("h2")
            return h is not None and h["online"] and \
                int(h.get("cert_not_after_unix_ms", 0)) > time.time() * 1000 + year_ms
        wait_until(renewed, 30, interval=0.3, desc="h2 online with a renewed certificate")
        with open(os.path.join(ident, "tls.key")) as f:
            self.assertEqual(f.read(), key)  # the key never changes
        with open(os.path.join(ident, "tls.crt")) as f:
            self.assertNotEqual(f.read(), short)
        rc, audit, err = self.fleet.cli("audit", "--limit", "500")
        self.assertEqual(rc, 0, err)
        rows = [a for a in audit["records"] if a["action"] == "agent-renew"]
        self.assertEqual([a["outcome"] for a in rows], ["ok"], rows)
        self.assertEqual(rows[0]["operator"], "agent:h2")

    def test_the_enrollment_listener_serves_nothing_else(self):
        # The admin's own certificate gets no operator call answered on the enrollment port.
        r = self.lab.run("jump", [self.fleet.bin("bulkhead"), "--controller",
                                  f"{self.lab.ip4('ctl')}:{ENROLL_PORT}", "--identity",
                                  self.fleet.admin_identity, "hosts"], timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("does not serve this call (UNIMPLEMENTED)", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
