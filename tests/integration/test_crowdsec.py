#!/usr/bin/env python3
"""The CrowdSec bouncer (the controller polling a CrowdSec local API) against the REAL CrowdSec 1.4.6 local API
(tests/lab/tools.py, fetched by scripts/lab-tools.sh), in the lab:

  the LAPI runs in ctl (`crowdsec -no-cs`, private config); `cscli bouncers add` gives the key;
  the controller polls it (--crowdsec-lapi, --crowdsec-key-file, --crowdsec-interval 1s) and the
  shipped playbook policies/playbooks/crowdsec.yaml blocks fleet-wide for the decision's
  duration:
  - `cscli decisions add --ip 10.77.0.66 --duration 1m`: the attacker can no longer open a TCP
    connection to h1, h2 or h3 (real probes from the attacker node), within the poll interval;
    `cscli decisions delete --ip` lifts it everywhere;
  - `--range 10.77.0.64/28` likewise;
  - a simulated decision (pushed as an agent would, see CrowdSec.add_simulated_decision) does
    nothing: 1.4.6 keeps it out of the stream;
  - a decision deleted while the controller is down is unblocked at its restart (the startup
    answer's old deletions unblock nothing and fail nothing);
  - a deleted bouncer (403) is logged once, the controller keeps polling and resumes when the
    key is back;
  - a bouncer key file readable by others: the controller refuses to start, naming it.

Measures decision added -> every host refusing the attacker over several runs and prints
min / median / max (from cscli's exit; the decision is in the LAPI's database by then).
Root only.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed, wait_until  # noqa: E402
from fleet import Fleet  # noqa: E402
import tools  # noqa: E402

IS_ROOT = os.geteuid() == 0
ATTACKER = "10.77.0.66"
HOSTS = ("h1", "h2", "h3")
PORT = 7000
INTERVAL_S = 1.0
RUNS = int(os.environ.get("BULKHEAD_CROWDSEC_RUNS", "7"))

# Runs in the attacker node: one thread per target, each opening a TCP connection every 10 ms
# (0.2 s connect timeout) until one fails; prints {"ready": t} and then, per target, the
# CLOCK_MONOTONIC time the first failing attempt started (its SYN was dropped: the block was in
# force by then) and the previous successful attempt's start (not yet in force then).
WATCHER = r"""
import json, socket, sys, threading, time
targets, port, limit = sys.argv[1].split(","), int(sys.argv[2]), float(sys.argv[3])
out = {}
def watch(t):
    last_ok = None
    end = time.monotonic() + limit
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            with socket.create_connection((t, port), timeout=0.2):
                pass
            last_ok = t0
            time.sleep(0.01)
        except OSError:
            out[t] = {"failed": t0, "last_ok": last_ok}
            return
