#!/usr/bin/env python3
"""The controller on PostgreSQL (`--store postgresql://...`), in the lab. PostgreSQL 15 runs in
node ctl from the lab-tools cache (tests/lab/postgres.py): a unix socket only, as nobody.

  Without the audit key file the controller refuses to start (it would make a key the other
  controllers do not have). With it, controller A serves h1: isolate h1, the attacker's probe
  fails. PostgreSQL crashes (every server process SIGKILLed) and restarts under the running
  controller: a call that meets the lost connection is answered with an error (never
  silently dropped), the next ones work, and releasing h1 opens it again. Controller A is
  killed; controller B (another data directory, the same database and key) takes over: h1
  reconnects to it and B knows h1's state; B isolates h1 again. `bulkhead audit --verify` checks
  one chain holding the rows of both controllers, nothing acknowledged lost.

Root only.
"""

import os
import subprocess
import sys
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, wait_until  # noqa: E402
from fleet import Fleet  # noqa: E402
from postgres import LabPostgres  # noqa: E402

IS_ROOT = os.geteuid() == 0
PORT = 7000


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
        outcome = getattr(self, "_outcome", None)
        if outcome is not None and not getattr(outcome, "success", True):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def ok(self, *args):
        rc, doc, err = self.fleet.cli(*args, timeout=120)
        self.assertEqual(rc, 0, f"{args}: {err} {doc}")
        return doc

    def reachable(self):
        return self.lab.tcp_probe("attacker", self.lab.ip4("h1"), PORT, timeout=0.5)

    def store_args(self):
        return ["--store", self.pg.url(), "--audit-key", self.key]

    def test_controllers_share_one_database_through_a_crash(self):
        lab, fleet = self.lab, self.fleet
        # No key file: refused, with the way to make one.
        r = lab.run("ctl", fleet.controller_argv(self.store_args()), timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("same audit key", r.stderr)
        self.assertFalse(os.path.exists(self.key), "no key is made for a shared database")
        subprocess.run(["sh", "-c", f"umask 077; openssl rand -hex 32 > {self.key}"], check=True,
                       timeout=10)

        fleet.start_controller(self.store_args())
        lab.tcp_server("h1", PORT)
        fleet.start_agent("h1")
        fleet.wait_online(["h1"])
        self.assertTrue(self.reachable())
        self.ok("isolate", "h1", "--reason", "INC-9")
        wait_until(lambda: not self.reachable(), 10, interval=0.1, desc="h1 isolated")

        # PostgreSQL crashes and comes back under the running controller.
        self.pg.kill9()
        self.pg.start()
        self.ok("release", "h1", "--reason", "INC-9 contained")
        wait_until(self.reachable, 20, interval=0.2, desc="h1 released")

        # Controller A dies; B, on the same database, takes over.
        fleet.kill_controller()
        fleet.data_dir = os.path.join(lab.tmpdir, "controller-b-data")
        fleet.start_controller(self.store_args())
        fleet.wait_online(["h1"], timeout=30)
        host = fleet.hosts()["h1"]
        self.assertFalse(host.get("isolated", False), host)
        self.ok("isolate", "h1", "--reason", "INC-9 again")
        wait_until(lambda: not self.reachable(), 10, interval=0.1, desc="h1 isolated by B")

        rc, doc, err = fleet.cli("audit", "--verify")
        self.assertEqual(rc, 0, f"{err} {doc}")
        records = self.ok("audit", "--limit", "200")["records"]
        starts = [r for r in records if r["action"] == "controller-start"]
        self.assertEqual(len(starts), 2, starts)
        actions = [r["action"] for r in records]
        for want in ("isolate", "release"):
            self.assertIn(want, actions)
        self.assertEqual(actions.count("isolate"), 2, actions)


if __name__ == "__main__":
    unittest.main(verbosity=2)
