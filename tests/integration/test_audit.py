#!/usr/bin/env python3
"""The audit trail against someone who can write the controller's database, in the lab: the
data directory is private after a start, a middle row rewritten with every later hash
recomputed and rows deleted at the tail are caught by `bulkhead audit --verify` (the latter
against an earlier export), and the README's stock-tools recipe checks an export and catches an
edit to it. Root only.
"""

import hashlib
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from bhlab import Lab, case_failed  # noqa: E402
from fleet import Fleet  # noqa: E402

IS_ROOT = os.geteuid() == 0
FIELDS = ("prev_hash", "id", "at_unix_ms", "operator", "action", "target", "reason", "outcome",
          "detail")


def row_hash(row: dict) -> str:
    data = b""
    for k in FIELDS:
        b = str(row[k]).encode()
        data += str(len(b)).encode() + b":" + b + b";"
    return hashlib.sha256(data).hexdigest()


def readme_recipe() -> str:
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    block = text.split("<!-- audit-export-recipe -->", 1)[1]
    return re.search(r"```sh\n(.*?)\n```\n", block, re.S).group(1) + "\n"


def mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class AuditTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=1)
        cls.addClassCleanup(cls.lab.close)
        cls.fleet = Fleet(cls.lab)
        # A data directory left open by an older version: 0755, a 0644 file in it.
        os.makedirs(cls.fleet.data_dir, mode=0o755)
        os.chmod(cls.fleet.data_dir, 0o755)
        cls.stray = os.path.join(cls.fleet.data_dir, "notes.txt")
        with open(cls.stray, "w") as f:
            f.write("x")
        os.chmod(cls.stray, 0o644)
        cls.fleet.start_controller()
        cls.db = os.path.join(cls.fleet.data_dir, "controller.db")

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def rows(self):
        con = sqlite3.connect(self.db, timeout=10)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute("SELECT * FROM audit ORDER BY id")]
        finally:
            con.close()

    def sql(self, statement: str, params=()):
        con = sqlite3.connect(self.db, timeout=10)
        try:
            con.execute(statement, params)
            con.commit()
        finally:
            con.close()

    def export(self, name: str) -> str:
        out = os.path.join(self.lab.tmpdir, name)
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, "audit.jsonl")
        rc, doc, err = self.fleet.cli("audit", "export", "--output", path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(doc["output"], path)
        shutil.copy(os.path.join(self.fleet.pki, "ca", "ca.crt"), os.path.join(out, "ca.crt"))
        with open(os.path.join(out, "recipe.sh"), "w") as f:
            f.write(readme_recipe())
        return out

    def recipe(self, out: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-e", "recipe.sh"], cwd=out, capture_output=True,
                              text=True, timeout=60)

    def test_1_data_dir_and_key_are_private_after_a_start(self):
        self.assertEqual(self.fleet.cli("hosts")[0], 0)
        self.assertEqual(mode(self.fleet.data_dir), 0o700)
        self.assertEqual(mode(self.stray), 0o600)
        for suffix in ("", "-wal", "-shm"):
            self.assertTrue(os.path.exists(self.db + suffix), suffix)
            self.assertEqual(mode(self.db + suffix), 0o600, suffix)
        key = os.path.join(self.fleet.pki, "controller", "audit.key")
        self.assertEqual(mode(key), 0o600)

    def test_2_export_recipe_and_checkpoint(self):
        for _ in range(3):
            self.assertEqual(self.fleet.cli("hosts")[0], 0)
        out = self.export("export-1")
        r = self.recipe(out)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("Verified OK", r.stdout + r.stderr)
        self.assertIn("chain ok", r.stdout)
        path = os.path.join(out, "audit.jsonl")
        rc, text, err = self.fleet.cli("audit", "--verify", "--checkpoint", path, json_out=False)
        self.assertEqual(rc, 0, text + err)
        self.assertIn("MACs verified", text)
        self.assertIn("nothing missing", text)

        # An edit to the export: the recipe fails.
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
        lines[1] = lines[1].replace('"operator":"', '"operator":"x', 1)
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(lines)
        r = self.recipe(out)
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("Verification failure", r.stdout + r.stderr)
        # ...and the CLI refuses it as a checkpoint.
        rc, text, err = self.fleet.cli("audit", "--verify", "--checkpoint", path, json_out=False)
        self.assertEqual(rc, 2, text + err)
        self.assertIn("altered", err)

    def test_3_tail_rows_deleted_are_reported_against_an_export(self):
        self.assertEqual(self.fleet.cli("hosts")[0], 0)
        out = self.export("export-2")
        path = os.path.join(out, "audit.jsonl")
        last = self.rows()[-1]["id"]   # the export's own row, after its head
        self.sql("DELETE FROM audit WHERE id >= ?", (last - 2,))
        rc, text, err = self.fleet.cli("audit", "--verify", json_out=False)
        self.assertEqual(rc, 0, text + err)   # a shorter chain alone looks intact
        rc, text, err = self.fleet.cli("audit", "--verify", "--checkpoint", path, json_out=False)
        self.assertEqual(rc, 1, text + err)
        self.assertRegex(text, r"rows missing at the tail|differs from the checkpoint")

    def test_4_a_middle_row_rewritten_with_later_hashes_recomputed_is_caught(self):
        for _ in range(3):
            self.assertEqual(self.fleet.cli("hosts")[0], 0)
        rows = self.rows()
        target = rows[len(rows) // 2]
        con = sqlite3.connect(self.db, timeout=10, isolation_level=None)
        con.row_factory = sqlite3.Row
        try:
            con.execute("BEGIN IMMEDIATE")
            prev = None
            for r in [dict(x) for x in con.execute("SELECT * FROM audit ORDER BY id")]:
                if r["id"] >= target["id"]:
                    if r["id"] == target["id"]:
                        r["outcome"] = "denied"
                    r["prev_hash"] = prev
                    r["hash"] = row_hash(r)
                    con.execute("UPDATE audit SET outcome=?, prev_hash=?, hash=? WHERE id=?",
                                (r["outcome"], r["prev_hash"], r["hash"], r["id"]))
                prev = r["hash"]
            con.execute("COMMIT")
        finally:
            con.close()
        rc, text, err = self.fleet.cli("audit", "--verify", json_out=False)
        self.assertEqual(rc, 1, text + err)
        self.assertIn(f"ALTERED at row {target['id']}", text)
        self.assertIn("MAC does not match", text)


if __name__ == "__main__":
    unittest.main()
