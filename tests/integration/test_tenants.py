#!/usr/bin/env python3
"""Tenants in the lab: a provider runs one controller for two customers, acme and beta.

The install's admin creates both tenants and one join token for each; h1 enrolls into acme
(role=web, env=prod), h2 into beta, and h3 stays in the default tenant. Beta's own admin
(a `--role none` certificate with an admin binding in beta) then tries every Operator RPC
against acme: each one is refused exactly like an unknown host, token or binding, or keeps
to beta, or is kept for tenant default. The cases are generated from the service's method
list in operator.proto, so a new RPC without a case (and a tenant check) fails this test.
Also: `block --all` by acme reaches acme's hosts only; a label-bound responder reaches only
the hosts of its binding; a customer's viewer reads its tenant and changes nothing; acme's own
playbooks act on acme's hosts only and its approvals are decided by its own approvers. Root only.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed, wait_until  # noqa: E402
from fleet import Fleet  # noqa: E402
from test_audit import readme_recipe  # noqa: E402

IS_ROOT = os.geteuid() == 0
ENROLL_PORT = 7444
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OPERATOR_PROTO = os.path.join(REPO, "proto", "bulkhead", "v1", "operator.proto")


def operator_rpcs():
    with open(OPERATOR_PROTO) as f:
        text = f.read()
    service = text[text.index("service Operator {"):]
    service = service[:service.index("\n}")]
    return re.findall(r"^\s*rpc (\w+)\(", service, re.M)


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class TenantsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=3)
        cls.addClassCleanup(cls.lab.close)
        # The shipped sets (tenant default's and the shared library), acme's own set letting
        # the service peer reach its port 7000, and acme's opt-in to the IR jump host only.
        policies = os.path.join(cls.lab.tmpdir, "policies")
        shutil.copytree(os.path.join(REPO, "policies"), policies)
        os.makedirs(os.path.join(policies, "tenants", "acme"))
        with open(os.path.join(policies, "tenants", "acme", "acme-ops.yaml"), "w") as f:
            f.write("name: acme-ops\ndescription: acme's operations peer\nrules:\n"
                    "  - direction: in\n    proto: tcp\n    remote: 10.77.0.50/32\n"
                    "    port: 7000\n")
        with open(os.path.join(policies, "tenants", "acme.yaml"), "w") as f:
            f.write("shared: [ir-jump-host]\n")
        # acme's own playbooks: sshguard's reports blocked on acme's hosts; an implant alert
        # isolates the host once one of acme's approvers agrees (acme's own guardrail).
        os.makedirs(os.path.join(policies, "tenants", "acme", "playbooks"))
        os.makedirs(os.path.join(policies, "tenants", "acme", "guardrails"))
        with open(os.path.join(policies, "tenants", "acme", "playbooks", "ssh.yaml"), "w") as f:
            f.write("name: acme-ssh\ndescription: blocked on acme's servers\n"
                    "match: {source: sshguard}\nactions: [{action: block, scope: fleet}]\n"
                    "default_ttl: 10m\n")
        with open(os.path.join(policies, "tenants", "acme", "playbooks", "implant.yaml"),
                  "w") as f:
            f.write("name: acme-implant\ndescription: isolated once approved\n"
                    "match: {source: cli, rule: ^acme-implant$}\n"
                    "actions: [{action: isolate, scope: affected-host, ttl: 1h}]\n")
        with open(os.path.join(policies, "tenants", "acme", "guardrails", "automation.yaml"),
                  "w") as f:
            f.write("approval_for_isolate: [role=web]\n")
        cls.fleet = Fleet(cls.lab, policy_dir=policies)
        cls.fleet.start_controller(extra=[
            "--enroll-listen", f"[::]:{ENROLL_PORT}",
            "--ca-key", os.path.join(cls.fleet.pki, "ca", "ca.key")])
        cls.fleet.start_agent("h3")
        cls.fleet.wait_online(["h3"])
        # Once there is a second tenant the install's admin holds several and must name one:
        # the fleet helpers (hosts, wait_online) read across all of them.
        cls.fleet.cli_prefix = ["env", "BULKHEAD_TENANT=*"]
        for tenant in ("acme", "beta"):
            cls.admin("tenants", "create", tenant, "--reason", "contract")
        cls.tokens = {}
        for node, host, tenant, labels in (("h1", "acme-web", "acme", "role=web,env=prod"),
                                           ("h2", "beta-web", "beta", "role=web")):
            made = cls.admin("tokens", "create", f"--tenant={tenant}", "--labels", labels,
                             "--reason", "onboarding")
            cls.tokens[tenant] = made
            ident = os.path.join(cls.lab.tmpdir, f"enrolled-{host}")
            r = cls.lab.run(node, [cls.fleet.bin("bulkhead-agent"), "enroll", "--token",
                                   made["token_text"], "--host-id", host, "--identity", ident,
                                   "--timeout", "5s"], timeout=30)
            if r.returncode != 0:
                raise RuntimeError(f"enroll {host}: {r.stderr}")
            cls.fleet.start_agent(node, identity=ident, labels={"role": "db"})
        cls.fleet.wait_online(["acme-web", "beta-web", "h3"], timeout=30)
        cls.servers = [cls.lab.tcp_server(h, 7000) for h in ("h1", "h2", "h3")]
        # People: beta's admin, acme's responder bound to env=prod, acme's customer viewer.
        cls.identities = {}
        for name, tenant, role, hosts in (("bea", "beta", "admin", ""),
                                          ("ann", "acme", "responder", "env=prod"),
                                          ("carl", "acme", "viewer", ""),
                                          ("dan", "acme", "approver", "")):
            r = subprocess.run([cls.fleet.bin("bulkhead"), "pki", "issue", "operator", "--name",
                                name, "--role", "none", "--dir", cls.fleet.pki],
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise RuntimeError(f"pki issue operator {name}: {r.stderr}")
            cls.identities[name] = os.path.join(cls.fleet.pki, "operators", name)
            extra = ["--hosts", hosts] if hosts else []
            cls.admin("access", "grant", name, f"--tenant={tenant}", "--role", role, *extra,
                      "--reason", "contract")
        cls.acme_binding = cls.admin("access", "--tenant=acme")["bindings"][0]["binding_id"]
        # acme's webhook integration, and an action of acme's waiting for approval.
        cls.admin("integrations", "create", "acme-hook", "--format", "alertmanager",
                  "--tenant=acme")
        cls.acme_signal = cls.admin("signal", "--source", "cli", "--rule", "acme-implant",
                                    "--host", "acme-web", "--tenant=acme")
        pending = cls.admin("approvals", "--tenant=acme")["approvals"]
        if len(pending) != 1:
            raise RuntimeError(f"acme's implant alert: {cls.acme_signal} / {pending}")
        cls.acme_approval = pending[0]["approval_id"]
        # Evidence of acme's host, taken by ann (acme's responder on it) for acme's incident.
        rc, _, err = cls.as_("ann", "incident", "open", "INC-A1", "--title", "acme breach")
        if rc != 0:
            raise RuntimeError(f"incident open as ann: {err}")
        rc, cap, err = cls.as_("ann", "capture", "acme-web", "--reason", "INC-0", "--output",
                               os.path.join(cls.lab.tmpdir, "acme.tar.gz"), "--incident",
                               "INC-A1", timeout=300)
        if rc != 0:
            raise RuntimeError(f"capture acme-web as ann: {err}")
        cls.acme_evidence = cap["record"]["evidence_id"]

    @classmethod
    def admin(cls, *args):
        rc, doc, err = cls.fleet.cli(*args)
        if rc != 0:
            raise RuntimeError(f"bulkhead {' '.join(args)}: {err}")
        return doc

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()

    @classmethod
    def as_(cls, who, *args, json_out=True, timeout=60):
        """`bulkhead ARGS` as operator `who`, naming no tenant (theirs is chosen for them)."""
        prefix, cls.fleet.cli_prefix = cls.fleet.cli_prefix, []
        try:
            return cls.fleet.cli(*args, identity=cls.identities[who], json_out=json_out,
                                 timeout=timeout)
        finally:
            cls.fleet.cli_prefix = prefix

    def reachable(self, host: str) -> bool:
        return self.lab.tcp_probe("attacker", self.lab.ip4(host), 7000)

    # ---- the cases, one per Operator RPC ----------------------------------------------------
    #
    # Each is (kind, argv with {X} for the other tenant's object); kinds:
    #   unknown  refused with exactly the answer for a name nobody has ({X} -> a made-up one)
    #   own      answers with beta's things only: `check(doc)` holds
    #   default  refused: kept for tenant default (it checks every tenant's rows)
    #   install  refused: for the install's admins
    def cases(self):
        acme_token = self.tokens["acme"]["token"]["token_id"]
        return {
            "ListHosts": ("own", ["hosts"],
                          lambda d: [h["host_id"] for h in d.get("hosts", [])] == ["beta-web"]),
            "GetHost": ("unknown", ["status", "{X}"], "acme-web"),
            "Isolate": ("unknown", ["isolate", "{X}", "--reason", "x"], "acme-web"),
            "Release": ("unknown", ["release", "{X}", "--reason", "x"], "acme-web"),
            "ListAudit": ("own", ["audit", "--limit", "1000"],
                          lambda d: d["records"] and {r["tenant"] for r in d["records"]} ==
                          {"beta"}),
            # The whole chain's check spans every tenant.
            "VerifyAudit": ("default", ["audit", "--verify"]),
            "ExportAudit": ("own", ["audit", "export", "--output", self.bea_export],
                            lambda d: self.export_tenants(d["output"]) == (["beta"], {"beta"})),
            "Block": ("unknown", ["block", "203.0.113.5", "{X}", "--reason", "x"], "acme-web"),
            "Unblock": ("unknown", ["unblock", "203.0.113.5", "{X}", "--reason", "x"],
                        "acme-web"),
            "ListBlocks": ("unknown", ["blocks", "--host", "{X}"], "acme-web"),
            "KillConnections": ("unknown", ["kill-connections", "{X}", "--remote",
                                            "203.0.113.5", "--reason", "x"], "acme-web"),
            "ListSessions": ("unknown", ["sessions", "{X}"], "acme-web"),
            "KillSessions": ("unknown", ["kill-sessions", "{X}", "--all", "--reason", "x"],
                             "acme-web"),
            "KillProcess": ("unknown", ["kill-process", "{X}", "--pid", "1", "--reason", "x"],
                            "acme-web"),
            "Capture": ("unknown", ["capture", "{X}", "--reason", "x"], "acme-web"),
            "ListEvidence": ("own", ["evidence", "list"],
                             lambda d: d.get("evidence", []) == []),
            "GetEvidence": ("unknown", ["evidence", "get", "{X}", "--output",
                                        os.path.join(self.lab.tmpdir, "bea-get.tar.gz")],
                            self.acme_evidence),
            "VerifyEvidence": ("unknown", ["evidence", "verify", "{X}"], self.acme_evidence),
            "ShowEvidence": ("unknown", ["evidence", "show", "{X}"], self.acme_evidence),
            # beta's signal is beta's: acme's playbooks never see it (beta runs none).
            "SubmitSignal": ("own", ["signal", "--source", "cli", "--rule", "acme-implant",
                                     "--ip", "203.0.113.5", "--host", "acme-web"],
                             lambda d: d["tenant"] == "beta" and d["actions"] == []),
            "ListSignals": ("own", ["signals"],
                            lambda d: {s["tenant"] for s in d.get("signals", [])} == {"beta"}),
            "PreviewSignal": ("own", ["playbook", "test", self.signal_file()],
                              lambda d: d["tenant"] == "beta" and d["actions"] == []),
            "ListApprovals": ("own", ["approvals", "--all"],
                              lambda d: [a for a in d.get("approvals", [])
                                         if a["tenant"] != "beta"] == []),
            "Approve": ("unknown", ["approve", "{X}", "--reason", "x"], self.acme_approval),
            "Reject": ("unknown", ["reject", "{X}", "--reason", "x"], self.acme_approval),
            "CreateIntegration": ("own", ["integrations", "create", "bea-hook", "--format",
                                          "alertmanager"],
                                  lambda d: d["integration"]["tenant"] == "beta"),
            "ListIntegrations": ("own", ["integrations"],
                                 lambda d: [(i["name"], i["tenant"])
                                            for i in d.get("integrations", [])] ==
                                 [("bea-hook", "beta")]),
            "RevokeIntegration": ("unknown", ["integrations", "revoke", "{X}", "--reason", "x"],
                                  "acme-hook"),
            "CreateJoinToken": ("own", ["tokens", "create", "--reason", "beta servers"],
                                lambda d: d["token"]["tenant"] == "beta"),
            "ListJoinTokens": ("own", ["tokens"],
                               lambda d: {t["tenant"] for t in d.get("tokens", [])} == {"beta"}),
            "RevokeJoinToken": ("unknown", ["tokens", "revoke", "{X}", "--reason", "x"],
                                acme_token),
            "ListTenants": ("own", ["tenants"],
                            lambda d: [t["name"] for t in d["tenants"]] == ["beta"]),
            "CreateTenant": ("install", ["tenants", "create", "gamma", "--reason", "x"]),
            "ListAccess": ("own", ["access"],
                           lambda d: {b["tenant"] for b in d["bindings"]} == {"beta"}),
            "GrantAccess": ("own", ["access", "grant", "zed", "--role", "viewer", "--reason",
                                    "x"], lambda d: d["tenant"] == "beta"),
            "RevokeAccess": ("unknown", ["access", "revoke", "{X}", "--reason", "x"],
                             self.acme_binding),
            "SetHostLabels": ("unknown", ["label", "{X}", "env=dev", "--reason", "x"],
                              "acme-web"),
            "OpenIncident": ("own", ["incident", "open", "INC-B1", "--title", "beta breach"],
                             lambda d: d["tenant"] == "beta"),
            "ListIncidents": ("own", ["incident", "list"],
                              lambda d: [(i["incident_id"], i["tenant"])
                                         for i in d.get("incidents", [])] == [("INC-B1", "beta")]),
            "ShowIncident": ("unknown", ["incident", "show", "{X}"], "INC-A1"),
            "NoteIncident": ("unknown", ["incident", "note", "{X}", "x"], "INC-A1"),
            "CloseIncident": ("unknown", ["incident", "close", "{X}", "--summary", "x"], "INC-A1"),
            "ReportIncident": ("unknown", ["incident", "report", "{X}", "--format", "json",
                                           "--output",
                                           os.path.join(self.lab.tmpdir, "never-written.json")],
                               "INC-A1"),
            # This lab has no channels: beta sees none, and acme's name reads as unknown (the
            # unit tests, notify_test.cc, hold channels of two tenants).
            "ListNotifyChannels": ("own", ["notify", "channels"],
                                   lambda d: d.get("channels", []) == []),
            "TestNotify": ("unknown", ["notify", "test", "{X}"], "acme-siem"),
            # The caller's own certificate, whatever tenant it names.
            "RenewOperatorCertificate": ("own", ["renew"],
                                         lambda d: "BEGIN CERTIFICATE" in d["cert_pem"]),
        }

    @property
    def bea_export(self) -> str:
        return os.path.join(self.lab.tmpdir, "bea-export.jsonl")

    @staticmethod
    def export_tenants(path):
        """The header's tenants and the set of the rows' tenants of an audit export."""
        with open(path) as f:
            lines = [json.loads(line) for line in f]
        return (lines[0].get("tenants"),
                {r["tenant"] for r in lines if r["type"] == "row"})

    def signal_file(self) -> str:
        path = os.path.join(self.lab.tmpdir, "tenant-signal.json")
        with open(path, "w") as f:
            f.write('{"source": "cli", "rule": "r", "addresses": ["203.0.113.5"]}\n')
        return path

    def test_every_rpc_keeps_beta_out_of_acme(self):
        cases = self.cases()
        rpcs = operator_rpcs()
        self.assertGreaterEqual(len(rpcs), 36, rpcs)
        missing = [r for r in rpcs if r not in cases]
        self.assertEqual(missing, [], "Operator RPCs without a tenant case here: give each one a "
                                      "case (and the service a tenant check)")
        for rpc in rpcs:
            kind, argv, *rest = cases[rpc]
            with self.subTest(rpc=rpc):
                if kind == "unknown":
                    # A made-up name of the same shape (evidence ids are hex).
                    fake = "f" * len(rest[0]) if rpc.endswith("Evidence") else "nobody-has-this"
                    real = [a.replace("{X}", rest[0]) for a in argv]
                    made_up = [a.replace("{X}", fake) for a in argv]
                    rc, _, err = self.as_("bea", *real, json_out=False)
                    rc2, _, err2 = self.as_("bea", *made_up, json_out=False)
                    self.assertNotEqual(rc, 0, f"{rpc} on acme's {rest[0]} succeeded")
                    self.assertEqual((rc, err.replace(rest[0], fake)), (rc2, err2),
                                     f"{rpc}: acme's object is told apart from an unknown one")
                elif kind == "own":
                    rc, doc, err = self.as_("bea", *argv)
                    self.assertEqual(rc, 0, err)
                    self.assertTrue(rest[0](doc), f"{rpc}: {doc}")
                else:
                    rc, _, err = self.as_("bea", *argv, json_out=False)
                    self.assertNotEqual(rc, 0, f"{rpc} succeeded")
                    want = ("kept for tenant default only" if kind == "default"
                            else "for the install's admins")
                    self.assertIn(want, err, rpc)
        # Nothing of acme changed.
        host = self.fleet.hosts()["acme-web"]
        self.assertFalse(host["isolated"])
        self.assertEqual(host["tenant"], "acme")
        self.assertTrue(self.reachable("h1"))
        rc, doc, err = self.fleet.cli("tokens", "--tenant=acme")
        self.assertEqual(rc, 0, err)
        self.assertEqual([t["revoked_unix_ms"] for t in doc["tokens"]], [0])
        rc, doc, err = self.fleet.cli("integrations", "--tenant=acme")
        self.assertEqual([(i["name"], i["revoked_unix_ms"]) for i in doc["integrations"]],
                         [("acme-hook", 0)])
        rc, doc, err = self.fleet.cli("approvals", "--all", "--tenant=acme")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("bea", [a["decided_by"] for a in doc["approvals"]])
        rc, doc, err = self.fleet.cli("access", "--tenant=acme")
        self.assertIn(self.acme_binding, [b["binding_id"] for b in doc["bindings"]])
        # acme's own people see its evidence (carl, its viewer, lists and verifies it).
        rc, doc, err = self.as_("carl", "evidence", "list")
        self.assertEqual(rc, 0, err)
        self.assertEqual([(e["evidence_id"], e["tenant"]) for e in doc["evidence"]],
                         [(self.acme_evidence, "acme")])
        rc, doc, err = self.as_("carl", "evidence", "verify", self.acme_evidence)
        self.assertEqual(rc, 0, err)
        self.assertEqual(doc["record"]["tenant"], "acme")
        # The refusals are audited in beta's trail (bea's calls), and none reaches acme's.
        rc, doc, err = self.fleet.cli("audit", "--limit", "1000", "--tenant=beta")
        self.assertEqual(rc, 0, err)
        rows = [r for r in doc["records"] if r["operator"] == "bea" and r["target"] == "acme-web"]
        self.assertTrue(any(r["action"] == "isolate" and r["outcome"].startswith("error: unknown")
                            for r in rows), rows)
        rc, doc, err = self.as_("carl", "audit", "--limit", "1000")
        self.assertEqual(rc, 0, err)
        self.assertEqual([r for r in doc["records"] if r["operator"] == "bea"], [])

    def test_block_all_and_selectors_stay_in_the_tenant_and_the_binding(self):
        # ann: responder on acme's env=prod hosts. A selector matching every web host reaches
        # acme-web only (beta-web and h3 are role=web or unlabelled in other tenants).
        rc, doc, err = self.as_("ann", "isolate", "--selector", "role=web", "--reason", "INC-1",
                                "--yes")
        self.assertEqual(rc, 0, err)
        self.assertEqual([(o["host_id"], o["tenant"]) for o in doc["outcomes"]],
                         [("acme-web", "acme")])
        wait_until(lambda: not self.reachable("h1"), 10, desc="acme-web isolated")
        self.assertTrue(self.reachable("h2"))
        self.assertTrue(self.reachable("h3"))
        rc, doc, err = self.as_("ann", "release", "acme-web", "--reason", "INC-1 done")
        self.assertEqual(rc, 0, err)
        wait_until(lambda: self.reachable("h1"), 10, desc="acme-web released")

        # The install's admin blocks --all in acme: acme's hosts, and no other tenant's.
        attacker = self.lab.ip4("attacker")
        rc, doc, err = self.fleet.cli("block", attacker, "--all", "--reason", "INC-2",
                                      "--tenant=acme")
        self.assertEqual(rc, 0, err)
        self.assertEqual([(o["host_id"], o["tenant"]) for o in doc["outcomes"]],
                         [("acme-web", "acme")])
        wait_until(lambda: not self.reachable("h1"), 10, desc="acme-web blocked")
        self.assertTrue(self.reachable("h2"))
        self.assertTrue(self.reachable("h3"))
        # acme's fleet-wide block names its tenant; beta sees no block at all.
        rc, doc, err = self.fleet.cli("blocks", "--tenant=acme")
        self.assertEqual(rc, 0, err)
        self.assertEqual([(e["fleet_wide"], e["tenant"], e["block"]["remote_cidr"])
                          for e in doc["entries"]], [(True, "acme", f"{attacker}/32")])
        rc, doc, err = self.as_("bea", "blocks")
        self.assertEqual(rc, 0, err)
        self.assertEqual(doc["entries"], [])
        rc, doc, err = self.fleet.cli("unblock", attacker, "--all", "--reason", "INC-2 done",
                                      "--tenant=acme")
        self.assertEqual(rc, 0, err)
        wait_until(lambda: self.reachable("h1"), 10, desc="acme-web unblocked")

    def test_a_host_actions_result_names_the_hosts_tenant(self):
        rc, doc, err = self.as_("ann", "sessions", "acme-web")
        self.assertEqual(rc, 0, err)
        self.assertEqual((doc["host_id"], doc["tenant"]), ("acme-web", "acme"), doc)

    def test_an_incident_is_its_tenants_alone(self):
        # acme's viewer reads acme's incident: ann's capture and its bundle are in it.
        rc, doc, err = self.as_("carl", "incident", "show", "INC-A1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(doc["incident"]["tenant"], "acme")
        self.assertIn(("ann", "capture", "acme-web"),
                      {(r["operator"], r["action"], r["target"]) for r in doc["records"]})
        self.assertEqual([e["evidence_id"] for e in doc["evidence"]], [self.acme_evidence])
        self.assertTrue(doc["evidence"][0]["custody"], doc)
        # beta's admin acting "for" acme's incident is told exactly what a made-up id gets,
        # and nothing is done.
        rc, _, err = self.as_("bea", "hosts", "--incident", "INC-A1", json_out=False)
        rc2, _, err2 = self.as_("bea", "hosts", "--incident", "INC-Z9", json_out=False)
        self.assertNotEqual(rc, 0)
        self.assertEqual((rc, err.replace("INC-A1", "INC-Z9")), (rc2, err2))
        self.assertIn('unknown incident "INC-Z9"', err2)
        # Closed, it takes no more actions: the isolation is refused and the host stays open.
        rc, doc, err = self.as_("ann", "incident", "close", "INC-A1", "--summary", "contained")
        self.assertEqual(rc, 0, err)
        self.assertEqual(doc["state"], "closed")
        rc, _, err = self.as_("ann", "isolate", "acme-web", "--reason", "late", "--incident",
                              "INC-A1", json_out=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("incident INC-A1 is closed", err)
        self.assertFalse(self.fleet.hosts()["acme-web"]["isolated"])
        self.assertTrue(self.reachable("h1"))

    def test_each_tenant_reads_its_own_audit_trail(self):
        # The install's admin reads acme's host and evidence with --tenant '*': rows of acme's.
        for argv in (("status", "acme-web"), ("evidence", "show", self.acme_evidence)):
            rc, _, err = self.fleet.cli(*argv)
            self.assertEqual(rc, 0, err)
        # acme's viewer reads acme's rows: the enrollment of its host, ann's capture of it (its
        # accepted row, and the agent's upload), and nothing of beta or of the install.
        rc, doc, err = self.as_("carl", "audit", "--limit", "1000")
        self.assertEqual(rc, 0, err)
        rows = doc["records"]
        self.assertEqual({r["tenant"] for r in rows}, {"acme"}, rows)
        seen = {(r["operator"], r["action"], r["target"]) for r in rows}
        self.assertIn(("enroll:acme-web", "agent-enroll", "acme-web"), seen)
        self.assertIn(("ann", "capture", "acme-web"), seen)
        self.assertIn(("agent:acme-web", "evidence-received"), {s[:2] for s in seen})
        # The install's admin's block --all in acme (test_block_all_..., run before this one)
        # is acme's row too, and so is its result.
        others = {(r["action"], r["target"]) for r in rows if r["operator"] not in ("ann", "carl")}
        self.assertTrue({("block", "all"), ("block.result", "all"), ("status", "acme-web"),
                         ("evidence-show", self.acme_evidence)} <= others, others)
        self.assertFalse(any("beta" in r["target"] or r["target"] == "h3" for r in rows), rows)
        # The same rows, signed, checked with the README's recipe by someone without the
        # controller: each row's hash holds.
        out = os.path.join(self.lab.tmpdir, "carl-export")
        os.makedirs(out)
        rc, doc, err = self.as_("carl", "audit", "export", "--output",
                                os.path.join(out, "audit.jsonl"))
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.export_tenants(doc["output"]), (["acme"], {"acme"}))
        shutil.copy(os.path.join(self.fleet.pki, "ca", "ca.crt"), os.path.join(out, "ca.crt"))
        r = subprocess.run(["bash", "-e", "-c", readme_recipe()], cwd=out, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("chain ok:", r.stdout)
        # The install's admin reads every tenant's rows with --tenant '*'.
        rc, doc, err = self.fleet.cli("audit", "--limit", "5000")
        self.assertEqual(rc, 0, err)
        self.assertTrue({"acme", "beta", "default"} <= {r["tenant"] for r in doc["records"]})

    def test_exemption_sets_are_the_tenants_own_and_the_shared_ones_it_opts_into(self):
        # acme's own set keeps its operations peer (the service namespace) on port 7000; of
        # the shared library acme opted into ir-jump-host only, so the shipped sets attached
        # to every host of default (or by label) do not apply.
        rc, doc, err = self.as_("ann", "isolate", "acme-web", "--exempt", "acme-ops",
                                "--reason", "INC-3")
        self.assertEqual(rc, 0, err)
        self.assertEqual(doc["outcomes"][0]["exemption_sets"], ["acme-ops", "ir-jump-host"])
        try:
            wait_until(lambda: not self.reachable("h1"), 10, desc="acme-web isolated")
            self.assertTrue(self.lab.tcp_probe("service", self.lab.ip4("h1"), 7000),
                            "acme's own exemption set is enforced")
        finally:
            rc, _, err = self.as_("ann", "release", "acme-web", "--reason", "INC-3 done")
            self.assertEqual(rc, 0, err)
            wait_until(lambda: self.reachable("h1"), 10, desc="acme-web released")
        # Beta has no sets: acme's is unknown to it, its name listed nowhere, nothing changed.
        rc, _, err = self.as_("bea", "isolate", "beta-web", "--exempt", "acme-ops", "--reason",
                              "x", json_out=False)
        self.assertNotEqual(rc, 0)
        self.assertIn('unknown exemption set "acme-ops" (known: none)', err)
        self.assertTrue(self.reachable("h2"))
        # The install's default tenant keeps the whole shipped library.
        rc, doc, err = self.fleet.cli("isolate", "h3", "--reason", "INC-4", "--dry-run",
                                      "--tenant=default")
        self.assertEqual(rc, 0, err)
        self.assertIn("ir-jump-host", doc["outcomes"][0]["exemption_sets"])
        self.assertNotIn("acme-ops", doc["outcomes"][0]["exemption_sets"])

    def test_a_tenants_playbooks_act_on_its_own_hosts_only(self):
        # sshguard on beta-web reports the attacker: beta runs no playbooks (the shipped ones
        # are tenant default's), so it is recorded in beta and nothing is blocked anywhere.
        attacker = self.lab.ip4("attacker")

        def sshguard(node):
            r = self.lab.run(node, [self.fleet.bin("bulkhead-report"), "sshguard-backend",
                                    "--state-dir", self.fleet.agent_state_dir(node)],
                             input=f"block {attacker} 4 32\n", timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])

        sshguard("h2")
        rc, doc, err = self.as_("bea", "audit", "--limit", "1000")
        self.assertEqual(rc, 0, err)
        rows = [r for r in doc["records"] if r["operator"] == "host:beta-web"]
        self.assertEqual([(r["action"], r["outcome"], r["tenant"]) for r in rows],
                         [("signal", "no playbook matched", "beta")], rows)
        self.assertIn("tenant beta has no playbooks", rows[0]["detail"])
        # On acme-web: acme's own playbook blocks it on acme's hosts, and on no other's.
        sshguard("h1")
        try:
            wait_until(lambda: not self.reachable("h1"), 10, desc="blocked on acme-web")
            self.assertTrue(self.reachable("h2"))
            self.assertTrue(self.reachable("h3"))
            for tenant in ("default", "beta"):
                rc, doc, err = self.fleet.cli("blocks", f"--tenant={tenant}")
                self.assertEqual(rc, 0, err)
                self.assertEqual(doc["entries"], [], tenant)
            rc, doc, err = self.as_("carl", "signals")
            self.assertEqual(rc, 0, err)
            acme = [s for s in doc["signals"] if s["delivered_by"] == "host:acme-web"]
            self.assertEqual([(s["tenant"], [a["playbook"] for a in s["actions"]])
                              for s in acme], [("acme", ["acme-ssh"])], acme)
            rc, doc, err = self.as_("carl", "audit", "--limit", "1000")
            self.assertEqual(rc, 0, err)
            self.assertIn(("playbook:acme-ssh", "block", "all"),
                          {(r["operator"], r["action"], r["target"]) for r in doc["records"]})
        finally:
            rc, _, err = self.fleet.cli("unblock", attacker, "--all", "--reason", "test done",
                                        "--tenant=acme")
            self.assertEqual(rc, 0, err)
            wait_until(lambda: self.reachable("h1"), 10, desc="acme-web unblocked")

    def test_a_tenants_approvals_are_decided_by_its_own_approvers(self):
        # carl (acme's viewer) sees acme's pending approval; ann (a responder) may not decide
        # it; dan (acme's approver) approves, and acme-web is isolated, as dan's action.
        rc, doc, err = self.as_("carl", "approvals", "--all")
        self.assertEqual(rc, 0, err)
        self.assertEqual([(a["approval_id"], a["tenant"]) for a in doc["approvals"]],
                         [(self.acme_approval, "acme")])
        rc, _, err = self.as_("ann", "approve", self.acme_approval, "--reason", "x",
                              json_out=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("approve needs approver", err)
        rc, doc, err = self.as_("dan", "approve", self.acme_approval, "--reason", "INC-5")
        self.assertEqual(rc, 0, err)
        self.assertEqual(doc["state"], "approved")
        try:
            wait_until(lambda: not self.reachable("h1"), 15, desc="acme-web isolated")
            self.assertTrue(self.reachable("h3"))
            self.assertTrue(self.reachable("h2"))
        finally:
            rc, _, err = self.as_("dan", "release", "acme-web", "--reason", "INC-5 done")
            self.assertEqual(rc, 0, err)
            wait_until(lambda: self.reachable("h1"), 10, desc="acme-web released")
        rc, doc, err = self.as_("carl", "audit", "--limit", "1000")
        self.assertEqual(rc, 0, err)
        self.assertIn(("dan", "isolate", "acme-web"),
                      {(r["operator"], r["action"], r["target"]) for r in doc["records"]})

    def test_a_customers_viewer_reads_its_tenant_and_changes_nothing(self):
        rc, doc, err = self.as_("carl", "hosts")
        self.assertEqual(rc, 0, err)
        self.assertEqual([(h["host_id"], h["tenant"]) for h in doc["hosts"]],
                         [("acme-web", "acme")])
        rc, _, err = self.as_("carl", "isolate", "acme-web", "--reason", "x", json_out=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("read only", err)
        # The agent's own claim (role=db) selects nothing: the token's labels hold.
        rc, doc, err = self.as_("carl", "hosts", "--selector", "role=db")
        self.assertEqual(rc, 0, err)
        self.assertEqual(doc.get("hosts", []), [])
        # An operator with several tenants must choose; none is guessed.
        r = self.lab.run("jump", [self.fleet.bin("bulkhead"), "--controller",
                                  self.fleet.controller_addr, "--identity",
                                  self.fleet.admin_identity, "hosts"], timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("has roles in tenants acme, beta, default: choose one with --tenant",
                      r.stderr)

    def test_labels_an_admin_sets_decide_what_a_binding_reaches(self):
        # ann is a responder on acme's env=prod hosts; acme-web is env=prod until the install's
        # admin relabels it, and then it is out of ann's reach, answered as unknown.
        rc, doc, err = self.fleet.cli("label", "acme-web", "env=staging", "--reason", "CHG-9",
                                      "--tenant=acme")
        self.assertEqual(rc, 0, err)
        self.assertEqual(doc["labels"], {"role": "web", "env": "staging"})
        self.assertEqual(doc["labels_set_by"], "admin")
        self.assertEqual(doc["reported_labels"], {"role": "db"})  # the agent's claim, shown
        rc, _, err = self.as_("ann", "isolate", "acme-web", "--reason", "x", json_out=False)
        self.assertNotEqual(rc, 0)
        self.assertIn('unknown host "acme-web"', err)
        # The labels hold across the agent's reconnection (they are the controller's).
        self.fleet.kill_agent("h1")
        self.fleet.start_agent("h1", identity=os.path.join(self.lab.tmpdir, "enrolled-acme-web"),
                               labels={"role": "db"})
        self.fleet.wait_online(["acme-web"], timeout=30)
        self.assertEqual(self.fleet.hosts()["acme-web"]["labels"],
                         {"role": "web", "env": "staging"})
        rc, doc, err = self.fleet.cli("label", "acme-web", "env=prod", "--reason", "CHG-9 back",
                                      "--tenant=acme")
        self.assertEqual(rc, 0, err)
        rc, doc, err = self.as_("ann", "isolate", "acme-web", "--reason", "INC-3")
        self.assertEqual(rc, 0, err)
        rc, doc, err = self.as_("ann", "release", "acme-web", "--reason", "INC-3 done")
        self.assertEqual(rc, 0, err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
