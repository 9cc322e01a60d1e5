#!/usr/bin/env python3
"""Certificates renew themselves, in the lab, with a two-minute validity: the controller's own
certificate is two minutes long and it renews it itself (it holds the CA key); it gives
enrolled identities two minutes (`--enroll-validity 2m`); an agent whose certificate is also
two minutes long renews it over its stream while the stream stays up (`--renew-before 80s`),
and an operator enrolled with an operator token (`bulkhead enroll`) renews its own each time
the CLI finds it two thirds through. Both keep working across several renewals: the agent
stays online and can be isolated, the operator's every call succeeds. A revoked host cannot
renew: it is cut off and its certificate runs out; a revoked operator's calls and renewals
are refused. Root only; about three minutes.
"""

import json
import os
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
ENROLL_PORT = 7444
SPAN_S = 170  # long enough for three renewals of each two-minute certificate


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class RenewalTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=2)
        cls.addClassCleanup(cls.lab.close)
        cls.fleet = Fleet(cls.lab)
        subprocess.run([cls.fleet.bin("bulkhead"), "pki", "issue", "controller", "--dir",
                        cls.fleet.pki, "--valid-for", "2m", "--replace"],
                       check=True, capture_output=True, text=True, timeout=30)
        cls.fleet.start_controller(extra=[
            "--enroll-listen", f"[::]:{ENROLL_PORT}",
            "--ca-key", os.path.join(cls.fleet.pki, "ca", "ca.key"),
            "--enroll-validity", "2m"])

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()

    def short_agent(self, host: str, renew_before: str):
        """Replaces `host`'s identity with a two-minute one and starts its agent."""
        subprocess.run([self.fleet.bin("bulkhead"), "pki", "issue", "agent", "--host-id", host,
                        "--dir", self.fleet.pki, "--valid-for", "2m", "--replace"],
                       check=True, capture_output=True, text=True, timeout=30)
        self.fleet.start_agent(host, extra=["--renew-before", renew_before])

    def ops(self, *args: str):
        """`bulkhead` as the enrolled operator, with no --controller: its identity names it."""
        return self.lab.run("jump", [self.fleet.bin("bulkhead"), "--identity", self.ops_dir,
                                     "--json", *args], timeout=30)

    def test_agents_and_operators_keep_working_across_renewals_and_a_revoked_host_cannot(self):
        with open(os.path.join(self.fleet.pki, "controller", "tls.crt")) as f:
            self.controller_cert = f.read()
        self.short_agent("h1", "80s")
        # h2 would ask only 90 s in: it is revoked well before.
        self.short_agent("h2", "30s")
        self.fleet.wait_online(["h1", "h2"], timeout=30)
        self.lab.spawn("h1", [sys.executable, self.lab.TCPSTREAM, "serve", "7000"])
        wait_until(lambda: self.lab.tcp_probe("attacker", self.lab.ip4("h1"), 7000), 10,
                   desc="the service on h1 answers")

        # An operator enrolls with an operator token: its key is made on its own machine.
        rc, made, err = self.fleet.cli("tokens", "create", "--operator", "ops", "--role",
                                       "responder", "--ttl", "10m", "--reason", "CHG-2")
        self.assertEqual(rc, 0, err)
        self.assertEqual(made["token"]["operator_name"], "ops")
        self.ops_dir = os.path.join(self.lab.tmpdir, "ops-identity")
        r = self.lab.run("jump", [self.fleet.bin("bulkhead"), "--identity", self.ops_dir,
                                  "enroll", "--token", made["token_text"]], timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("enrolled as operator ops", r.stdout)
        self.assertEqual(os.stat(os.path.join(self.ops_dir, "tls.key")).st_mode & 0o777, 0o600)
        with open(os.path.join(self.ops_dir, "tls.key")) as f:
            key = f.read()
        self.assertNotIn(key.strip().splitlines()[1], self.lab.log_text(self.fleet.controller))
        # Used: a second enrollment with it is refused, nothing written.
        other = os.path.join(self.lab.tmpdir, "ops-again")
        r = self.lab.run("jump", [self.fleet.bin("bulkhead"), "--identity", other, "enroll",
                                  "--token", made["token_text"]], timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("used up", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(other, "tls.key")))

        # h2 is revoked: from now on it can neither connect nor renew.
        r = self.lab.run("ctl", [self.fleet.bin("bulkhead"), "pki", "revoke", "--dir",
                                 self.fleet.pki, "--name", "h2", "--reason", "INC-12 stolen"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.fleet.controller.send_signal(signal.SIGHUP)
        self.fleet.wait_online(["h2"], timeout=30, online=False)

        # Several renewals of both, and every operator call meanwhile succeeds.
        agent_ends, operator_certs, calls = set(), set(), 0
        deadline = time.monotonic() + SPAN_S
        while time.monotonic() < deadline:
            r = self.ops("hosts")
            self.assertEqual(r.returncode, 0, f"call {calls}: {r.stderr}")
            calls += 1
            hosts = {h["host_id"]: h for h in json.loads(r.stdout)["hosts"]}
            if hosts["h1"]["online"]:
                agent_ends.add(int(hosts["h1"]["cert_not_after_unix_ms"]))
            with open(os.path.join(self.ops_dir, "tls.crt")) as f:
                operator_certs.add(f.read())
            time.sleep(5)
        self.assertGreaterEqual(len(agent_ends), 3, "h1 renewed fewer than twice")
        self.assertGreaterEqual(len(operator_certs), 3, "the operator renewed fewer than twice")
        with open(os.path.join(self.fleet.pki, "controller", "tls.crt")) as f:
            self.assertNotEqual(f.read(), self.controller_cert)  # renewed on disk too
        with open(os.path.join(self.ops_dir, "tls.key")) as f:
            self.assertEqual(f.read(), key)  # the key never changes
        with open(os.path.join(self.fleet.agent_identity("h1"), "tls.key")) as f:
            self.assertTrue(f.read())

        # Past its first certificate's end, h1 still takes commands from the renewed operator.
        r = self.ops("isolate", "h1", "--reason", "INC-12")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(self.lab.tcp_probe("attacker", self.lab.ip4("h1"), 7000, timeout=2))
        r = self.ops("release", "h1", "--reason", "INC-12 done")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(self.lab.tcp_probe("attacker", self.lab.ip4("h1"), 7000, timeout=2))

        rc, audit, err = self.fleet.cli("audit", "--limit", "1000")
        self.assertEqual(rc, 0, err)
        renewals = [a for a in audit["records"] if a["action"] == "agent-renew"]
        self.assertTrue(any(a["operator"] == "agent:h1" and a["outcome"] == "ok"
                            for a in renewals), renewals)
        # Revoked: h2 renewed nothing and stays off; its certificate has run out by now.
        self.assertFalse(any(a["operator"] == "agent:h2" and a["outcome"] == "ok"
                             for a in renewals), renewals)
        self.assertFalse(self.fleet.hosts()["h2"]["online"])
        own = [a for a in audit["records"] if a["action"] == "controller-renew"]
        self.assertGreaterEqual(sum(a["outcome"] == "ok" for a in own), 2, own)
        ops_rows = [a for a in audit["records"] if a["action"] == "operator-renew"]
        self.assertGreaterEqual(sum(a["outcome"] == "ok" for a in ops_rows), 2, ops_rows)
        self.assertTrue(any(a["action"] == "operator-enroll" and a["target"] == "ops"
                            for a in audit["records"]))

        # A stolen laptop: the operator's certificate (the controller issued it, so the PKI
        # directory never saw it) revoked by its serial, SIGHUP; its calls and renewals stop.
        r = self.lab.run("ctl", ["openssl", "x509", "-noout", "-serial", "-in",
                                 os.path.join(self.ops_dir, "tls.crt")])
        serial = r.stdout.strip().split("=", 1)[1]
        r = self.lab.run("ctl", [self.fleet.bin("bulkhead"), "pki", "revoke", "--dir",
                                 self.fleet.pki, "--serial", serial, "--issued-by-controller",
                                 "ops", "--kind", "operator", "--reason", "INC-13 laptop stolen"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.fleet.controller.send_signal(signal.SIGHUP)
        wait_until(lambda: self.ops("hosts").returncode != 0, 15, interval=0.5,
                   desc="the revoked operator refused")
        r = self.ops("renew")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("revoked", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
