#!/usr/bin/env python3
"""The real detection tools in the lab (tests/lab/tools.py): fail2ban 1.0.2, the CrowdSec 1.4.6
local API and Alertmanager 0.25 from Debian 12's packages (scripts/lab-tools.sh fetches them),
each run inside a lab node with a private configuration, driven for real:

  fail2ban      failed ssh logins from the attacker to a real sshd in h1 -> the jail's action
                records `ban 10.77.0.66 0`, `unban` after bantime; a restart replays a ban
                that is still running with <restored>=1.
  CrowdSec      LAPI in ctl: cscli decisions reach a bouncer's /v1/decisions/stream polled
                from h1 (new, then deleted), a simulated decision does not, a wrong key -> 403.
  Alertmanager  in ctl: a fired alert reaches a webhook receiver in h1 as a v4 body with the
                bearer header; resolve -> status resolved, same fingerprint.

Prints the observed start-up times and delays. Root only; skipped without the tools.
"""

import datetime
import os
import re
import sys
import time
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed, wait_until  # noqa: E402
import tools  # noqa: E402

IS_ROOT = os.geteuid() == 0
ATTACKER_IP = "10.77.0.66"


def _have(path):
    return os.access(path, os.X_OK)


def report(msg):
    print(f"[detection-tools] {msg}", file=sys.stderr, flush=True)