threads = [threading.Thread(target=watch, args=(t,)) for t in targets]
for th in threads: th.start()
print(json.dumps({"ready": time.monotonic()}), flush=True)
for th in threads: th.join()
print(json.dumps(out), flush=True)
"""


def report(msg):
    print(f"[crowdsec] {msg}", file=sys.stderr, flush=True)


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class CrowdSecBouncerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        missing = tools.missing_tools(["crowdsec"])
        if missing:
            if os.environ.get("CI") == "true":
                raise AssertionError("crowdsec not fetched (scripts/lab-tools.sh)")
            raise unittest.SkipTest("crowdsec not fetched into "
                                    f"{tools.TOOLS_DIR} (scripts/lab-tools.sh)")
        cls.lab = Lab(hosts=3)
        cls.addClassCleanup(cls.lab.close)
        cls.cs = tools.CrowdSec(cls.lab, "ctl", port=8080)
        cls.cs.start()
        cls.addClassCleanup(cls.cs.stop)
        cls.key = cls.cs.add_bouncer("bulkhead")
        cls.key_file = os.path.join(cls.lab.tmpdir, "crowdsec-bouncer.key")
        fd = os.open(cls.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(cls.key + "\n")
        cls.fleet = Fleet(cls.lab)
        cls.controller_extra = [
            "--crowdsec-lapi", cls.cs.url, "--crowdsec-key-file", cls.key_file,
            "--crowdsec-interval", f"{int(INTERVAL_S * 1000)}ms"]
        cls.fleet.start_controller(extra=cls.controller_extra)
        for h in HOSTS:
            cls.fleet.start_agent(h, labels={"role": "web"})
        cls.fleet.wait_online(list(HOSTS))
        cls.servers = [cls.lab.tcp_server(h, PORT) for h in HOSTS]

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def doc(self, *args):
        rc, doc, err = self.fleet.cli(*args)
        self.assertEqual(rc, 0, err)
        return doc

    def reachable(self, host):
        return self.lab.tcp_probe("attacker", self.lab.ip4(host), PORT, timeout=0.5)

    def all_reachable(self):
        return all(self.reachable(h) for h in HOSTS)

    def none_reachable(self):
        return not any(self.reachable(h) for h in HOSTS)

    def crowdsec_signals(self):
        return [s for s in self.doc("signals").get("signals", [])
                if s["delivered_by"].startswith("crowdsec:")]

    def timed(self, action, limit=15.0):
        """Runs action() (a cscli call) while the watcher probes every host from the attacker.
        Returns (seconds from action()'s return to the last host refusing, the same from
        before action() started, the watcher's lower bound from action()'s return)."""
        targets = ",".join(self.lab.ip4(h) for h in HOSTS)
        p = self.lab._popen("attacker", [sys.executable, "-c", WATCHER, targets, str(PORT),
                                         str(limit)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
        first = json.loads(p.stdout.readline())
        self.assertIn("ready", first)
        time.sleep(0.1)
        t_start = time.monotonic()
        action()
        t_done = time.monotonic()
        out, err = p.communicate(timeout=limit + 10)
        result = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(len(result), len(HOSTS), f"not every host refused the attacker: "
                         f"{result} {err}")
        last = max(r["failed"] for r in result.values())
        lower = max((r["last_ok"] or t_start) for r in result.values())
        return last - t_done, last - t_start, lower - t_done

    # ---- the tests (in name order) ---------------------------------------------------------

    def test_a_an_ip_decision_blocks_every_host_and_its_deletion_unblocks(self):
        self.assertTrue(self.all_reachable())
        after, before, _ = self.timed(
            lambda: self.cs.add_decision(ip=ATTACKER, duration="1m"))
        report(f"cscli decisions add --ip -> h1, h2, h3 refuse the attacker: {after * 1000:.0f} ms "
               f"after cscli returned ({before * 1000:.0f} ms after it started; poll interval "
               f"{INTERVAL_S * 1000:.0f} ms)")
        self.assertLess(after, INTERVAL_S + 1.0)
        self.assertTrue(self.none_reachable())

        sig = self.crowdsec_signals()[0]
        self.assertEqual(sig["delivered_by"], f"crowdsec:{self.lab.ip4('ctl')}:8080")
        self.assertEqual(sig["signal"]["source"], "crowdsec")
        self.assertEqual(sig["signal"]["addresses"], [f"{ATTACKER}/32"])
        self.assertTrue(50 <= sig["signal"]["ttl_seconds"] <= 60, sig)
        self.assertTrue(sig["signal"]["idempotency_key"].startswith("crowdsec:"), sig)
        self.assertEqual(sig["disposition"], "acted", sig)
        blocks = [b for b in self.doc("blocks")["entries"] if b["fleet_wide"]]
        self.assertEqual([b["block"]["remote_cidr"] for b in blocks], [f"{ATTACKER}/32"])
        self.assertEqual(blocks[0]["block"]["requested_by"], "playbook:crowdsec-ban")
        self.assertTrue(30000 < int(blocks[0]["remaining_ms"]) <= 60000, blocks)

        t0 = time.monotonic()
        self.cs.delete_decisions(ip=ATTACKER)
        wait_until(self.all_reachable, 10, interval=0.05, desc="unblocked after the deletion")
        report(f"cscli decisions delete -> every host reachable again within "
               f"{time.monotonic() - t0:.2f} s (probe-bound upper limit)")
        sig = self.crowdsec_signals()[0]
        self.assertTrue(sig["signal"].get("resolved"), sig)
        self.assertEqual(sig["signal"]["addresses"], [f"{ATTACKER}/32"])
        self.assertEqual([b for b in self.doc("blocks")["entries"] if b["fleet_wide"]], [])

    def test_b_a_range_decision_blocks_too(self):
        self.assertTrue(self.all_reachable())
        after, _, _ = self.timed(
            lambda: self.cs.add_decision(range="10.77.0.64/28", duration="1m"))
        report(f"cscli decisions add --range -> every host refusing: {after * 1000:.0f} ms")
        sig = self.crowdsec_signals()[0]
        self.assertEqual(sig["signal"]["addresses"], ["10.77.0.64/28"])
        self.assertEqual(sig["disposition"], "acted", sig)
        self.cs.delete_decisions(range="10.77.0.64/28")
        wait_until(self.all_reachable, 10, interval=0.05, desc="range unblocked")
        self.assertTrue(self.crowdsec_signals()[0]["signal"].get("resolved"))

    def test_c_a_simulated_decision_does_nothing(self):
        before = len(self.crowdsec_signals())
        self.cs.add_simulated_decision(ATTACKER, duration="1m")
        listed = [d for d in self.cs.decisions_list() if d["value"] == ATTACKER]
        self.assertTrue(listed and all(d["simulated"] for d in listed), listed)
        time.sleep(3 * INTERVAL_S)
        self.assertTrue(self.all_reachable())
        self.assertEqual(len(self.crowdsec_signals()), before)
        self.cs.delete_decisions(ip=ATTACKER)  # leave nothing behind for the next test

    def test_d_decision_to_every_host_enforcing(self):
        """Several runs of add -> all refusing; prints min / median / max."""
        wait_until(self.all_reachable, 10, interval=0.1, desc="reachable before the runs")
        afters, befores = [], []
        for i in range(RUNS):
            after, before, _ = self.timed(
                lambda: self.cs.add_decision(ip=ATTACKER, duration="1m"))
            afters.append(after)
            befores.append(before)
            self.cs.delete_decisions(ip=ATTACKER)
            wait_until(self.all_reachable, 10, interval=0.05, desc=f"run {i}: unblocked")
            time.sleep(0.137 * (i + 1) % INTERVAL_S)  # spread the phase against the poll

        def fig(xs):
            return (f"min {min(xs) * 1000:.0f} / median {statistics.median(xs) * 1000:.0f} / "
                    f"max {max(xs) * 1000:.0f} ms")
        report(f"decision -> h1, h2, h3 all refusing the attacker, {RUNS} runs, poll interval "
               f"{INTERVAL_S * 1000:.0f} ms: from cscli's exit {fig(afters)}; from cscli's "
               f"start {fig(befores)}")
        self.assertLess(max(afters), INTERVAL_S + 0.5)

    def test_e_a_deletion_while_the_controller_is_down_unblocks_at_its_restart(self):
        wait_until(self.all_reachable, 10, interval=0.1, desc="reachable before")
        self.cs.add_decision(ip=ATTACKER, duration="10m")
        wait_until(self.none_reachable, 5, interval=0.05, desc="blocked")
        self.fleet.kill_controller(signal.SIGTERM)
        self.cs.delete_decisions(ip=ATTACKER)
        time.sleep(2 * INTERVAL_S)
        self.assertTrue(self.none_reachable())  # the agents keep the block meanwhile
        self.fleet.start_controller(extra=self.controller_extra)
        self.fleet.wait_online(list(HOSTS))
        # The startup answer lists it (and every earlier decision) as deleted: it is unblocked;
        # the earlier ones were already passed on (duplicates) and unblock nothing.
        wait_until(self.all_reachable, 10, interval=0.1, desc="unblocked after the restart")
        sig = self.crowdsec_signals()[0]
        self.assertTrue(sig["signal"].get("resolved"), sig)
        self.assertEqual(sig["disposition"], "acted", sig)
        log = self.lab.log_text(self.fleet.controller)
        self.assertNotIn("failed", " ".join(a.get("outcome", "") for s in
                                             self.crowdsec_signals() for a in s.get("actions", [])))
        self.assertNotIn("[error]", log)

    def test_f_a_refused_key_is_logged_once_and_polling_resumes(self):
        wait_until(self.all_reachable, 10, interval=0.1, desc="reachable before")
        self.cs.cscli("bouncers", "delete", "bulkhead")
        time.sleep(4 * INTERVAL_S)
        log = self.lab.log_text(self.fleet.controller)
        self.assertEqual(log.count("HTTP 403"), 1, log[-3000:])
        self.assertIsNone(self.fleet.controller.poll())  # still running
        self.cs.add_bouncer("bulkhead", self.key)  # the same key again
        self.cs.add_decision(ip=ATTACKER, duration="1m")
        wait_until(self.none_reachable, 15, interval=0.1, desc="blocked once the key works")
        self.assertIn("polling again", self.lab.log_text(self.fleet.controller))
        self.cs.delete_decisions(ip=ATTACKER)
        wait_until(self.all_reachable, 10, interval=0.1, desc="unblocked")

    def test_g_a_key_file_others_can_read_is_refused(self):
        path = os.path.join(self.lab.tmpdir, "open.key")
        with open(path, "w") as f:
            f.write("k\n")
        os.chmod(path, 0o644)
        r = subprocess.run([self.fleet.bin("bulkhead-controller"), "--listen", "127.0.0.1:1",
                            "--identity", "/nonexistent", "--data-dir", "/nonexistent",
                            "--crowdsec-lapi", "http://127.0.0.1:8080",
                            "--crowdsec-key-file", path],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--crowdsec-key-file", r.stderr)
        self.assertIn("accessible to other users", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
