#!/usr/bin/env python3
"""Backing up a running controller and restoring it, in the lab:

  h1 is isolated and 10.77.0.99 is blocked fleet-wide, a capture of h2 is stored; then
  `bulkhead-controller backup` runs while the controller serves. After the backup the attacker
  (10.77.0.66) is blocked fleet-wide too. The controller is stopped, its database moved aside,
  and `bulkhead-controller restore` installs the backup (with the evidence directory copied).
  The restarted controller's agents take the restored state although they hold later
  generations: h1 stays isolated, the block made after the backup is gone from every host (the
  attacker reaches h2 again), the audit chain verifies with the restore's row at its head, the
  capture's bundle verifies, and the restored controller can change hosts (release h1).
  A restore onto a directory that has a database is refused and changes nothing.

Root only.
"""

import os
import shutil
import subprocess
import sys
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed, wait_until  # noqa: E402
from fleet import Fleet  # noqa: E402

IS_ROOT = os.geteuid() == 0
PORT = 7000


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class BackupRestoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=2)
        cls.addClassCleanup(cls.lab.close)
        cls.fleet = Fleet(cls.lab)
        cls.fleet.start_controller()
        for h in ("h1", "h2"):
            cls.fleet.start_agent(h, labels={"role": "web"})
        cls.fleet.wait_online(["h1", "h2"])
        cls.servers = [cls.lab.tcp_server(h, PORT) for h in ("h1", "h2")]

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def ok(self, *args):
        rc, doc, err = self.fleet.cli(*args, timeout=120)
        self.assertEqual(rc, 0, f"{args}: {err} {doc}")
        return doc

    def reachable(self, host):
        return self.lab.tcp_probe("attacker", self.lab.ip4(host), PORT, timeout=0.5)

    def controller_tool(self, *args):
        return subprocess.run([self.fleet.bin("bulkhead-controller"), *args],
                              capture_output=True, text=True, timeout=60)

    def test_a_backup_taken_while_serving_restores_state_chain_and_evidence(self):
        self.ok("isolate", "h1", "--reason", "INC-7")
        self.ok("block", "10.77.0.99", "--all", "--reason", "INC-7")
        capture = self.ok("capture", "h2", "--reason", "INC-7", "--output",
                          os.path.join(self.lab.tmpdir, "h2.tar.gz"))
        evidence_id = capture["record"]["evidence_id"]
        self.assertFalse(self.reachable("h1"))
        self.assertTrue(self.reachable("h2"))

        backup = os.path.join(self.lab.tmpdir, "backup", "controller.db")
        os.makedirs(os.path.dirname(backup), mode=0o700)
        r = self.controller_tool("backup", "--data-dir", self.fleet.data_dir, "--to", backup)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("3 desired states", r.stdout)  # h1, h2 and the fleet's blocks
        evidence_copy = os.path.join(self.lab.tmpdir, "backup", "evidence")
        shutil.copytree(os.path.join(self.fleet.data_dir, "evidence"), evidence_copy)
        # The same file again: refused, untouched.
        size = os.path.getsize(backup)
        r = self.controller_tool("backup", "--data-dir", self.fleet.data_dir, "--to", backup)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("exists", r.stderr)
        self.assertEqual(os.path.getsize(backup), size)

        # After the backup: the attacker is blocked everywhere (agents now hold later states).
        self.ok("block", "10.77.0.66", "--all", "--reason", "INC-7 later")
        wait_until(lambda: not self.reachable("h2"), 10, desc="the later block in force")

        # A restore onto the live data directory is refused.
        r = self.controller_tool("restore", "--from", backup, "--data-dir", self.fleet.data_dir,
                                 "--identity", os.path.join(self.fleet.pki, "controller"))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("never replaces a database", r.stderr)

        # Stop, move the database aside, restore, start.
        self.fleet.kill_controller()
        aside = self.fleet.data_dir + ".before-restore"
        os.rename(self.fleet.data_dir, aside)
        r = self.controller_tool("restore", "--from", backup, "--data-dir", self.fleet.data_dir,
                                 "--identity", os.path.join(self.fleet.pki, "controller"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("chain verified", r.stdout)
        shutil.copytree(evidence_copy, os.path.join(self.fleet.data_dir, "evidence"))
        self.fleet.start_controller()
        self.fleet.wait_online(["h1", "h2"])

        # Every host takes the restored state: the later block is gone, h1 stays isolated.
        wait_until(lambda: self.reachable("h2"), 20, interval=0.2,
                   desc="h2 without the block made after the backup")
        self.assertFalse(self.reachable("h1"))
        blocks = [b["block"]["remote_cidr"] for b in self.ok("blocks")["entries"]
                  if b["fleet_wide"]]
        self.assertEqual(blocks, ["10.77.0.99/32"])
        rc, doc, err = self.fleet.cli("audit", "--verify")
        self.assertEqual(rc, 0, f"{err} {doc}")
        records = self.ok("audit", "--limit", "20")["records"]
        self.assertTrue(any(r["action"] == "controller-restore" for r in records), records)
        verified = self.ok("evidence", "verify", evidence_id)
        self.assertTrue(verified, verified)

        # The restored controller changes hosts: release h1.
        self.ok("release", "h1", "--reason", "INC-7 closed")
        wait_until(lambda: self.reachable("h1"), 20, interval=0.2, desc="h1 released")


if __name__ == "__main__":
    unittest.main(verbosity=2)
