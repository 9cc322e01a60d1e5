#!/usr/bin/env python3
"""The CLI's `--json` is a contract (cli/schemas/): in a real lab (a controller, two agents), every
command is run with `--json` and its document validates against the command's schema
(Fleet.cli checks each; json_contract.problems for the offline `pki` commands). The test fails
when a command exists that it did not run, so a new command cannot skip its schema. Also:
numbers are JSON numbers and enum values are spelt as in the text output. Root only.
"""

import json
import os
import shutil
import subprocess
import sys
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

import json_contract  # noqa: E402
from bhlab import Lab, case_failed, wait_until  # noqa: E402
from fleet import REPO, Fleet  # noqa: E402

IS_ROOT = os.geteuid() == 0
HOSTS = {"h1": {"role": "web"}, "h2": {"role": "db"}}


def all_commands():
    """Every command the schemas cover: one file per command (messages.schema.json aside)."""
    names = sorted(f[:-len(".schema.json")] for f in os.listdir(json_contract.SCHEMA_DIR)
                   if f.endswith(".schema.json") and f != "messages.schema.json")
    two_word = {"audit-export", "evidence-list", "evidence-get", "evidence-verify",
                "evidence-show", "pki-init", "pki-issue", "pki-revoke", "policy-check",
                "playbook-check", "playbook-test", "integrations-create", "integrations-revoke",
                "tokens-create", "tokens-revoke", "tenants-create", "access-grant",
                "access-revoke", "incident-open", "incident-list", "incident-show",
                "incident-note", "incident-close", "incident-report", "incident-verify-report",
                "notify-channels", "notify-test"}
    return {n.replace("-", " ", 1) if n in two_word else n for n in names}


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class JsonContractTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=2)
        cls.addClassCleanup(cls.lab.close)
        # A notification channel, for `notify channels` and `notify test`: a webhook to a
        # receiver in the service node (tests/lab/notify_sinks.py).
        policies = os.path.join(cls.lab.tmpdir, "policies")
        shutil.copytree(os.path.join(REPO, "policies"), policies)
        os.makedirs(os.path.join(policies, "notifications"))
        key = os.path.join(cls.lab.tmpdir, "contract.key")
        with open(key, "w") as f:
            f.write("contract-secret\n")
        os.chmod(key, 0o600)
        sink = f"http://{cls.lab.ip4('service')}:8088/hook"
        with open(os.path.join(policies, "notifications", "contract.yaml"), "w") as f:
            f.write(f"name: contract\ntype: webhook\nurl: {sink}\nsecret_file: {key}\n"
                    "allow_insecure: true\n")
        cls.lab.spawn("service", [sys.executable, os.path.join(LAB_DIR, "notify_sinks.py"),
                                  "http", "8088", "--out",
                                  os.path.join(cls.lab.tmpdir, "contract-hooks.jsonl")],
                      label="http-sink")
        wait_until(lambda: cls.lab.tcp_probe("jump", cls.lab.ip4("service"), 8088), 15,
                   interval=0.1, desc="the webhook receiver listening")
        cls.fleet = Fleet(cls.lab, policy_dir=policies)
        # The CA key: `tokens create` needs enrollment on.
        cls.fleet.start_controller(extra=[
            "--enroll-listen", "[::]:7444", "--ca-key", os.path.join(cls.fleet.pki, "ca", "ca.key")])
        for h, labels in HOSTS.items():
            cls.fleet.start_agent(h, labels)
        cls.fleet.wait_online(HOSTS, timeout=20)
        cls.ran = set()

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def cli(self, *args, expect=(0,), timeout=60):
        """Runs `bulkhead --json ARGS` (Fleet.cli validates the document); returns it."""
        rc, doc, err = self.fleet.cli(*args, timeout=timeout)
        self.assertIn(rc, expect, f"{args}: {err} {doc}")
        self.assertIsInstance(doc, dict, f"{args}: no JSON document: {err}")
        self.ran.add(json_contract.command_of(args))
        return doc

    def offline(self, *args, expect=0):
        """Runs a `pki` or `policy` command outside the lab and validates its document."""
        r = subprocess.run([self.fleet.bin("bulkhead"), "--json", *args], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, expect, f"{args}: {r.stderr}")
        doc = json.loads(r.stdout)
        self.assertEqual(json_contract.problems(args, doc), [], r.stdout)
        self.ran.add(json_contract.command_of(args))
        return doc

    def test_every_command_prints_what_its_schema_says(self):
        tmp = self.lab.tmpdir
        cidr = self.lab.ip4("attacker") + "/32"
        # hosts and containment
        hosts = self.cli("hosts")
        self.assertIsInstance(hosts["hosts"][0]["last_seen_unix_ms"], int)
        self.cli("status", "h1")
        doc = self.cli("isolate", "h1", "--reason", "INC-7 contract")
        out = doc["outcomes"][0]
        self.assertEqual(out["state"], "enforced", doc)
        self.assertIsInstance(out["generation"], int)
        text = self.fleet.cli("hosts", json_out=False)[1]
        self.assertIn("isolated", text)
        self.cli("isolate", "h2", "--dry-run", "--reason", "INC-7 contract")
        self.cli("release", "h1", "--reason", "INC-7 contract")
        self.cli("block", cidr, "h1", "--proto", "tcp", "--port", "22", "--reason", "INC-7")
        blocks = self.cli("blocks")
        self.assertEqual(blocks["entries"][0]["block"]["protocol"], "tcp", blocks)
        self.assertIsInstance(blocks["entries"][0]["remaining_ms"], int)
        self.cli("unblock", cidr, "h1", "--proto", "tcp", "--port", "22", "--reason", "INC-7")
        self.cli("kill-connections", "h1", "--remote", cidr, "--reason", "INC-7")
        # sessions and processes
        sessions = self.cli("sessions", "h1")
        self.assertEqual(sessions["host_id"], "h1")
        self.assertIn("sessions", sessions["list_sessions"])
        self.cli("kill-sessions", "h1", "--from", cidr, "--reason", "INC-7", expect=(0, 1, 2))
        implant = os.path.join(tmp, "contract-implant")
        shutil.copy("/bin/sleep", implant)
        proc = self.lab.spawn("h1", [implant, "300"], label="implant")
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        killed = self.cli("kill-process", "h1", "--exe", implant, "--reason", "INC-7")
        self.assertTrue(killed["ok"], killed)
        wait_until(lambda: proc.poll() is not None, 10, desc="implant killed")
        # evidence
        saved = os.path.join(tmp, "contract-capture.tar.gz")
        cap = self.cli("capture", "h2", "--reason", "INC-7", "--output", saved, timeout=300)
        self.assertEqual(cap["output"], saved)
        self.assertIsInstance(cap["record"]["size"], int)
        ev = cap["record"]["evidence_id"]
        listed = self.cli("evidence", "list")
        self.assertIn(ev, [e["evidence_id"] for e in listed["evidence"]])
        got = self.cli("evidence", "get", ev, "--output", os.path.join(tmp, "contract-get.tar.gz"))
        self.assertEqual(got["record"]["evidence_id"], ev)
        self.assertTrue(self.cli("evidence", "verify", ev)["ok"])
        show = self.cli("evidence", "show", ev)
        self.assertIsInstance(show["summary"], dict)
        # audit
        rows = self.cli("audit", "--limit", "5")
        self.assertIsInstance(rows["records"][0]["id"], int, rows)
        self.assertTrue(self.cli("audit", "--verify")["ok"])
        self.cli("audit", "export", "--output", os.path.join(tmp, "contract-audit.jsonl"))
        # signals and playbooks
        sig = self.cli("signal", "--source", "sshguard", "--rule", "sshd", "--ip",
                       "203.0.113.77", "--ttl", "1m", "--key", "contract-1")
        self.assertEqual(sig["disposition"], "acted", sig)
        self.assertIsInstance(sig["actions"], list)
        listed = self.cli("signals", "--since", "1h")
        self.assertIn(sig["signal_id"], [s["signal_id"] for s in listed["signals"]])
        self.assertIsInstance(listed["signals"][0]["received_unix_ms"], int)
        signal_file = os.path.join(tmp, "contract-signal.json")
        with open(signal_file, "w") as f:
            json.dump({"source": "fail2ban", "rule": "sshd", "addresses": ["203.0.113.78"]}, f)
        preview = self.cli("playbook", "test", signal_file)
        self.assertEqual(preview["signal_id"], "", preview)
        self.offline("playbook", "check", os.path.join(REPO, "policies", "playbooks"))
        bad_playbooks = os.path.join(tmp, "contract-bad-playbooks")
        os.makedirs(bad_playbooks)
        with open(os.path.join(bad_playbooks, "broken.yaml"), "w") as f:
            f.write("name: [x]\n")
        self.assertFalse(self.offline("playbook", "check", bad_playbooks, expect=2)["ok"])
        # approvals: isolating h2 (role=db) waits for a responder other than the requester
        waiting = []
        for rule in ("contract-implant-1", "contract-implant-2"):
            alert = self.cli("signal", "--source", "alertmanager", "--rule", rule, "--host", "h2",
                             "--severity", "critical")
            self.assertEqual(alert["disposition"], "awaiting-approval", alert)
            waiting.append(alert["signal_id"])
        pending = self.cli("approvals")["approvals"]
        ids = {a["signal_id"]: a["approval_id"] for a in pending}
        self.assertTrue(set(waiting) <= set(ids), pending)
        self.assertEqual(pending[0]["state"], "pending", pending)
        self.assertIsInstance(pending[0]["expires_unix_ms"], int)
        rejected = self.cli("reject", ids[waiting[0]], "--reason", "contract: false positive")
        self.assertEqual(rejected["state"], "rejected", rejected)
        r = subprocess.run([self.fleet.bin("bulkhead"), "pki", "issue", "operator", "--name",
                            "contract-bob", "--role", "approver", "--dir", self.fleet.pki],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        rc, approved, err = self.fleet.cli(
            "approve", ids[waiting[1]], "--reason", "contract: confirmed",
            identity=os.path.join(self.fleet.pki, "operators", "contract-bob"))
        self.assertEqual(rc, 0, err)
        self.assertEqual(approved["state"], "approved", approved)
        self.ran.add("approve")
        self.assertEqual(len(self.cli("approvals", "--all")["approvals"]), 2)
        # webhook integrations
        created = self.cli("integrations", "create", "contract-am", "--format", "alertmanager")
        self.assertEqual(len(created["token"]), 64, created)
        self.assertEqual(created["integration"]["format"], "alertmanager", created)
        listed = self.cli("integrations")
        self.assertIn("contract-am", [i["name"] for i in listed["integrations"]])
        revoked = self.cli("integrations", "revoke", "contract-am", "--reason", "contract test")
        self.assertIsInstance(revoked["revoked_unix_ms"], int)
        # join tokens
        token = self.cli("tokens", "create", "--labels", "role=web", "--uses", "3", "--reason",
                         "contract test")
        self.assertTrue(token["token_text"].startswith("bhjt1."), token)
        self.assertEqual(token["token"]["max_uses"], 3, token)
        tokens = self.cli("tokens")
        self.assertEqual([t["token_id"] for t in tokens["tokens"]], [token["token"]["token_id"]])
        revoked = self.cli("tokens", "revoke", token["token"]["token_id"], "--reason", "contract")
        self.assertIsInstance(revoked["revoked_unix_ms"], int)
        # an operator token: enrolled with (the key made here), then the certificate renewed
        op = self.cli("tokens", "create", "--operator", "contract-ops", "--role", "viewer",
                      "--reason", "contract")
        self.assertEqual(op["token"]["operator_name"], "contract-ops", op)
        ops_dir = os.path.join(tmp, "contract-ops")
        rc, binding, err = self.fleet.cli("enroll", "--token", op["token_text"], identity=ops_dir)
        self.assertEqual(rc, 0, err)
        self.assertEqual((binding["operator_name"], binding["role_name"]),
                         ("contract-ops", "viewer"), binding)
        self.ran.add("enroll")
        rc, renewed, err = self.fleet.cli("renew", identity=ops_dir)
        self.assertEqual(rc, 0, err)
        self.assertIn("BEGIN CERTIFICATE", renewed["cert_pem"], renewed)
        self.ran.add("renew")
        # incidents: what is done with --incident is in the incident's timeline
        opened = self.cli("incident", "open", "INC-7", "--title", "contract run", "--severity",
                          "high", "--detected-at", "2026-01-02T03:04:05Z")
        self.assertEqual((opened["state"], opened["severity"], opened["detected_unix_ms"]),
                         ("open", "high", 1767323045000), opened)
        self.cli("isolate", "h2", "--reason", "INC-7 contract", "--incident", "INC-7")
        self.cli("release", "h2", "--reason", "INC-7 contract", "--incident", "INC-7")
        self.cli("incident", "note", "INC-7", "contract note")
        shown = self.cli("incident", "show", "INC-7")
        self.assertEqual([(r["action"], r["incident"]) for r in shown["records"]
                          if r["action"] in ("isolate", "release", "incident-note")],
                         [("isolate", "INC-7"), ("release", "INC-7"), ("incident-note", "INC-7")],
                         shown)
        self.assertEqual(shown["regulator_deadline_unix_ms"], 1767323045000 + 72 * 3600 * 1000)
        listed = self.cli("incident", "list")
        self.assertEqual([i["incident_id"] for i in listed["incidents"]], ["INC-7"])
        closed = self.cli("incident", "close", "INC-7", "--summary", "contract done")
        self.assertEqual(closed["state"], "closed", closed)
        # its report, signed; the file holds the same timeline
        report = os.path.join(tmp, "INC-7.json")
        made = self.cli("incident", "report", "INC-7", "--format", "json", "--output", report)
        self.assertEqual((made["incident"], made["format"], made["manifest"]),
                         ("INC-7", "json", report + ".manifest"), made)
        with open(report, encoding="utf-8") as f:
            doc = json.load(f)
        ids = [r["id"] for r in doc["timeline"]]
        self.assertEqual(ids[:len(shown["records"])], [r["id"] for r in shown["records"]])
        self.assertEqual(doc["incident"]["summary"], "contract done")
        checked = self.cli("incident", "verify-report", report)
        self.assertEqual((checked["ok"], checked["sha256"]), (True, made["sha256"]), checked)
        # notification channels
        channels = self.cli("notify", "channels")["channels"]
        self.assertEqual([(c["name"], c["type"]) for c in channels], [("contract", "webhook")])
        tested = self.cli("notify", "test", "contract")
        self.assertEqual(tested["channel"]["name"], "contract", tested)
        # labels, tenants and role bindings (last: a second tenant makes the admin name one)
        labelled = self.cli("label", "h1", "owner=it", "--reason", "contract")
        self.assertEqual(labelled["labels_set_by"], "admin", labelled)
        self.assertEqual(labelled["labels"]["owner"], "it", labelled)
        self.assertEqual([t["name"] for t in self.cli("tenants")["tenants"]], ["default"])
        made = self.cli("tenants", "create", "contract-co", "--reason", "contract")
        self.assertIsInstance(made["created_unix_ms"], int)
        grant = self.cli("access", "grant", "contract-bob", "--tenant=contract-co", "--role",
                         "viewer", "--hosts", "role=web", "--reason", "contract")
        self.assertEqual((grant["role"], grant["role_name"], grant["hosts"]),
                         ("viewer", "viewer", "role=web"), grant)
        listed = self.cli("access", "--tenant=contract-co")
        self.assertEqual([b["binding_id"] for b in listed["bindings"]], [grant["binding_id"]])
        gone = self.cli("access", "revoke", grant["binding_id"], "--tenant=contract-co",
                        "--reason", "contract")
        self.assertEqual(gone["operator_name"], "contract-bob", gone)
        # offline commands: policies and the PKI
        self.offline("policy", "check", os.path.join(REPO, "policies"))
        bad = os.path.join(tmp, "contract-bad-policy")
        os.makedirs(bad)
        with open(os.path.join(bad, "broken.yaml"), "w") as f:
            f.write("sets: [\n")
        errors = self.offline("policy", "check", bad, expect=2)
        self.assertFalse(errors["ok"])
        pki = os.path.join(tmp, "contract-pki")
        self.offline("pki", "init", "--dir", pki, "--controller-ip", "10.77.9.1")
        issued = self.offline("pki", "issue", "agent", "--host-id", "web-9", "--dir", pki)
        self.assertIsInstance(issued["not_after_unix_ms"], int)
        self.offline("pki", "revoke", "--name", "web-9", "--dir", pki, "--reason", "lost laptop")
        # every command ran
        self.assertEqual(all_commands() - self.ran, set(), "commands this test did not run")


if __name__ == "__main__":
    unittest.main(verbosity=2)
