#!/usr/bin/env python3
"""The controller's metrics and health, in the lab, with the real Prometheus and promtool
(Debian 12's `prometheus` package, extracted by scripts/lab-tools.sh, never installed):

  the controller serves --metrics-listen 127.0.0.1:9464 inside its node. /healthz and /readyz
  answer 200; /metrics passes `promtool check metrics`; an isolate of h1 moves
  bulkhead_hosts{connection="online",isolation="isolated"} from 0 to 1 and counts the call
  (bulkhead_operator_calls_total, bulkhead_commands_total) and the agent's enforcement
  (bulkhead_agent_applies_total, the apply histogram); when h1's agent is killed the host shows
  offline while isolated, the input of the BulkheadIsolatedHostOffline alert. A real Prometheus
  in the same node scrapes the controller every second with packaging/monitoring's alert rules
  loaded: its HTTP API answers the isolated-host query and reports every rule healthy.

Root only (the lab), and skipped when the prometheus package is not in the lab tools cache.
"""

import json
import os
import re
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..", "lab")))

from bhlab import Lab, case_failed, wait_until  # noqa: E402
from fleet import Fleet  # noqa: E402

IS_ROOT = os.geteuid() == 0
TOOLS_DIR = os.environ.get("BULKHEAD_LAB_TOOLS", "/var/cache/bulkhead/lab-tools")
PROMETHEUS_BIN = os.path.join(TOOLS_DIR, "prometheus", "usr", "bin")
RULES = os.path.join(HERE, "..", "..", "packaging", "monitoring", "bulkhead-alerts.yml")
METRICS = "127.0.0.1:9464"
PROMETHEUS = "127.0.0.1:9090"

# GET a URL from inside a lab node: prints the status code, a newline, then the body.
FETCH = """
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=5)
    code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
sys.stdout.write(f"{code}\\n{body.decode()}")
"""

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def samples(text):
    """{(name, frozenset of (label, value)): float} from the text exposition format."""
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(text, metric, /, **labels):
    return samples(text).get((metric, frozenset(labels.items())))


@unittest.skipUnless(IS_ROOT, "the lab needs root")
@unittest.skipUnless(os.path.exists(os.path.join(PROMETHEUS_BIN, "promtool")),
                     "prometheus not in the lab tools cache (scripts/lab-tools.sh)")
class MetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=2)
        cls.addClassCleanup(cls.lab.close)
        cls.fleet = Fleet(cls.lab)
        cls.fleet.start_controller(extra=["--metrics-listen", METRICS])
        for h in ("h1", "h2"):
            cls.fleet.start_agent(h)
        cls.fleet.wait_online(["h1", "h2"])

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def get(self, url, allow_unreachable=False):
        """(HTTP status, body); with allow_unreachable, (None, "") when nothing listens yet."""
        r = self.lab.run("ctl", [sys.executable, "-c", FETCH, url], timeout=20)
        if allow_unreachable and r.returncode != 0 and "Connection refused" in r.stderr:
            return None, ""
        self.assertEqual(r.returncode, 0, r.stderr)
        code, _, body = r.stdout.partition("\n")
        return int(code), body

    def scrape(self):
        code, text = self.get(f"http://{METRICS}/metrics")
        self.assertEqual(code, 200)
        return text

    def ok(self, *args):
        rc, doc, err = self.fleet.cli(*args, timeout=120)
        self.assertEqual(rc, 0, f"{args}: {err} {doc}")
        return doc

    def test_1_health_and_readiness(self):
        self.assertEqual(self.get(f"http://{METRICS}/healthz"), (200, "ok\n"))
        self.assertEqual(self.get(f"http://{METRICS}/readyz"), (200, "ready\n"))
        self.assertEqual(self.get(f"http://{METRICS}/nothing")[0], 404)

    def test_2_an_isolate_moves_the_figures(self):
        before = self.scrape()
        lint = subprocess.run([os.path.join(PROMETHEUS_BIN, "promtool"), "check", "metrics"],
                              input=before, capture_output=True, text=True, timeout=30)
        self.assertEqual(lint.returncode, 0, lint.stdout + lint.stderr)
        self.assertEqual(value(before, "bulkhead_hosts", connection="online",
                               isolation="isolated"), 0)
        self.assertEqual(value(before, "bulkhead_hosts", connection="online", isolation="open"), 2)
        self.assertEqual(value(before, "bulkhead_host_online", host="h1"), 1)
        self.assertEqual(value(before, "bulkhead_agent_streams"), 2)
        self.assertIsNotNone(value(before, "bulkhead_certificate_expiry_timestamp_seconds",
                                   kind="agent", name="h1"))
        self.assertGreater(value(before, "bulkhead_evidence_free_bytes"), 0)
        isolates = value(before, "bulkhead_commands_total", kind="isolate", phase="call",
                         outcome="ok") or 0
        applies = value(before, "bulkhead_agent_applies_total", outcome="ok")
        applied = value(before, "bulkhead_agent_apply_duration_seconds_count")

        self.ok("isolate", "h1", "--reason", "INC-14 metrics")
        after = self.scrape()
        self.assertEqual(value(after, "bulkhead_hosts", connection="online",
                               isolation="isolated"), 1)
        self.assertEqual(value(after, "bulkhead_host_isolated", host="h1"), 1)
        self.assertEqual(value(after, "bulkhead_host_isolated", host="h2"), 0)
        self.assertEqual(value(after, "bulkhead_commands_total", kind="isolate", phase="call",
                               outcome="ok"), isolates + 1)
        self.assertGreaterEqual(value(after, "bulkhead_commands_total", kind="isolate",
                                      phase="result", outcome="ok"), 1)
        self.assertGreaterEqual(value(after, "bulkhead_operator_calls_total", method="Isolate",
                                      code="OK"), 1)
        self.assertGreaterEqual(value(after, "bulkhead_operator_call_duration_seconds_count",
                                      method="Isolate"), 1)
        self.assertGreater(value(after, "bulkhead_agent_applies_total", outcome="ok"), applies)
        self.assertGreater(value(after, "bulkhead_agent_apply_duration_seconds_count"), applied)
        self.assertGreater(value(after, "bulkhead_audit_rows"), value(before, "bulkhead_audit_rows"))

    def test_3_prometheus_scrapes_the_controller_with_the_alert_rules(self):
        if value(self.scrape(), "bulkhead_host_isolated", host="h1") != 1:
            self.ok("isolate", "h1", "--reason", "INC-14 metrics")
        conf_dir = os.path.join(self.lab.tmpdir, "prometheus")
        os.makedirs(conf_dir, exist_ok=True)
        config = os.path.join(conf_dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {os.path.abspath(RULES)}
scrape_configs:
  - job_name: bulkhead-controller
    static_configs:
      - targets: ["{METRICS}"]
""")
        check = subprocess.run([os.path.join(PROMETHEUS_BIN, "promtool"), "check", "config",
                                config], capture_output=True, text=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.lab.spawn("ctl", [os.path.join(PROMETHEUS_BIN, "prometheus"),
                               f"--config.file={config}",
                               f"--storage.tsdb.path={os.path.join(conf_dir, 'data')}",
                               f"--web.listen-address={PROMETHEUS}"], label="prometheus")

        def query(expr):
            # Prometheus may not listen yet (it starts in the background): retried.
            code, body = self.get(f"http://{PROMETHEUS}/api/v1/query?query=" +
                                  urllib_quote(expr), allow_unreachable=True)
            if code != 200:
                return None
            result = json.loads(body)["data"]["result"]
            return result or None

        isolated = wait_until(
            lambda: query('bulkhead_hosts{connection="online",isolation="isolated"} == 1'),
            timeout=60, interval=0.5, desc="Prometheus scraped the isolated host")
        self.assertEqual(isolated[0]["metric"]["job"], "bulkhead-controller")
        up = query('up{job="bulkhead-controller"}')
        self.assertEqual(up[0]["value"][1], "1")

        code, body = self.get(f"http://{PROMETHEUS}/api/v1/rules")
        self.assertEqual(code, 200)
        rules = [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]
        self.assertEqual(len(rules), 5)
        wait_until(lambda: all(r.get("health") == "ok" for r in self.rules()), timeout=30,
                   interval=0.5, desc="every rule evaluated without error")

        # h1's agent goes away: the isolated host shows offline, the alert's input.
        self.fleet.kill_agent("h1")
        wait_until(lambda: query('bulkhead_host_isolated{host="h1"} == 1 and on(instance, host) '
                                 'bulkhead_host_online == 0'),
                   timeout=60, interval=0.5, desc="h1 offline while isolated, in Prometheus")
        pending = wait_until(
            lambda: [a for a in self.alerts() if a["labels"]["alertname"] ==
                     "BulkheadIsolatedHostOffline"],
            timeout=30, interval=0.5, desc="BulkheadIsolatedHostOffline pending")
        self.assertEqual(pending[0]["labels"]["host"], "h1")
        self.assertIn(pending[0]["state"], ("pending", "firing"))

    def rules(self):
        code, body = self.get(f"http://{PROMETHEUS}/api/v1/rules")
        return [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]] \
            if code == 200 else []

    def alerts(self):
        code, body = self.get(f"http://{PROMETHEUS}/api/v1/alerts")
        return json.loads(body)["data"]["alerts"] if code == 200 else []


def urllib_quote(text):
    from urllib.parse import quote
    return quote(text, safe="")


if __name__ == "__main__":
    unittest.main(verbosity=2)
