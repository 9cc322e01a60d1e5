"""Detection tools pull the trigger, in the lab with real programs:

  fail2ban      the real fail2ban 1.0.2 on h1 watches h1's real sshd; failed logins from the
                attacker trigger its ban; through the shipped action
                (packaging/integrations/fail2ban/action.d/bulkhead.conf), the agent's local
                signal socket and the shipped ssh-brute-force playbook, the attacker can no
                longer connect to h2 and h3, and its established stream to h3 is cut.
                fail2ban's unban lifts the block everywhere.
  guardrails    a signal naming the controller or a protected address does nothing but an audit
                row; `bulkhead playbook test` changes nothing; a replayed key acts once.
  bad input     an unknown source, a bad address: exit 2, one line, nothing recorded.
  rate caps     1,000 sshguard blocks within seconds, through h1's agent (bulkhead-report
                sshguard-backend, as sshguard runs it): the shipped playbook's cap (120 actions a
                minute, two per signal) lets 60 act; the other 940 are recorded as suppressed,
                the cap's start is audited once, and only 60 addresses are blocked.
  approvals     an isolation of a role=db host waits for approval: listed by `bulkhead
                approvals`, refused to the operator who reported it, approved by a second
                operator, and the host is really isolated; a second one expires as rejected
                (--approval-expiry 20s) and its host stays reachable.

Prints the delay from fail2ban's ban to the block enforced on every host. Root only.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed, read_json, wait_until  # noqa: E402
from fleet import REPO, Fleet  # noqa: E402
import tools  # noqa: E402

IS_ROOT = os.geteuid() == 0
ATTACKER = "10.77.0.66"
ACTION_CONF = os.path.join(REPO, "packaging", "integrations", "fail2ban", "action.d",
                           "bulkhead.conf")


def report(msg):
    print(f"[signals] {msg}", file=sys.stderr, flush=True)


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class SignalsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=3)
        cls.addClassCleanup(cls.lab.close)
        cls.fleet = Fleet(cls.lab)
        cls.fleet.start_controller()
        for h in ("h1", "h2", "h3"):
            cls.fleet.start_agent(h, labels={"role": "web"})
        cls.fleet.wait_online(["h1", "h2", "h3"])
        cls.servers = [cls.lab.tcp_server(h, 7000) for h in ("h2", "h3")]

    def setUp(self):
        self._stops = []

    def tearDown(self):
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception as e:  # keep stopping the others
                report(f"stop failed: {e}")
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def started(self, obj):
        self._stops.append(obj.stop)
        return obj

    def cli(self, *args, check=True):
        """(exit code, the parsed --json document, stderr); checks the exit code unless told."""
        rc, doc, err = self.fleet.cli(*args)
        if check:
            self.assertEqual(rc, 0, err)
        return rc, doc, err

    def doc(self, *args):
        return self.cli(*args)[1]

    def signals(self):
        return self.doc("signals").get("signals", [])

    def reachable(self, host):
        return self.lab.tcp_probe("attacker", self.lab.ip4(host), 7000, timeout=0.5)

    @unittest.skipUnless(os.access("/usr/sbin/sshd", os.X_OK), "openssh-server is needed")
    def test_a_fail2ban_ban_on_one_host_blocks_the_attacker_on_every_host(self):
        missing = tools.missing_tools(["fail2ban"])
        if missing:
            if os.environ.get("CI") == "true":
                self.fail("fail2ban not fetched (scripts/lab-tools.sh)")
            self.skipTest("fail2ban not fetched (scripts/lab-tools.sh)")
        self.assertTrue(self.reachable("h2") and self.reachable("h3"))
        stream = self.lab.tcp_stream("attacker", self.lab.ip4("h3"), 7000, interval_ms=5)
        self._stops.append(lambda: (stream.terminate(), stream.wait(timeout=10)))

        sshd = self.started(tools.Sshd(self.lab, "h1", port=22).start())
        f2b = tools.Fail2ban(
            self.lab, "h1", logpath=sshd.log_path, action_conf=ACTION_CONF,
            banaction="bulkhead",
            action_params={"bulkhead": self.fleet.bin("bulkhead-report"),
                           "state_dir": self.fleet.agent_state_dir("h1")},
            maxretry=3, findtime=60, bantime=120)
        self.started(f2b).start()
        for _ in range(3):
            r = tools.ssh_fail(self.lab, "attacker", self.lab.ip4("h1"), port=22)
            self.assertEqual(r.returncode, 255, r.stderr)
        wait_until(lambda: ATTACKER in f2b.banned(), 15, desc="fail2ban's ban")
        banned_at = time.monotonic()

        # Every other host refuses the attacker: the fleet-wide block of the playbook.
        wait_until(lambda: not self.reachable("h2") and not self.reachable("h3"), 10,
                   interval=0.05, desc="the attacker blocked on h2 and h3")
        report(f"fail2ban ban -> new connections refused on h2 and h3 within "
               f"{time.monotonic() - banned_at:.2f} s (fail2ban's ban seen by polling "
               "fail2ban-client, so this is an upper bound)")
        # Its established stream to h3 is dead (blocked and its connection killed).
        wait_until(lambda: read_json(stream.report_path).get("failures", 0) > 0 or
                   stream.poll() is not None, 10, desc="the attacker's stream to h3 cut")

        records = [s for s in self.signals() if s["delivered_by"] == "host:h1"]
        self.assertTrue(records, self.signals())
        ban = records[-1]
        self.assertEqual(ban["signal"]["host"], "h1")
        self.assertEqual(ban["signal"]["addresses"], [f"{ATTACKER}/32"])  # canonical
        self.assertEqual(ban["disposition"], "acted")
        self.assertEqual({a["action"] for a in ban["actions"]}, {"block", "kill-connections"})
        blocks = self.doc("blocks")["entries"]
        fleet_blocks = [b for b in blocks if b["fleet_wide"]]
        self.assertEqual([b["block"]["remote_cidr"] for b in fleet_blocks], [f"{ATTACKER}/32"],
                         blocks)
        self.assertEqual(fleet_blocks[0]["block"]["requested_by"], "playbook:ssh-brute-force")
        audit = self.doc("audit", "--limit", "200")["records"]
        self.assertTrue(any(r["action"] == "block" and r["operator"] == "playbook:ssh-brute-force"
                            and ban["signal_id"] in r["reason"] for r in audit))

        # fail2ban's unban ends the detection: the playbook lifts the block everywhere.
        f2b.unban(None, ATTACKER)
        wait_until(lambda: self.reachable("h2") and self.reachable("h3"), 10, interval=0.1,
                   desc="the block lifted after fail2ban's unban")

    def test_guardrails_keep_protected_addresses_and_replays_do_nothing(self):
        # The controller's own address: recorded and audited, never blocked.
        out = self.doc("signal", "--source", "cli", "--rule", "sshd", "--ip", self.lab.ip4("ctl"))
        self.assertEqual(out["disposition"], "no-match", out)  # ssh-brute-force takes fail2ban
        out = self.doc("signal", "--source", "sshguard", "--rule", "sshd", "--ip",
                       self.lab.ip4("ctl"), "--key", "guard-1")
        self.assertEqual(out["disposition"], "suppressed", out)
        self.assertTrue(all(a["outcome"].startswith("suppressed: protected address")
                            for a in out["actions"]), out)
        blocks = self.doc("blocks")["entries"]
        self.assertFalse([b for b in blocks if b["block"]["remote_cidr"].startswith("10.77.0.1/")])
        # The same key again acts once.
        again = self.doc("signal", "--source", "sshguard", "--rule", "sshd", "--ip",
                         self.lab.ip4("ctl"), "--key", "guard-1")
        self.assertEqual(again["disposition"], "duplicate")
        self.assertEqual(again["signal_id"], out["signal_id"])
        audit = self.doc("audit", "--limit", "200")["records"]
        self.assertTrue(any(r["action"] == "signal-action" and out["signal_id"] == r["reason"]
                            for r in audit))

        # playbook test: what it would do, nothing recorded.
        before = len(self.signals())
        path = os.path.join(self.lab.tmpdir, "signal.json")
        with open(path, "w") as f:
            json.dump({"source": "sshguard", "rule": "sshd", "addresses": ["203.0.113.9"]}, f)
        preview = self.doc("playbook", "test", path)
        self.assertEqual(preview["disposition"], "acted")
        self.assertEqual(preview["signal_id"], "")
        self.assertEqual(len(self.signals()), before)
        blocks = self.doc("blocks")["entries"]
        self.assertFalse([b for b in blocks if b["block"]["remote_cidr"] == "203.0.113.9/32"])

    def test_bad_signals_are_refused_and_change_nothing(self):
        before = len(self.signals())
        for args, needle in [
            (["--source", "splunk", "--rule", "x", "--ip", "203.0.113.1"], "unknown source"),
            (["--source", "cli", "--rule", "x", "--ip", "203.0.113.300"], "--ip"),
            (["--source", "cli", "--rule", "x"], "give --ip"),
        ]:
            rc, out, err = self.cli("signal", *args, check=False)
            self.assertEqual(rc, 2, f"{out} {err}")
            self.assertIn(needle, err)
            self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertEqual(len(self.signals()), before)


APPROVAL_PLAYBOOK = """\
name: approval-lab
description: A Wazuh alert about one of our hosts isolates it (role=db waits for approval)
match:
  source: wazuh
