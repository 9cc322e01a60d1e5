#!/usr/bin/env python3
"""The controller on PostgreSQL (`--store postgresql://...`), in the lab. PostgreSQL 15 runs in
node ctl from the lab-tools cache (tests/lab/postgres.py): a unix socket only, as nobody.

  Without the audit key file the controller refuses to start (it would make a key the other
  controllers do not have). With it, controller A serves h1: isolate h1, the attacker's probe
  fails. PostgreSQL crashes (every server process SIGKILLed) and restarts under the running
  controller: the next call finds the connection lost before doing anything, reconnects and
  works (release h1). Controller B (another port and data directory, the same database and key)
  starts as a standby and does not listen. h1 is isolated through A for 10 s; A is killed; B
  takes the active lock and serves, h1 (started with both --controller addresses) fails over
  to it (times printed), and B releases h1 when the TTL ends. B isolates h1 again.
  `bulkhead audit --verify` checks one chain holding the rows of both controllers; nothing
  acknowledged is lost.

Root only.
"""

import os
import subprocess
import sys
import time
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed, wait_until  # noqa: E402
from fleet import Fleet  # noqa: E402
from postgres import LabPostgres  # noqa: E402

IS_ROOT = os.geteuid() == 0
PORT = 7000
PORT_B = 7444  # controller B's (A listens on the fleet's usual port)
TTL_S = 10


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class PostgresStoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=1)
        cls.addClassCleanup(cls.lab.close)
        cls.fleet = Fleet(cls.lab)
        cls.pg = LabPostgres(cls.lab, "ctl")
        cls.addClassCleanup(cls.pg.close)
        cls.key = os.path.join(cls.lab.tmpdir, "shared-audit.key")

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def ok(self, *args):
        rc, doc, err = self.fleet.cli(*args, timeout=120)
        self.assertEqual(rc, 0, f"{args}: {err} {doc}")
        return doc

    def reachable(self):
        return self.lab.tcp_probe("attacker", self.lab.ip4("h1"), PORT, timeout=0.5)

    def store_args(self):
        return ["--store", self.pg.url(), "--audit-key", self.key,
                "--advertise", f"{self.lab.ip4('ctl')}:{PORT_B}"]

    def replica_b_argv(self):
        """Controller B: the same node, identity, database and key as A, listening on PORT_B,
        its own data directory."""
        return self.fleet.other_controller_argv(
            PORT_B, os.path.join(self.lab.tmpdir, "controller-b-data"), self.store_args())

    def test_controllers_share_one_database_through_a_crash_and_a_failover(self):
        lab, fleet = self.lab, self.fleet
        ctl = lab.ip4("ctl")
        # No key file: refused, with the way to make one.
        r = lab.run("ctl", fleet.controller_argv(self.store_args()), timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("same audit key", r.stderr)
        self.assertFalse(os.path.exists(self.key), "no key is made for a shared database")
        subprocess.run(["sh", "-c", f"umask 077; openssl rand -hex 32 > {self.key}"], check=True,
                       timeout=10)

        fleet.start_controller(self.store_args())
        lab.tcp_server("h1", PORT)
        fleet.start_agent("h1", extra=["--controller", f"{ctl}:{PORT_B}"])
        fleet.wait_online(["h1"])
        self.assertTrue(self.reachable())
        self.ok("isolate", "h1", "--reason", "INC-9")
        wait_until(lambda: not self.reachable(), 10, interval=0.1, desc="h1 isolated")

        # PostgreSQL crashes and comes back under the running controller: the next call finds
        # the connection lost before doing anything, reconnects and works.
        self.pg.kill9()
        self.pg.start()
        self.ok("release", "h1", "--reason", "INC-9 contained")
        wait_until(self.reachable, 20, interval=0.2, desc="h1 released")

        # Controller B starts as a standby: it waits for the active lock, does not listen.
        b = lab.spawn("ctl", self.replica_b_argv(), label="controller-b")
        wait_until(lambda: "standby" in lab.log_text(b), 15, interval=0.1, desc="B a standby")
        self.assertFalse(lab.tcp_probe("jump", ctl, PORT_B, timeout=0.5), "a standby listens")

        # An isolation with a TTL through A; A dies; B takes over the database and h1, and
        # releases h1 when the TTL ends.
        self.ok("isolate", "h1", "--reason", "INC-10", "--ttl", f"{TTL_S}s")
        isolated_at = time.monotonic()
        wait_until(lambda: not self.reachable(), 10, interval=0.1, desc="h1 isolated")
        fleet.kill_controller()
        killed_at = time.monotonic()
        fleet.controller_addr = f"{ctl}:{PORT_B}"
        fleet.controller = b
        wait_until(lambda: lab.tcp_probe("jump", ctl, PORT_B, timeout=0.5), 20, interval=0.05,
                   desc="B listening")
        listening_s = time.monotonic() - killed_at
        fleet.wait_online(["h1"], timeout=30)
        failover_s = time.monotonic() - killed_at
        self.assertIn("active", lab.log_text(b))
        wait_until(self.reachable, TTL_S + 20, interval=0.2, desc="h1 released by B at its TTL")
        released_after_s = time.monotonic() - isolated_at
        self.assertGreaterEqual(released_after_s, TTL_S - 1)
        self.ok("isolate", "h1", "--reason", "INC-11")
        wait_until(lambda: not self.reachable(), 10, interval=0.1, desc="h1 isolated by B")

        # One chain, written by both controllers, nothing acknowledged lost.
        rc, doc, err = fleet.cli("audit", "--verify")
        self.assertEqual(rc, 0, f"{err} {doc}")
        records = self.ok("audit", "--limit", "300")["records"]
        starts = [r for r in records if r["action"] == "controller-start"]
        self.assertEqual(len(starts), 2, starts)
        actions = [r["action"] for r in records]
        self.assertEqual(actions.count("isolate"), 3, actions)
        self.assertIn("release", actions)
        print(f"\nfailover: A killed -> B listening in {listening_s:.2f} s, h1 online at B in "
              f"{failover_s:.2f} s; "
              f"TTL {TTL_S} s release by B after {released_after_s:.1f} s")


if __name__ == "__main__":
    unittest.main(verbosity=2)
