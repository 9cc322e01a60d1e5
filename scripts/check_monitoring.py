#!/usr/bin/env python3
"""Checks packaging/monitoring/ with the real promtool (Debian 12's `prometheus` package, which
scripts/lab-tools.sh extracts into the lab tools cache). Run by CTest (test monitoring, label
unit); exit 77 (skipped) when promtool is not there.

  1. `promtool check rules bulkhead-alerts.yml`;
  2. `promtool test rules bulkhead-alerts.test.yml`: the alerts' logic on made-up series;
  3. every query of bulkhead-dashboard.json, as a recording rule, through `promtool check rules`
     (so each one parses; $job reads ".*");
  4. every bulkhead_* name the rules and the dashboard use is one the controller exports (the
     names in controller/metrics/exposition.cc; a histogram's _bucket, _sum and _count too).

Prints what failed; exit 1 on any failure.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MONITORING = os.path.join(ROOT, "packaging", "monitoring")
EXPOSITION = os.path.join(ROOT, "controller", "metrics", "exposition.cc")
TOOLS = os.environ.get("BULKHEAD_LAB_TOOLS", "/var/cache/bulkhead/lab-tools")
SKIP = 77


def promtool():
    cached = os.path.join(TOOLS, "prometheus", "usr", "bin", "promtool")
    return cached if os.access(cached, os.X_OK) else shutil.which("promtool")


def run(tool, *args, cwd=None):
    r = subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


def exported_names():
    with open(EXPOSITION) as f:
        text = f.read()
    names = set(re.findall(r'"(bulkhead_[a-z0-9_]+)"', text))
    for h in re.findall(r'BuildHistogram\(\)\s*\.Name\("(bulkhead_[a-z0-9_]+)"\)', text):
        names |= {h + "_bucket", h + "_sum", h + "_count"}
    return names


def main():
    tool = promtool()
    if not tool:
        print(f"monitoring: promtool not found (run scripts/lab-tools.sh; cache {TOOLS})")
        return SKIP
    failures = []
    ok, out = run(tool, "check", "rules", "bulkhead-alerts.yml", cwd=MONITORING)
    if not ok:
        failures.append(f"promtool check rules bulkhead-alerts.yml:\n{out}")
    ok, out = run(tool, "test", "rules", "bulkhead-alerts.test.yml", cwd=MONITORING)
    if not ok:
        failures.append(f"promtool test rules bulkhead-alerts.test.yml:\n{out}")

    with open(os.path.join(MONITORING, "bulkhead-dashboard.json")) as f:
        dashboard = json.load(f)
    queries = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    rules = [{"record": f"dashboard:query_{i}", "expr": expr.replace("$job", ".*")}
             for i, (_, expr) in enumerate(queries)]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)  # JSON is YAML
        path = f.name
    try:
        ok, out = run(tool, "check", "rules", path)
    finally:
        os.unlink(path)
    if not ok:
        failures.append(f"a dashboard query does not parse:\n{out}")

    with open(os.path.join(MONITORING, "bulkhead-alerts.yml")) as f:
        alerts = f.read()
    used = set(re.findall(r"\bbulkhead_[a-z0-9_]+", alerts + "\n".join(e for _, e in queries)))
    unknown = sorted(used - exported_names())
    if unknown:
        failures.append("not exported by the controller: " + ", ".join(unknown))

    for failure in failures:
        print(failure)
    print(f"monitoring: {len(rules)} dashboard queries, {len(used)} metric names; "
          f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