def _duration_seconds(s):
    """Go duration string ("59.9s", "3h59m58s", "-6.2s") -> seconds."""
    sign = -1 if s.startswith("-") else 1
    total = 0.0
    for num, unit in re.findall(r"([0-9.]+)(h|ms|us|µs|ns|m|s)", s):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6,
                               "µs": 1e-6, "ns": 1e-9}[unit]
    return sign * total


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class DetectionToolsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=1)
        cls.addClassCleanup(cls.lab.close)

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

    def need(self, *pkgs):
        missing = tools.missing_tools(pkgs)
        if missing:
            msg = f"{', '.join(missing)} not fetched into {tools.TOOLS_DIR} (scripts/lab-tools.sh)"
            if os.environ.get("CI") == "true":  # install-deps.sh fetches them: a bug, not a skip
                self.fail(msg)
            self.skipTest(msg)

    # ---- fail2ban ------------------------------------------------------------------------------

    def fail2ban_with_recorder(self, logpath, bantime, maxretry=3, flush=False):
        d = os.path.join(self.lab.tmpdir, f"recorder.{bantime}.{time.monotonic_ns()}")
        os.makedirs(d)
        conf = os.path.join(d, "record.conf")
        with open(conf, "w") as f:
            f.write(tools.recording_action(flush=flush))
        record = os.path.join(d, "actions.txt")
        open(record, "w").close()
        f2b = tools.Fail2ban(self.lab, "h1", logpath=logpath, action_conf=conf,
                             banaction="record", action_params={"record": record},
                             maxretry=maxretry, findtime=60, bantime=bantime)
        return self.started(f2b), record

    @staticmethod
    def lines(path):
        with open(path) as f:
            return f.read().splitlines()

    def attack(self, sshd, n):
        """n failed ssh logins from the attacker; returns the time the last one ended."""
        for _ in range(n):
            r = tools.ssh_fail(self.lab, "attacker", self.lab.ip4("h1"), port=sshd.port)
            self.assertEqual(r.returncode, 255, r.stderr)
            self.assertIn("Permission denied", r.stderr)
        return time.monotonic()

    @unittest.skipUnless(_have("/usr/sbin/sshd") and _have("/usr/bin/ssh"),
                         "openssh-server and openssh-client are needed")
    def test_fail2ban_bans_after_failed_ssh_logins_and_unbans_after_bantime(self):
        self.need("fail2ban")
        sshd = self.started(tools.Sshd(self.lab, "h1", port=22).start())
        f2b, record = self.fail2ban_with_recorder(sshd.log_path, bantime=3)
        f2b.start()
        report(f"fail2ban-server start-up (to the jail answering status): "
               f"{f2b.startup_seconds:.2f} s")
        self.assertEqual(f2b.banned(), [])

        last = self.attack(sshd, 2)
        time.sleep(1.5)  # two failures stay under maxretry=3
        self.assertEqual(self.lines(record), [], f2b.log())
        last = self.attack(sshd, 1)
        wait_until(lambda: f"ban {ATTACKER_IP} 0" in self.lines(record), 10,
                   desc="the ban action")
        banned_at = time.monotonic()
        report(f"fail2ban ban latency after the last failed login: {banned_at - last:.2f} s "
               "(polling backend)")
        self.assertIn("Invalid user nosuchuser from 10.77.0.66", sshd.log())
        self.assertIn("sshd[", sshd.log())
        self.assertEqual(f2b.banned(), [ATTACKER_IP])

        wait_until(lambda: f"unban {ATTACKER_IP}" in self.lines(record), 15,
                   desc="the unban action")
        # bantime counts from the ticket's time (the last failure as read from the log), not
        # from the ban action
        report(f"fail2ban unban {time.monotonic() - last:.2f} s after the last failed login, "
               f"{time.monotonic() - banned_at:.2f} s after the ban action (bantime 3 s)")
        self.assertEqual(self.lines(record), [f"ban {ATTACKER_IP} 0", f"unban {ATTACKER_IP}"])
        self.assertEqual(f2b.banned(), [])

        # manual bans and unbans go through the same action
        f2b.ban(None, "10.77.0.40")
        wait_until(lambda: "ban 10.77.0.40 0" in self.lines(record), 5, desc="manual ban")
        f2b.unban(None, "10.77.0.40")
        wait_until(lambda: "unban 10.77.0.40" in self.lines(record), 5, desc="manual unban")

    @unittest.skipUnless(_have("/usr/sbin/sshd") and _have("/usr/bin/ssh"),
                         "openssh-server and openssh-client are needed")
    def test_fail2ban_restart_replays_the_ban_as_restored(self):
        self.need("fail2ban")
        sshd = self.started(tools.Sshd(self.lab, "h1", port=2222).start())
        f2b, record = self.fail2ban_with_recorder(sshd.log_path, bantime=120)
        f2b.start()
        self.attack(sshd, 3)
        wait_until(lambda: f"ban {ATTACKER_IP} 0" in self.lines(record), 10,
                   desc="the ban action")

        t0 = time.monotonic()
        f2b.stop()
        stopped = self.lines(record)
        f2b.start()
        wait_until(lambda: f"ban {ATTACKER_IP} 1" in self.lines(record), 10,
                   desc="the restored ban")
        report(f"fail2ban restart: replayed ban after {time.monotonic() - t0:.2f} s; "
               f"action calls: {self.lines(record)}")
        # stopping the jail unbans (actionunban) what it banned; the restart bans it again,
        # tagged restored=1
        self.assertEqual(stopped, [f"ban {ATTACKER_IP} 0", f"unban {ATTACKER_IP}"])
        self.assertEqual(self.lines(record), stopped + [f"ban {ATTACKER_IP} 1"])
        self.assertEqual(f2b.banned(), [ATTACKER_IP])
        # the db keeps the log position: the old failures are not read (and banned) again
        self.assertRegex(f2b.log(), r"Added logfile: .* \(pos = [1-9]")
        time.sleep(2)
        self.assertEqual(self.lines(record).count(f"ban {ATTACKER_IP} 0"), 1, f2b.log())

    def test_fail2ban_actionflush_replaces_the_unbans_at_stop(self):
        """An action with actionflush gets one `flush` instead of an unban per address when
        the jail stops (and on `unban --all`); the restart still replays with restored=1."""
        self.need("fail2ban")
        log = os.path.join(self.lab.tmpdir, "quiet.log")
        open(log, "w").close()
        f2b, record = self.fail2ban_with_recorder(log, bantime=120, flush=True)
        f2b.start()
        f2b.ban(None, ATTACKER_IP)
        wait_until(lambda: self.lines(record), 5, desc="the ban action")
        f2b.stop()
        self.assertEqual(self.lines(record), [f"ban {ATTACKER_IP} 0", "flush"])
        f2b.start()
        wait_until(lambda: len(self.lines(record)) >= 3, 10, desc="the restored ban")
        self.assertEqual(self.lines(record)[2:], [f"ban {ATTACKER_IP} 1"])
        f2b.client("unban", "--all")
        self.assertEqual(self.lines(record)[3:], ["flush"])
        self.assertEqual(f2b.banned(), [])

    # ---- CrowdSec ------------------------------------------------------------------------------

    def test_crowdsec_lapi_decisions_reach_the_bouncer_stream(self):
        self.need("crowdsec")
        cs = self.started(tools.CrowdSec(self.lab, "ctl", port=8080))
        cs.start()
        report(f"crowdsec LAPI start-up (to 'listening'): {cs.startup_seconds:.2f} s")
        key = cs.add_bouncer("bulkhead-lab", "0123456789abcdef0123456789abcdef")
        stream = cs.url + "/v1/decisions/stream"
        hdr = {"X-Api-Key": key}

        st, body = tools.http(self.lab, "h1", "GET", stream + "?startup=true", headers=hdr)
        self.assertEqual((st, body), (200, {"new": None, "deleted": None}))

        t0 = time.monotonic()
        cs.add_decision(ip=ATTACKER_IP, duration="1m")
        cs.add_decision(range="10.77.9.0/24", duration="1m")
        report(f"cscli decisions add x2: {time.monotonic() - t0:.2f} s")
        st, body = tools.http(self.lab, "h1", "GET", stream, headers=hdr)
        self.assertEqual(st, 200)
        self.assertIsNone(body["deleted"])
        new = {d["value"]: d for d in body["new"]}
        self.assertEqual(sorted(new), ["10.77.0.66", "10.77.9.0/24"])
        d = new[ATTACKER_IP]
        self.assertEqual((d["scope"], d["type"], d["origin"]), ("Ip", "ban", "cscli"))
        self.assertTrue(0 < _duration_seconds(d["duration"]) <= 60, d)
        self.assertIsInstance(d["id"], int)
        self.assertIn("scenario", d)
        self.assertEqual(new["10.77.9.0/24"]["scope"], "Range")
        # the cursor moved: nothing new on the next poll
        self.assertEqual(tools.http(self.lab, "h1", "GET", stream, headers=hdr),
                         (200, {"new": None, "deleted": None}))

        # a simulated decision: stored and listed, never streamed
        cs.add_simulated_decision("10.77.0.67", duration="1m")
        listed = {x["value"]: x for x in cs.decisions_list()}
        self.assertTrue(listed["10.77.0.67"]["simulated"], listed)
        self.assertFalse(listed[ATTACKER_IP]["simulated"], listed)
        self.assertEqual(tools.http(self.lab, "h1", "GET", stream, headers=hdr),
                         (200, {"new": None, "deleted": None}))
        key2 = cs.add_bouncer("bulkhead-lab-2")
        st, body = tools.http(self.lab, "h1", "GET", stream + "?startup=true",
                              headers={"X-Api-Key": key2})
        self.assertEqual(sorted(x["value"] for x in body["new"]),
                         ["10.77.0.66", "10.77.9.0/24"])
        st, body = tools.http(self.lab, "h1", "GET", cs.url + "/v1/decisions?ip=10.77.0.67",
                              headers=hdr)
        self.assertEqual((st, body), (200, None))

        cs.delete_decisions(ip=ATTACKER_IP)
        st, body = tools.http(self.lab, "h1", "GET", stream, headers=hdr)
        self.assertEqual(st, 200)
        self.assertIsNone(body["new"])
        self.assertEqual([x["value"] for x in body["deleted"]], [ATTACKER_IP])
        self.assertLess(_duration_seconds(body["deleted"][0]["duration"]), 0, body)
        # startup=true also lists what was deleted (until the db flushes it)
        st, body = tools.http(self.lab, "h1", "GET", stream + "?startup=true", headers=hdr)
        self.assertEqual([x["value"] for x in body["new"]], ["10.77.9.0/24"])
        self.assertEqual([x["value"] for x in body["deleted"]], [ATTACKER_IP])

        st, body = tools.http(self.lab, "h1", "GET", stream + "?startup=true",
                              headers={"X-Api-Key": "not-a-key"})
        self.assertEqual(st, 403, body)
        st, body = tools.http(self.lab, "h1", "GET", stream + "?startup=true")
        self.assertEqual(st, 403, body)

    # ---- Alertmanager --------------------------------------------------------------------------

    def test_alertmanager_delivers_firing_and_resolved_to_a_webhook(self):
        self.need("prometheus-alertmanager")
        rx = self.started(tools.WebhookReceiver(self.lab, "h1", 9099).start())
        am = self.started(tools.Alertmanager(
            self.lab, "ctl", webhook_url=f"http://{self.lab.ip4('h1')}:9099/alertmanager",
            bearer="lab-s3cret", group_wait="0s", group_interval="1s"))
        am.start()
        report(f"alertmanager start-up (to /-/ready): {am.startup_seconds:.2f} s")
        labels = {"alertname": "SSHBruteForce", "instance": "h1", "src_ip": ATTACKER_IP}

        t0 = time.time()
        am.fire(labels, {"summary": "failed logins from 10.77.0.66"})
        r1 = rx.wait(1, timeout=15)
        received = datetime.datetime.fromisoformat(
            r1["body"]["alerts"][0]["startsAt"][:26].rstrip("Z")).replace(
            tzinfo=datetime.timezone.utc).timestamp()
        report(f"alertmanager firing delivery delay: {r1['t'] - t0:.2f} s from before the "
               f"POST, {r1['t'] - received:.2f} s from its startsAt (group_wait 0s)")
        self.assertEqual(r1["method"], "POST")
        self.assertEqual(r1["path"], "/alertmanager")
        self.assertEqual(r1["headers"].get("Authorization"), "Bearer lab-s3cret")
        b = r1["body"]
        self.assertEqual((b["version"], b["status"], b["receiver"]), ("4", "firing", "hook"))
        for k in ("groupKey", "truncatedAlerts", "groupLabels", "commonLabels",
                  "commonAnnotations", "externalURL", "alerts"):
            self.assertIn(k, b)
        self.assertEqual(len(b["alerts"]), 1)
        a1 = b["alerts"][0]
        self.assertEqual(a1["status"], "firing")
        self.assertEqual(a1["labels"], labels)
        self.assertEqual(a1["annotations"], {"summary": "failed logins from 10.77.0.66"})
        self.assertEqual(a1["endsAt"], "0001-01-01T00:00:00Z")
        self.assertTrue(a1["fingerprint"])

        t1 = time.time()
        am.resolve(labels)
        r2 = rx.wait(2, timeout=15)
        report(f"alertmanager resolved delivery delay: {r2['t'] - t1:.2f} s "
               "(group_interval 1s)")
        b2 = r2["body"]
        self.assertEqual(b2["status"], "resolved")
        a2 = b2["alerts"][0]
        self.assertEqual(a2["status"], "resolved")
        self.assertEqual(a2["fingerprint"], a1["fingerprint"])
        self.assertNotEqual(a2["endsAt"], "0001-01-01T00:00:00Z")
        self.assertEqual(r2["headers"].get("Authorization"), "Bearer lab-s3cret")
        time.sleep(1.5)
        self.assertEqual(len(rx.requests()), 2)  # nothing repeated within repeat_interval


if __name__ == "__main__":
    unittest.main(verbosity=2)
