"""HTTPS webhooks on the controller, with the real Alertmanager 0.25
from Debian 12's package (scripts/lab-tools.sh fetches it):

  The controller serves `POST /v1/signals/NAME` on its own address and certificate
  (--webhook-listen/--webhook-cert/--webhook-key). `bulkhead integrations create am --format
  alertmanager` gives the token; Alertmanager in ctl routes a firing alert (posted to its own
  API) to the webhook with that bearer token, verifying the listener's certificate
  (tls_config ca_file). The alert names h2 (role=db) with severity critical: the signal is
  recorded as source alertmanager from integration:am, and the shipped implant-alert playbook's
  capture-then-isolate of h2 waits for approval (approval_for_isolate: role=db); a second
  operator (bob, an approver) approves it, and h2 is isolated: the attacker can no longer
  connect to it, h1 is untouched. The resolved alert is a new signal that releases nothing
  (release_on_resolve: false): h2 stays isolated. A wrong, missing or
  revoked token is answered 401 and nothing is recorded.

Prints the delay from Alertmanager's API to the signal recorded. Root only.
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
import tools  # noqa: E402

IS_ROOT = os.geteuid() == 0
WEBHOOK_PORT = 9443


def report(msg):
    print(f"[webhooks] {msg}", file=sys.stderr, flush=True)


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class WebhooksTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=2)
        cls.addClassCleanup(cls.lab.close)
        ctl = cls.lab.ip4("ctl")
        # The listener's own certificate (not the fleet CA's): self-signed, for the ctl address.
        d = os.path.join(cls.lab.tmpdir, "webhook-tls")
        os.makedirs(d)
        cls.cert, cls.key = os.path.join(d, "webhook.crt"), os.path.join(d, "webhook.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                        "-subj", "/CN=bulkhead-webhook", "-addext", f"subjectAltName=IP:{ctl}",
                        "-keyout", cls.key, "-out", cls.cert],
                       check=True, capture_output=True)
        cls.url = f"https://{ctl}:{WEBHOOK_PORT}"
        cls.fleet = Fleet(cls.lab)
        cls.fleet.start_controller(extra=[
            "--webhook-listen", f"{ctl}:{WEBHOOK_PORT}", "--webhook-cert", cls.cert,
            "--webhook-key", cls.key, "--webhook-rate", "600"])
        wait_until(lambda: cls.lab.tcp_probe("jump", ctl, WEBHOOK_PORT), 10,
                   desc="webhook listener")
        cls.fleet.start_agent("h1", labels={"role": "web"})
        cls.fleet.start_agent("h2", labels={"role": "db"})
        cls.fleet.wait_online(["h1", "h2"])
        cls.servers = [cls.lab.tcp_server(h, 7000) for h in ("h1", "h2")]
        r = subprocess.run([cls.fleet.bin("bulkhead"), "pki", "issue", "operator", "--name", "bob",
                            "--role", "approver", "--dir", cls.fleet.pki],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"pki issue operator bob: {r.stderr}")

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

    def doc(self, *args):
        rc, doc, err = self.fleet.cli(*args)
        self.assertEqual(rc, 0, err)
        return doc

    def reachable(self, host):
        return self.lab.tcp_probe("attacker", self.lab.ip4(host), 7000, timeout=0.5)

    def signals(self, integration):
        return [s for s in self.doc("signals").get("signals", [])
                if s.get("delivered_by") == f"integration:{integration}"]

    def post(self, name, body, token=None, content_type="application/json"):
        """(status, body) of a POST from jump, verifying the listener's certificate."""
        argv = ["curl", "-sS", "--max-time", "10", "--cacert", self.cert, "-o", "-",
                "-w", "\n%{http_code}", "-X", "POST", "-H", f"Content-Type: {content_type}",
                "--data-binary", body, f"{self.url}/v1/signals/{name}"]
        if token is not None:
            argv[1:1] = ["-H", f"Authorization: Bearer {token}"]
        r = self.lab.run("jump", argv, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        text, _, code = r.stdout.rpartition("\n")
        return int(code), text

    def test_alertmanager_firing_alert_waits_for_approval_and_resolved_releases_nothing(self):
        missing = tools.missing_tools(["prometheus-alertmanager"])
        if missing:
            if os.environ.get("CI") == "true":
                self.fail("prometheus-alertmanager not fetched (scripts/lab-tools.sh)")
            self.skipTest("prometheus-alertmanager not fetched (scripts/lab-tools.sh)")
        created = self.doc("integrations", "create", "am", "--format", "alertmanager")
        token = created["token"]
        self.assertEqual(len(token), 64)
        am = tools.Alertmanager(self.lab, "ctl", webhook_url=f"{self.url}/v1/signals/am",
                                bearer=token, ca_file=self.cert, group_wait="0s",
                                group_interval="1s")
        self._stops.append(am.stop)
        am.start()
        labels = {"alertname": "ImplantBeacon", "host": "h2", "severity": "critical",
                  "src_ip": "203.0.113.9"}

        t0 = time.monotonic()
        am.fire(labels, {"summary": "beaconing from h2"})
        wait_until(lambda: len(self.signals("am")) >= 1, 20, interval=0.1,
                   desc="the firing alert recorded as a signal")
        report(f"Alertmanager API -> signal recorded: {time.monotonic() - t0:.2f} s "
               "(group_wait 0s; polled with `bulkhead signals`)")
        firing = self.signals("am")[0]
        sig = firing["signal"]
        self.assertEqual(sig["source"], "alertmanager")
        self.assertEqual(sig["integration"], "am")
        self.assertEqual(sig["rule"], "ImplantBeacon")
        self.assertEqual(sig["host"], "h2")
        self.assertEqual(sig["severity"], "critical")
        self.assertFalse(sig.get("resolved", False))
        self.assertEqual(len(sig["payload_sha256"]), 64)
        # The isolation of h2 (role=db) waits for a responder's approval.
        self.assertEqual(firing["disposition"], "awaiting-approval", firing)
        self.assertTrue(any(a["outcome"].startswith("awaiting approval")
                            for a in firing["actions"]), firing)
        self.assertFalse(any(a["outcome"] == "started" for a in firing["actions"]), firing)
        self.assertTrue(self.reachable("h2"))

        # A second operator (not the integration that requested it) approves: h2 is isolated.
        waiting = [a for a in firing["actions"] if a["outcome"].startswith("awaiting approval")]
        approval_id = waiting[0]["outcome"].split()[2].rstrip(":")
        bob = os.path.join(self.fleet.pki, "operators", "bob")
        rc, decided, err = self.fleet.cli("approve", approval_id, "--reason", "INC-7 beaconing",
                                          identity=bob)
        self.assertEqual(rc, 0, err)
        self.assertEqual((decided["state"], decided["decided_by"], decided["requested_by"]),
                         ("approved", "bob", "integration:am"), decided)
        wait_until(lambda: not self.reachable("h2"), 60, interval=0.2, desc="h2 isolated")
        self.assertTrue(self.reachable("h1"))

        am.resolve(labels)
        wait_until(lambda: any(s["signal"].get("resolved") for s in self.signals("am")), 20,
                   interval=0.1, desc="the resolved alert recorded as a signal")
        resolved = [s for s in self.signals("am") if s["signal"].get("resolved")][0]
        self.assertNotEqual(resolved["signal_id"], firing["signal_id"])
        self.assertEqual(resolved["signal"]["rule"], "ImplantBeacon")
        self.assertFalse(any(a["action"] == "release" for a in resolved.get("actions", [])),
                         resolved)
        self.assertFalse(self.reachable("h2"))  # still isolated
        # Alertmanager repeats nothing within repeat_interval, and a repeat would be a
        # duplicate: still one firing and one resolved signal.
        time.sleep(1.5)
        self.assertEqual(len(self.signals("am")), 2, self.signals("am"))

    def test_bad_tokens_are_refused_and_record_nothing(self):
        token = self.doc("integrations", "create", "probe", "--format", "alertmanager")["token"]
        alert = ('{"version":"4","status":"firing","alerts":[{"status":"firing",'
                 '"fingerprint":"p1","startsAt":"2026-12-04T02:40:00Z",'
                 '"labels":{"alertname":"Probe","host":"h1"}}]}')
        self.assertEqual(self.post("probe", alert, "0" * 64)[0], 401)
        self.assertEqual(self.post("probe", alert)[0], 401)
        self.assertEqual(self.post("nobody", alert, token)[0], 404)
        self.assertEqual(self.post("probe", alert, token, content_type="text/plain")[0], 415)
        status, body = self.post("probe", alert.replace('"alertname":"Probe",', ""), token)
        self.assertEqual(status, 400)
        self.assertIn("alerts[0].labels.alertname", body)
        self.assertEqual(self.signals("probe"), [])
        # The right token works; after revocation it does not.
        self.assertEqual(self.post("probe", alert, token)[0], 202)
        self.assertEqual(len(self.signals("probe")), 1)
        self.doc("integrations", "revoke", "probe", "--reason", "lab test")
        self.assertEqual(self.post("probe", alert.replace("p1", "p2"), token)[0], 401)
        self.assertEqual(len(self.signals("probe")), 1)
        listed = {i["name"]: i for i in self.doc("integrations")["integrations"]}
        self.assertIn("revoked_unix_ms", listed["probe"])
        # Refusals are audited, bounded: one row per integration per minute.
        rows = [r for r in self.doc("audit", "--limit", "200")["records"]
                if r["action"] == "webhook-refused"]
        self.assertGreaterEqual(len(rows), 1)
        self.assertLessEqual(len(rows), 3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
