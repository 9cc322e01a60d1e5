#!/usr/bin/env python3
"""An incident's signed report, in the lab: a real controller and agents, an incident with
isolation, a block and a capture, and another incident beside it. The JSON report's timeline is
every audit row of the incident (from `bulkhead audit`) and nothing of the other one; the PDF,
printed by headless Chromium on the controller's node, has the timeline's rows, the evidence
hashes and the blocked address in its text (pdftotext); `incident verify-report` accepts it and
refuses it once a byte changes; the README's openssl recipe agrees. A screenshot of the HTML in
headless Chromium is kept for people to look at (its path is printed and attached to the test,
CTest ATTACHED_FILES). Root only; needs chromium and poppler-utils (scripts/install-deps.sh).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed  # noqa: E402
from fleet import Fleet  # noqa: E402

IS_ROOT = os.geteuid() == 0
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BLOCKED = "10.77.9.9"


def squeezed(text: str) -> str:
    """Text without any whitespace: a cell the PDF wrapped still reads whole."""
    return re.sub(r"\s+", "", text)


def screenshot_path() -> str:
    build = os.environ.get("BULKHEAD_BUILD_DIR", os.path.join(REPO, "build"))
    return os.path.join(build, "test-artifacts", "incident-report.png")


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class IncidentReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("chromium", "pdftotext"):
            if shutil.which(tool) is None:
                raise unittest.SkipTest(f"{tool} is not installed (scripts/install-deps.sh)")
        cls.lab = Lab(hosts=2)
        cls.addClassCleanup(cls.lab.close)
        # The shipped policies, with every action of a person needing an incident, and a
        # playbook that opens its own.
        policies = os.path.join(cls.lab.tmpdir, "policies")
        shutil.copytree(os.path.join(REPO, "policies"), policies)
        with open(os.path.join(policies, "guardrails", "automation.yaml"), "a",
                  encoding="utf-8") as f:
            f.write("\nrequire_incident: true\n")
        with open(os.path.join(policies, "playbooks", "lab-beacon.yaml"), "w",
                  encoding="utf-8") as f:
            f.write("name: lab-beacon\ndescription: a C2 beacon seen by the SIEM\n"
                    "match: {source: cli, rule: ^beacon$}\n"
                    "actions: [{action: block, scope: fleet, ttl: 10m}]\n"
                    "incident: {open: C2 beacon, severity: high}\n")
        cls.fleet = Fleet(cls.lab, policy_dir=policies)
        cls.fleet.start_controller()
        for h in ("h1", "h2"):
            cls.fleet.start_agent(h)
        cls.fleet.wait_online(["h1", "h2"], timeout=20)

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def ok(self, *args, timeout=120):
        rc, doc, err = self.fleet.cli(*args, timeout=timeout)
        self.assertEqual(rc, 0, f"{args}: {err} {doc}")
        return doc

    def report(self, fmt: str) -> str:
        path = os.path.join(self.lab.tmpdir, f"INC-42.{fmt}")
        made = self.ok("incident", "report", "INC-42", "--format", fmt, "--output", path)
        self.assertEqual((made["incident"], made["format"]), ("INC-42", fmt), made)
        return path

    def test_actions_belong_to_incidents_by_policy_and_by_playbook(self):
        # require_incident: a person's block without --incident is refused and changes nothing.
        rc, _, err = self.fleet.cli("block", "10.77.9.10/32", "h2", "--reason", "c2")
        self.assertNotEqual(rc, 0, err)
        self.assertIn("--incident: required for block in tenant default", err)
        blocks = self.ok("blocks")
        self.assertNotIn("10.77.9.10/32", json.dumps(blocks))
        # A playbook's actions are not held back: it opens its incident and acts in it.
        sig = self.ok("signal", "--source", "cli", "--rule", "beacon", "--ip", "10.77.9.11",
                      "--key", "beacon-1")
        self.assertEqual(sig["disposition"], "acted", sig)
        mine = [i for i in self.ok("incident", "list")["incidents"]
                if i["opened_by"] == "playbook:lab-beacon"]
        self.assertEqual(len(mine), 1, mine)
        self.assertEqual((mine[0]["title"], mine[0]["severity"]), ("C2 beacon", "high"), mine)
        incident = mine[0]["incident_id"]

        def rows():
            return self.ok("incident", "show", incident)["records"]

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                r["action"] == "block.result" for r in rows()):
            time.sleep(0.2)
        actions = [(r["operator"], r["action"]) for r in rows()]
        self.assertIn(("playbook:lab-beacon", "incident-open"), actions)
        self.assertIn(("playbook:lab-beacon", "block"), actions)
        self.assertIn(("playbook:lab-beacon", "block.result"), actions)
        self.assertTrue(any(a == "signal" for _, a in actions), actions)
        # A second detection while it is open joins it.
        self.ok("signal", "--source", "cli", "--rule", "beacon", "--ip", "10.77.9.12",
                "--key", "beacon-2")
        mine = [i for i in self.ok("incident", "list")["incidents"]
                if i["opened_by"] == "playbook:lab-beacon"]
        self.assertEqual(len(mine), 1, mine)

    def test_the_report_is_the_incidents_every_action_signed_and_printed(self):
        self.ok("incident", "open", "INC-42", "--title", "webshell on h1", "--severity", "high")
        self.ok("incident", "open", "INC-43", "--title", "phishing on h2")
        self.ok("isolate", "h1", "--reason", "webshell", "--incident", "INC-42")
        self.ok("block", f"{BLOCKED}/32", "h1", "--reason", "c2 address", "--incident", "INC-42")
        self.ok("isolate", "h2", "--reason", "phish", "--incident", "INC-43")
        self.ok("capture", "h1", "--reason", "memory before rebuild", "--incident", "INC-42",
                timeout=300)
        self.ok("release", "h1", "--reason", "rebuilt", "--incident", "INC-42")
        self.ok("incident", "note", "INC-42", "next: rotate the VPN credentials")

        # `incident show`: how long each host stayed isolated, and the flows cut.
        shown = self.ok("incident", "show", "INC-42")
        self.assertEqual([h["host_id"] for h in shown["hosts"]], ["h1"], shown["hosts"])
        h1 = shown["hosts"][0]
        self.assertGreater(int(h1["released_unix_ms"]), int(h1["isolated_unix_ms"]), h1)
        self.assertGreaterEqual(int(h1.get("flows_cut", 0)), 0, h1)

        # Completeness against the audit trail: every row of INC-42, in order; none of INC-43.
        audit = self.ok("audit", "--limit", "1000")["records"]
        want = sorted(int(r["id"]) for r in audit if r.get("incident") == "INC-42")
        other = {int(r["id"]) for r in audit if r.get("incident") == "INC-43"}
        self.assertTrue(other)
        with open(self.report("json"), encoding="utf-8") as f:
            doc = json.load(f)
        ids = [int(r["id"]) for r in doc["timeline"]]
        self.assertEqual(ids, want)
        self.assertFalse(other & set(ids))
        self.assertTrue(any(b.startswith(f"{BLOCKED}/32") for b in doc["indicators"]["blocked"]),
                        doc["indicators"])
        self.assertEqual([h["host"] for h in doc["hosts"]], ["h1"], doc["hosts"])
        self.assertFalse(doc["hosts"][0]["still_isolated"])
        self.assertEqual(len(doc["evidence"]), 1, doc["evidence"])
        bundle = doc["evidence"][0]["sha256"]
        self.assertTrue(doc["evidence"][0]["signature_ok"])
        self.assertGreaterEqual(len(doc["evidence"][0]["custody"]), 3)

        # The PDF: Chromium on the controller's node printed it; its text has the facts.
        pdf = self.report("pdf")
        with open(pdf, "rb") as f:
            self.assertEqual(f.read(5), b"%PDF-")
        text = subprocess.run(["pdftotext", pdf, "-"], capture_output=True, text=True,
                              check=True, timeout=60).stdout
        flat = squeezed(text)
        for row in doc["timeline"]:
            self.assertIn(squeezed(row["at"]), flat, row)
            self.assertIn(squeezed(row["action"]), flat, row)
        self.assertIn(bundle, flat)
        self.assertIn(f"{BLOCKED}/32", flat)
        self.assertIn("webshellonh1", flat)
        self.assertIn("tocomplete", flat)
        self.assertNotIn("phishingonh2", flat)

        # Signed: the CLI and the README's openssl recipe accept it; an edit is caught.
        checked = self.ok("incident", "verify-report", pdf)
        self.assertTrue(checked["ok"], checked)
        recipe = self.readme_recipe()
        ca = os.path.join(self.fleet.pki, "ca", "ca.crt")
        shutil.copy(ca, os.path.join(self.lab.tmpdir, "ca.crt"))
        r = subprocess.run(["bash", "-e", "-c", recipe], cwd=self.lab.tmpdir, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("the report matches its signed manifest", r.stdout)
        with open(pdf, "r+b") as f:
            f.seek(200)
            byte = f.read(1)
            f.seek(200)
            f.write(bytes([byte[0] ^ 1]))
        rc, doc2, err = self.fleet.cli("incident", "verify-report", pdf)
        self.assertEqual(rc, 1, err)
        self.assertFalse(doc2["ok"])
        self.assertIn("the report was altered", doc2["problem"])
        r = subprocess.run(["bash", "-e", "-c", recipe], cwd=self.lab.tmpdir, capture_output=True,
                           text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0, r.stdout)

        # The HTML, as a person sees it: a screenshot kept beside the test results.
        html = self.report("html")
        shot = screenshot_path()
        os.makedirs(os.path.dirname(shot), exist_ok=True)
        profile = os.path.join(self.lab.tmpdir, "chromium-profile")
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                        "--no-first-run", "--proxy-server=127.0.0.1:9", f"--user-data-dir={profile}",
                        "--window-size=1400,2200", f"--screenshot={shot}", f"file://{html}"],
                       capture_output=True, timeout=120, check=True)
        with open(shot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        print(f"screenshot of the HTML report: {shot}")

    @staticmethod
    def readme_recipe() -> str:
        with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        at = readme.index("<!-- incident-report-recipe -->")
        start = readme.index("```sh\n", at) + 6
        return readme[start:readme.index("\n```\n", start)] + "\n"


if __name__ == "__main__":
    unittest.main(verbosity=2)
