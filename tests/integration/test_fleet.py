#!/usr/bin/env python3
"""The fleet in the lab: agents dial out over mTLS, show up online with their labels, go offline
when they die, come back after a controller kill -9, and nobody without a valid certificate
gets in. Root only.
"""

import os
import socket
import ssl
import subprocess
import sys
import time
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed, wait_until  # noqa: E402
from fleet import CONTROLLER_PORT, Fleet  # noqa: E402

IS_ROOT = os.geteuid() == 0
LABELS = {"h1": {"role": "web", "env": "lab"}, "h2": {"role": "db", "env": "lab"},
          "h3": {"role": "web", "env": "staging"}}


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class FleetTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=3)
        cls.addClassCleanup(cls.lab.close)
        cls.fleet = Fleet(cls.lab, heartbeat_interval="500ms", heartbeat_timeout="2s")
        cls.fleet.start_controller()
        for h, labels in LABELS.items():
            cls.fleet.start_agent(h, labels)
        cls.fleet.wait_online(LABELS, timeout=20)

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def ensure_all_online(self):
        for h, labels in LABELS.items():
            p = self.fleet.agents.get(h)
            if p is None or p.poll() is not None:
                self.fleet.start_agent(h, labels)
        if self.fleet.controller.poll() is not None:
            self.fleet.start_controller()
        self.fleet.wait_online(LABELS, timeout=20)

    # ---- registry ------------------------------------------------------------------------------

    def test_agents_online_with_labels_and_facts(self):
        self.ensure_all_online()
        hosts = self.fleet.hosts()
        for h, labels in LABELS.items():
            self.assertTrue(hosts[h]["online"], h)
            self.assertEqual(hosts[h]["labels"], labels)
            self.assertEqual(hosts[h]["hostname"], h)   # the lab sets each node's hostname
            self.assertIn(f"{self.lab.ip4(h)}/16", hosts[h]["addresses"])
            self.assertTrue(hosts[h]["agent_version"])
        rc, doc, err = self.fleet.cli("hosts", "--selector", "role=web")
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(x["host_id"] for x in doc["hosts"]), ["h1", "h3"])
        rc, doc, err = self.fleet.cli("status", "h2")
        self.assertEqual(rc, 0, err)
        self.assertEqual(doc["host"]["host_id"], "h2")
        # table output for people
        rc, out, err = self.fleet.cli("hosts", json_out=False)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"h1\s+online")

    def test_killed_agent_goes_offline_within_heartbeat_timeout(self):
        self.ensure_all_online()
        t0 = time.monotonic()
        self.fleet.kill_agent("h3")
        self.fleet.wait_online(["h3"], timeout=2.0 + 3.0, online=False)
        elapsed = time.monotonic() - t0
        print(f"h3 offline {elapsed:.2f}s after kill -9 (heartbeat timeout 2s)", file=sys.stderr)
        hosts = self.fleet.hosts()
        self.assertTrue(hosts["h1"]["online"] and hosts["h2"]["online"])
        self.fleet.start_agent("h3", LABELS["h3"])
        self.fleet.wait_online(["h3"], timeout=15)

    def test_controller_kill9_restart_keeps_registry_and_audit(self):
        self.ensure_all_online()
        rc, before, err = self.fleet.cli("audit", "--limit", "1000")
        self.assertEqual(rc, 0, err)
        ids_before = [r["id"] for r in before["records"]]
        self.assertTrue(ids_before, "operator calls are audited")
        self.fleet.kill_controller()
        self.fleet.start_controller()
        # agents reconnect by themselves (jittered backoff)
        self.fleet.wait_online(LABELS, timeout=20)
        rc, after, err = self.fleet.cli("audit", "--limit", "1000")
        self.assertEqual(rc, 0, err)
        ids_after = [r["id"] for r in after["records"]]
        for i in ids_before:
            self.assertIn(i, ids_after, "audit rows survive kill -9")
        actions = {r["action"] for r in after["records"]}
        self.assertIn("hosts", actions)
        ops = {r["operator"] for r in after["records"]}
        self.assertIn("admin", ops)
        rc, out, err = self.fleet.cli("audit", "--verify", json_out=False)
        self.assertEqual(rc, 0, err + out)

    # ---- protocol versions ---------------------------------------------------------------------

    def test_agent_protocol_versions_older_minor_works_other_major_refused(self):
        self.ensure_all_online()
        self.fleet.kill_agent("h3")
        self.fleet.wait_online(["h3"], timeout=10, online=False)
        # An agent of another major: refused with the reason, never listed online, retried.
        p = self.fleet.start_agent("h3", LABELS["h3"], extra=["--test-protocol", "2.0"])
        reason = "speaks protocol 2.0, this controller speaks 1."
        wait_until(lambda: reason in self.lab.log_text(p), 15, interval=0.2,
                   desc="the refusal in the agent's log")
        self.assertFalse(self.fleet.hosts()["h3"]["online"])
        status = self.lab.run("h3", [self.fleet.bin("bulkhead-agent"), "status", "--state-dir",
                                     self.fleet.agent_state_dir("h3")], timeout=20)
        self.assertIn("upgrade this controller", status.stdout + status.stderr)
        self.fleet.kill_agent("h3")
        # An agent one minor older (1.0, the releases before the exchange): works, contains.
        self.fleet.start_agent("h3", LABELS["h3"], extra=["--test-protocol", "1.0"])
        self.fleet.wait_online(["h3"], timeout=20)
        rc, doc, err = self.fleet.cli("isolate", "h3", "--reason", "protocol 1.0 agent")
        self.assertEqual(rc, 0, f"{err} {doc}")
        rc, doc, err = self.fleet.cli("release", "h3", "--reason", "protocol 1.0 agent")
        self.assertEqual(rc, 0, f"{err} {doc}")
        self.fleet.kill_agent("h3")
        self.ensure_all_online()

    # ---- identities ----------------------------------------------------------------------------

    def test_agent_from_another_ca_is_refused_and_not_listed(self):
        self.ensure_all_online()
        other = os.path.join(self.lab.tmpdir, "other-pki")
        subprocess.run([self.fleet.bin("bulkhead"), "pki", "init", "--dir", other],
                       check=True, capture_output=True, timeout=30)
        # same host id as a real host, and a new one: neither may get in
        for hid in ("h1", "intruder"):
            ident = self.fleet.issue_agent(hid, pki=other)
            state = os.path.join(self.lab.tmpdir, f"rogue-{hid}")
            p = self.lab.spawn("attacker", [
                self.fleet.bin("bulkhead-agent"), "--controller", self.fleet.controller_addr,
                "--identity", ident, "--state-dir", state, "--log-level", "debug"],
                label=f"rogue-agent-{hid}")
            time.sleep(2.0)
            hosts = self.fleet.hosts()
            self.assertNotIn("intruder", hosts)
            self.assertEqual(hosts["h1"]["addresses"][0].split("/")[0], self.lab.ip4("h1"),
                             "the real h1 stays registered with its own facts")
            p.kill()
            p.wait(timeout=10)

    def tls_probe(self, with_client_cert: bool) -> str:
        """Raw TLS from the attacker: returns 'refused' if the controller rejects the client."""
        code = (
            "import socket, ssl, sys\n"
            "ctx = ssl.create_default_context(cafile=sys.argv[1])\n"
            "ctx.check_hostname = False\n"
            "if len(sys.argv) > 3: ctx.load_cert_chain(sys.argv[3] + '/tls.crt', sys.argv[3] + '/tls.key')\n"
            "ctx.set_alpn_protocols(['h2'])\n"
            "s = socket.create_connection((sys.argv[2], %d), timeout=5)\n"
            "try:\n"
            "    t = ctx.wrap_socket(s)\n"
            "    t.sendall(b'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n' + bytes([0,0,0,4,0,0,0,0,0]))\n"
            "    data = t.recv(100)\n"
            "    print('accepted' if data else 'refused')\n"
            "except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:\n"
            "    print('refused', e)\n" % CONTROLLER_PORT)
        argv = ["python3", "-c", code, os.path.join(self.fleet.pki, "ca", "ca.crt"),
                self.lab.ip4("ctl")]
        if with_client_cert:
            argv.append(self.fleet.admin_identity)
        r = self.lab.run("attacker", argv, timeout=20)
        return r.stdout.strip()

    def test_client_without_certificate_is_refused(self):
        self.ensure_all_online()
        self.assertTrue(self.tls_probe(with_client_cert=False).startswith("refused"))
        self.assertTrue(self.tls_probe(with_client_cert=True).startswith("accepted"),
                        "the probe itself works with a valid certificate")

    def test_operator_from_another_ca_or_wrong_kind_is_refused(self):
        self.ensure_all_online()
        other = os.path.join(self.lab.tmpdir, "other-pki-op")
        subprocess.run([self.fleet.bin("bulkhead"), "pki", "init", "--dir", other],
                       check=True, capture_output=True, timeout=30)
        rc, out, err = self.fleet.cli("hosts", identity=os.path.join(other, "operators", "admin"))
        self.assertEqual(rc, 1, err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertNotIn("h1", str(out))

    # ---- bad input -----------------------------------------------------------------------------

    def assert_one_line_exit(self, argv, code, node="h1", needle=None):
        r = self.lab.run(node, argv, timeout=20)
        self.assertEqual(r.returncode, code, f"{argv}: {r.stderr}")
        lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, f"{argv}: one clear line expected, got: {r.stderr}")
        self.assertNotIn("terminate called", r.stderr)
        if needle:
            self.assertIn(needle, r.stderr)

    def test_bad_input_gives_one_clear_line(self):
        f = self.fleet
        ctl = f.controller_argv()
        self.assert_one_line_exit(ctl + ["--bogus"], 2, node="ctl", needle="--bogus")
        bad_ident = [a if a != os.path.join(f.pki, "controller") else "/nonexistent/id"
                     for a in ctl]
        self.assert_one_line_exit(bad_ident, 2, node="ctl", needle="/nonexistent/id")
        unreadable = os.path.join(self.lab.tmpdir, "not-a-dir")
        with open(unreadable, "w") as fh:
            fh.write("x")
        bad_data = [a if a != f.data_dir else unreadable for a in ctl]
        self.assert_one_line_exit(bad_data, 2, node="ctl", needle="not-a-dir")
        agent = f.agent_argv("h1")
        self.assert_one_line_exit(agent + ["--bogus"], 2, needle="--bogus")
        self.assert_one_line_exit(agent + ["--label", "oops"], 2, needle="--label")
        missing = f.agent_argv("h1", identity="/nonexistent/agent-id")
        self.assert_one_line_exit(missing, 2, needle="/nonexistent/agent-id")
        # CLI: unreachable controller -> 1; unknown host -> 2
        r = self.lab.run("jump", [f.bin("bulkhead"), "--controller", "10.77.0.99:7443",
                                  "--identity", f.admin_identity, "--timeout", "2s", "hosts"],
                         timeout=20)
        self.assertEqual(r.returncode, 1, r.stderr)
        rc, out, err = f.cli("status", "no-such-host")
        self.assertEqual(rc, 2, err)
        self.assertIn("no-such-host", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