actions:
  - action: isolate
    scope: affected-host
    ttl: 10m
"""


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class ApprovalsTest(unittest.TestCase):
    """Its own lab: h2 and h3 are role=db (policies/guardrails/automation.yaml gates their
    isolation), a playbook isolates on a Wazuh alert, and approvals expire after 20 s."""

    EXPIRY_S = 20

    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=3)
        cls.addClassCleanup(cls.lab.close)
        policies = os.path.join(cls.lab.tmpdir, "policies")
        shutil.copytree(os.path.join(REPO, "policies"), policies)
        with open(os.path.join(policies, "playbooks", "approval-lab.yaml"), "w") as f:
            f.write(APPROVAL_PLAYBOOK)
        cls.fleet = Fleet(cls.lab, policy_dir=policies)
        cls.fleet.start_controller(extra=["--approval-expiry", f"{cls.EXPIRY_S}s"])
        cls.fleet.start_agent("h1", labels={"role": "web"})
        for h in ("h2", "h3"):
            cls.fleet.start_agent(h, labels={"role": "db"})
        cls.fleet.wait_online(["h1", "h2", "h3"])
        cls.servers = [cls.lab.tcp_server(h, 7000) for h in ("h2", "h3")]
        for name in ("alice", "bob"):
            r = subprocess.run([cls.fleet.bin("bulkhead"), "pki", "issue", "operator", "--name",
                                name, "--role", "approver", "--dir", cls.fleet.pki],
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise RuntimeError(f"pki issue operator {name}: {r.stderr}")

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def as_(self, who, *args, check=True):
        identity = os.path.join(self.fleet.pki, "operators", who)
        rc, doc, err = self.fleet.cli(*args, identity=identity)
        if check:
            self.assertEqual(rc, 0, err)
        return rc, doc, err

    def reachable(self, host):
        return self.lab.tcp_probe("attacker", self.lab.ip4(host), 7000, timeout=0.5)

    def alert(self, host, rule):
        """Alice reports a Wazuh alert about `host`; returns (signal id, approval id)."""
        _, out, _ = self.as_("alice", "signal", "--source", "wazuh", "--rule", rule, "--host",
                             host, "--severity", "high")
        self.assertEqual(out["disposition"], "awaiting-approval", out)
        self.assertEqual(len(out["actions"]), 1, out)
        self.assertTrue(out["actions"][0]["outcome"].startswith("awaiting approval apr-"), out)
        pending = self.as_("bob", "approvals")[1]["approvals"]
        mine = [a for a in pending if a["signal_id"] == out["signal_id"]]
        self.assertEqual(len(mine), 1, pending)
        a = mine[0]
        self.assertEqual((a["state"], a["requested_by"], a["playbook"]),
                         ("pending", "operator:alice", "approval-lab"), a)
        self.assertEqual((a["action"]["action"], a["action"]["target"]), ("isolate", host), a)
        return out["signal_id"], a["approval_id"]

    def test_an_approved_isolation_isolates_and_an_undecided_one_expires_as_rejected(self):
        self.assertTrue(self.reachable("h2") and self.reachable("h3"))
        signal_id, approval_id = self.alert("h3", "rootkit-h3")
        # `bulkhead signals` says what it waits for; nothing happened yet.
        _, out, _ = self.as_("bob", "signals")
        rec = [s for s in out["signals"] if s["signal_id"] == signal_id][0]
        self.assertIn(f"awaiting approval {approval_id}", rec["actions"][0]["outcome"])
        self.assertTrue(self.reachable("h3"))

        # Bad input: exit 2, one line.
        rc, _, err = self.as_("bob", "approve", approval_id, check=False)
        self.assertEqual(rc, 2, err)
        self.assertIn("--reason", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        rc, _, err = self.as_("bob", "approve", "apr-nope", "--reason", "x", check=False)
        self.assertEqual(rc, 2, err)
        self.assertIn("no approval", err)
        # The operator who reported it may not approve it.
        rc, _, err = self.as_("alice", "approve", approval_id, "--reason", "mine", check=False)
        self.assertNotEqual(rc, 0, err)
        self.assertIn("another responder must approve", err)
        self.assertTrue(self.reachable("h3"))

        # A second operator approves: h3 is really isolated.
        _, decided, _ = self.as_("bob", "approve", approval_id, "--reason", "INC-42 confirmed")
        self.assertEqual((decided["state"], decided["decided_by"]), ("approved", "bob"), decided)
        wait_until(lambda: not self.reachable("h3"), 15, interval=0.1, desc="h3 isolated")
        self.assertTrue(self.reachable("h2"))
        wait_until(lambda: self.as_("bob", "approvals", "--all")[1]["approvals"][0]["outcome"]
                   .startswith("done"), 15, desc="the approved action's outcome recorded")
        # The isolation's own audit row names the approver and the approval.
        audit = self.as_("bob", "audit", "--limit", "300")[1]["records"]
        self.assertTrue(any(r["action"] == "isolate" and r["operator"] == "bob" and
                            approval_id in r["reason"] and signal_id in r["reason"]
                            for r in audit), audit[-20:])
        self.assertTrue(any(r["action"] == "approve" and r["operator"] == "bob" and
                            r["target"] == approval_id and r["outcome"] == "ok" for r in audit))
        # Approving twice does nothing.
        rc, _, err = self.as_("admin", "approve", approval_id, "--reason", "again", check=False)
        self.assertEqual(rc, 2, err)
        self.assertIn("already approved by bob", err)

        # A second one nobody decides expires as rejected, and h2 is never isolated.
        _, second = self.alert("h2", "rootkit-h2")

        def expired():
            listed = self.as_("bob", "approvals", "--all")[1]["approvals"]
            return [a for a in listed if a["approval_id"] == second and a["state"] == "expired"]
        wait_until(expired, self.EXPIRY_S + 15, interval=0.5, desc="the second approval expired")
        self.assertTrue(self.reachable("h2"))
        self.assertNotIn(second, [a["approval_id"]
                                  for a in self.as_("bob", "approvals")[1]["approvals"]])
        audit = self.as_("bob", "audit", "--limit", "300")[1]["records"]
        self.assertTrue(any(r["action"] == "approval-expired" and r["target"] == second and
                            r["operator"] == "controller" for r in audit))
        rc, _, err = self.as_("bob", "approve", second, "--reason", "too late", check=False)
        self.assertEqual(rc, 2, err)
        self.assertIn("already expired", err)
        self.assertTrue(self.reachable("h2"))


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class RateCapTest(unittest.TestCase):
    """Its own lab, so the cap's window starts empty."""

    SIGNALS = 1000

    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=3)
        cls.addClassCleanup(cls.lab.close)
        cls.fleet = Fleet(cls.lab, log_level="info")
        cls.fleet.start_controller()
        for h in ("h1", "h2", "h3"):
            cls.fleet.start_agent(h, labels={"role": "web"})
        cls.fleet.wait_online(["h1", "h2", "h3"])

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def test_a_thousand_signals_in_a_minute_are_capped_and_the_cap_is_audited(self):
        lines = "".join(f"block 10.77.{100 + i // 250}.{1 + i % 250} 4 32\n"
                        for i in range(self.SIGNALS))
        t0 = time.monotonic()
        r = self.lab.run("h1", [self.fleet.bin("bulkhead-report"), "sshguard-backend",
                                "--state-dir", self.fleet.agent_state_dir("h1")],
                         input=lines, timeout=55)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        report(f"{self.SIGNALS} signals through h1's agent, one at a time, in {elapsed:.1f} s")
        self.assertLess(elapsed, 60, "the test needs them within the cap's minute")

        rc, doc, err = self.fleet.cli("signals", "--limit", str(self.SIGNALS + 10))
        self.assertEqual(rc, 0, err)
        mine = [s for s in doc["signals"] if s["delivered_by"] == "host:h1"]
        self.assertEqual(len(mine), self.SIGNALS)
        by = {}
        for s in mine:
            by[s["disposition"]] = by.get(s["disposition"], 0) + 1
        self.assertEqual(by, {"acted": 60, "suppressed": self.SIGNALS - 60}, by)
        suppressed = [s for s in mine if s["disposition"] == "suppressed"]
        self.assertTrue(all(a["outcome"].startswith("suppressed") and "rate cap" in a["outcome"]
                            for s in suppressed for a in s["actions"]), suppressed[0])

        rc, doc, err = self.fleet.cli("audit", "--limit", "5000")
        self.assertEqual(rc, 0, err)
        caps = [r for r in doc["records"] if r["action"] == "signal-rate-cap"]
        self.assertEqual(len(caps), 1, caps)
        rc, doc, err = self.fleet.cli("blocks")
        self.assertEqual(rc, 0, err)
        fleet_blocks = [b for b in doc["entries"] if b["fleet_wide"]]
        self.assertEqual(len(fleet_blocks), 60, len(fleet_blocks))


if __name__ == "__main__":
    unittest.main(verbosity=2)
