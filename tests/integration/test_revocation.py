#!/usr/bin/env python3
"""Stolen identities in the lab: `bulkhead pki revoke` and a SIGHUP to the controller refuse a
revoked operator's calls and end a revoked agent's live stream (its reconnects refused, other
agents unaffected); an agent whose identity was replaced comes back with the new certificate;
certificates near expiry show in `hosts` and `status`; the controller name given to
`pki init` is used by every CLI call and agent without repeating it. Root only.
"""

import os
import re
import signal
import subprocess
import sys
import time
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed, wait_until  # noqa: E402
from fleet import Fleet  # noqa: E402

IS_ROOT = os.geteuid() == 0
CONTROLLER_NAME = "bulkhead.lab.example"
HOSTS = ["h1", "h2", "h3", "h4"]


class NamedControllerFleet(Fleet):
    """A fleet whose PKI names the controller CONTROLLER_NAME; nothing else repeats it."""

    def _make_pki(self):
        subprocess.run([self.bin("bulkhead"), "pki", "init", "--dir", self.pki,
                        "--controller-name", CONTROLLER_NAME,
                        "--controller-ip", self.lab.ip4("ctl"),
                        "--controller-ip", self.lab.ip6("ctl")],
                       check=True, capture_output=True, text=True, timeout=30)
        for h in self.lab.hosts:
            extra = ["--valid-for", "10d"] if h.name == "h3" else []
            subprocess.run([self.bin("bulkhead"), "pki", "issue", "agent", "--host-id", h.name,
                            "--dir", self.pki, *extra],
                           check=True, capture_output=True, text=True, timeout=30)


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class RevocationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=len(HOSTS))
        cls.addClassCleanup(cls.lab.close)
        cls.fleet = NamedControllerFleet(cls.lab, heartbeat_interval="500ms",
                                         heartbeat_timeout="2s")
        cls.fleet.start_controller()
        for h in HOSTS:
            cls.fleet.start_agent(h)
        cls.fleet.wait_online(HOSTS, timeout=30)

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def pki(self, *args):
        return subprocess.run([self.fleet.bin("bulkhead"), *args],
                              capture_output=True, text=True, timeout=30)

    def log_size(self) -> int:
        return os.path.getsize(self.fleet.controller.log_path)

    def sighup(self) -> int:
        """Sends SIGHUP; returns the log offset before it (for wait_log's `since`)."""
        offset = self.log_size()
        self.fleet.controller.send_signal(signal.SIGHUP)
        return offset

    def controller_log(self, since: int = 0) -> str:
        with open(self.fleet.controller.log_path, "rb") as fh:
            fh.seek(since)
            return fh.read().decode(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 10.0, since: int = 0):
        wait_until(lambda: re.search(pattern, self.controller_log(since)), timeout, interval=0.1,
                   desc=f"controller log matching {pattern!r}")

    # ---- the controller name travels with the identity -----------------------------

    def test_controller_name_comes_from_the_identity(self):
        # setUpClass already ran four agents and the CLI without --controller-name.
        rc, doc, err = self.fleet.cli("hosts")
        self.assertEqual(rc, 0, err)
        with open(os.path.join(self.fleet.pki, "operators", "admin", "controller-name")) as fh:
            self.assertEqual(fh.read().strip(), CONTROLLER_NAME)
        # An explicit flag still wins: a wrong name fails TLS, exit 1.
        rc, _, err = self.fleet.cli("--controller-name", "other.example", "hosts", timeout=30)
        self.assertEqual(rc, 1, err)
        self.assertRegex(err, r"(?i)TLS|certificate|peer name")

    # ---- near expiry ---------------------------------------------------------------------------

    def test_certificate_near_expiry_shows_in_hosts_and_status(self):
        hosts = self.fleet.hosts()
        self.assertTrue(hosts["h3"].get("cert_expiring"), hosts["h3"])
        self.assertFalse(hosts["h1"].get("cert_expiring", False), hosts["h1"])
        days = (int(hosts["h3"]["cert_not_after_unix_ms"]) / 1000 - time.time()) / 86400
        self.assertTrue(9 < days <= 10, days)
        rc, out, err = self.fleet.cli("hosts", json_out=False)
        self.assertEqual(rc, 0, err)
        self.assertIn("certificates expiring soon", out)
        self.assertRegex(out, r"h3: agent certificate expires .*\(in 9 days\)")
        self.assertNotRegex(out, r"h1: agent certificate")
        rc, out, err = self.fleet.cli("status", "h3", json_out=False)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"certificate\s+expires .*EXPIRING SOON")
        rc, out, err = self.fleet.cli("status", "h1", json_out=False)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"certificate\s+expires ")
        self.assertNotIn("EXPIRING SOON", out)
        self.wait_log(r'certificate expiring: agent "h3"')

    # ---- revocation ------------------------------------------------------------------

    def test_revoked_operator_is_refused_after_sighup(self):
        r = self.pki("pki", "issue", "operator", "--name", "alice", "--role", "responder",
                     "--dir", self.fleet.pki)
        self.assertEqual(r.returncode, 0, r.stderr)
        alice = os.path.join(self.fleet.pki, "operators", "alice")
        rc, _, err = self.fleet.cli("hosts", identity=alice)
        self.assertEqual(rc, 0, err)
        r = self.pki("pki", "revoke", "--dir", self.fleet.pki, "--name", "alice",
                     "--reason", "laptop stolen")
        self.assertEqual(r.returncode, 0, r.stderr)
        # Not applied before the reload.
        rc, _, err = self.fleet.cli("hosts", identity=alice)
        self.assertEqual(rc, 0, err)
        since = self.sighup()
        self.wait_log(r"SIGHUP: \d+ revoked certificates", since=since)

        rc, _, err = self.fleet.cli("hosts", identity=alice, json_out=False)
        self.assertEqual(rc, 1, err)
        self.assertIn("refused by the controller", err)
        self.assertRegex(err, r'operator certificate of "alice" \(serial [0-9A-F]+\) is revoked')
        for call in (("status", "h1"), ("isolate", "h1", "--reason", "x"), ("audit",)):
            rc, _, err = self.fleet.cli(*call, identity=alice, json_out=False)
            self.assertEqual(rc, 1, f"{call}: {err}")
            self.assertIn("revoked", err)
        # The refusals are audited under the certificate's name; the admin is unaffected.
        rc, doc, err = self.fleet.cli("audit", "--limit", "20")
        self.assertEqual(rc, 0, err)
        refused = [a for a in doc["records"] if a.get("operator") == "alice" and
                   a.get("action") == "hosts"]
        self.assertTrue(any(a.get("outcome") == "denied" and "revoked" in a.get("detail", "")
                            for a in refused), refused)

    def test_revoked_agent_stream_ends_and_reconnects_are_refused(self):
        r = self.pki("pki", "revoke", "--dir", self.fleet.pki, "--name", "h2", "--kind", "agent",
                     "--reason", "INC-90 host compromised")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("revoked agent h2", r.stdout)
        time.sleep(1.0)
        self.assertTrue(self.fleet.hosts()["h2"]["online"], "nothing changes before the reload")
        since = self.sighup()
        self.wait_log(r"agent streams ended: .*h2", since=since)
        self.fleet.wait_online(["h2"], timeout=10, online=False)
        # The agent keeps retrying; every attempt is refused.
        self.wait_log(r'agent channel: refused .*agent certificate of "h2" \(serial [0-9A-F]+\) '
                      r'is revoked', timeout=30, since=since)
        self.assertIsNone(self.fleet.agents["h2"].poll(), "the agent process keeps running")
        hosts = self.fleet.hosts()
        self.assertFalse(hosts["h2"]["online"])
        for h in ("h1", "h3"):
            self.assertTrue(hosts[h]["online"], h)

    def test_replaced_agent_identity_is_used_on_the_next_connection(self):
        ident = self.fleet.agent_identity("h4")
        with open(os.path.join(ident, "tls.crt")) as fh:
            old_pem = fh.read()
        r = self.pki("pki", "issue", "agent", "--host-id", "h4", "--dir", self.fleet.pki,
                     "--replace")
        self.assertEqual(r.returncode, 0, r.stderr)
        old_serial = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=old_pem,
                                    capture_output=True, text=True,
                                    check=True).stdout.strip().split("=")[1]
        # Revoking the old certificate ends the stream; the agent reconnects with the new one.
        r = self.pki("pki", "revoke", "--dir", self.fleet.pki, "--serial", old_serial,
                     "--reason", "rotated")
        self.assertEqual(r.returncode, 0, r.stderr)
        since = self.sighup()
        self.wait_log(r"agent streams ended: .*h4", since=since)
        self.wait_log(r"host h4 disconnected", since=since)
        self.fleet.wait_online(["h4"], timeout=30)
        agent_log = self.lab.log_text(self.fleet.agents["h4"], tail=200000)
        self.assertIn("using the replaced certificate", agent_log)


    # ---- the controller's own certificate, replaced without a restart --------------------------

    def presented_serial(self) -> str:
        """The serial of the certificate the controller presents to a new TLS connection."""
        op = os.path.join(self.fleet.pki, "operators", "admin")
        r = self.lab.sh("jump", f"openssl s_client -connect {self.fleet.controller_addr} "
                        f"-cert {op}/tls.crt -key {op}/tls.key </dev/null 2>/dev/null | "
                        "openssl x509 -noout -serial", timeout=20)
        return r.stdout.strip().split("=")[-1]

    def test_replaced_controller_certificate_is_presented_after_sighup(self):
        ctl = os.path.join(self.fleet.pki, "controller")
        old_serial = self.presented_serial()
        self.assertTrue(old_serial)
        r = self.pki("pki", "issue", "controller", "--dir", self.fleet.pki, "--replace")
        self.assertEqual(r.returncode, 0, r.stderr)
        new_serial = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in",
                                     os.path.join(ctl, "tls.crt")], capture_output=True,
                                    text=True, check=True).stdout.strip().split("=")[1]
        self.assertNotEqual(new_serial, old_serial)
        # Files on disk alone change nothing until SIGHUP.
        time.sleep(1.5)
        self.assertEqual(self.presented_serial(), old_serial)
        since = self.sighup()
        self.wait_log(rf"certificate replaced: new connections get serial {new_serial}",
                      since=since)
        wait_until(lambda: self.presented_serial() == new_serial, 10, interval=0.2,
                   desc="the new certificate presented")
        # Operators and agents verify it as before: a call works, the fleet stays online.
        rc, _, err = self.fleet.cli("hosts")
        self.assertEqual(rc, 0, err)
        self.fleet.wait_online(HOSTS, timeout=30)
        # An agent certificate in its place is refused on SIGHUP; the new one stays in use.
        saved = {}
        for f in ("tls.crt", "tls.key"):
            with open(os.path.join(ctl, f)) as fh:
                saved[f] = fh.read()
        other = self.pki("pki", "issue", "agent", "--host-id", "not-a-controller", "--dir",
                         self.fleet.pki, "--out", ctl, "--replace")
        self.assertEqual(other.returncode, 0, other.stderr)
        since = self.sighup()
        self.wait_log(rf"certificate not replaced, serial {new_serial} stays in use: .*"
                      r"not a controller certificate", since=since)
        self.assertEqual(self.presented_serial(), new_serial)
        for f, text in saved.items():   # the controller's identity back
            with open(os.path.join(ctl, f), "w") as fh:
                fh.write(text)

if __name__ == "__main__":
    unittest.main(verbosity=2)
