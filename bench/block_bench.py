#!/usr/bin/env python3
"""Fleet-wide block latency in the lab (root): a controller and N agents, then from the jump
host `bulkhead block ADDR --all` (and `unblock --all`) for a number of cycles. Each figure is
the CLI's wall time from start to exit with every agent's verified acknowledgement, including
the CLI's own start-up and TLS handshake.

    python3 bench/block_bench.py [--build-dir build] [--hosts 3] [--cycles 50]
"""

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "lab"))

from bhlab import Lab  # noqa: E402
from fleet import Fleet  # noqa: E402


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--cycles", type=int, default=50)
    a = ap.parse_args()
    with Lab(hosts=a.hosts) as lab:
        fleet = Fleet(lab, os.path.abspath(a.build_dir), heartbeat_interval="5s",
                      heartbeat_timeout="15s", log_level="warn")
        fleet.start_controller()
        names = [h.name for h in lab.hosts]
        for h in names:
            fleet.start_agent(h, {"role": "web"})
        fleet.wait_online(names)
        times = {"block": [], "unblock": []}
        agent_ms = []
        for i in range(a.cycles):
            for verb in ("block", "unblock"):
                t0 = time.monotonic()
                rc, doc, err = fleet.cli(verb, "10.77.0.66", "--all", "--reason", f"bench {i}")
                dt = 1000 * (time.monotonic() - t0)
                if rc != 0:
                    print(f"{verb} failed ({rc}): {err} {doc}", file=sys.stderr)
                    return 1
                if len(doc["outcomes"]) != len(names) or any(
                        o["state"] != "ENFORCED" for o in doc["outcomes"]):
                    print(f"{verb}: not enforced everywhere: {json.dumps(doc)}", file=sys.stderr)
                    return 1
                times[verb].append(dt)
                if verb == "block":
                    for o in doc["outcomes"]:
                        agent_ms.append(sum(int(s.get("duration_us", 0))
                                            for s in o["report"]["steps"]) / 1000.0)
        for verb, v in times.items():
            print(f"{verb} --all on {len(names)} agents, CLI start to every ack ({len(v)} runs): "
                  f"p50 {statistics.median(v):.1f} ms, p99 {pct(v, 99):.1f} ms, max {max(v):.1f} ms")
        print(f"agent side of a block (persist, update/apply, read back, cut): "
              f"p50 {statistics.median(agent_ms):.2f} ms, p99 {pct(agent_ms, 99):.2f} ms")
        return 0


if __name__ == "__main__":
    sys.exit(main())
