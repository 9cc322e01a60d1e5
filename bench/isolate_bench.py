#!/usr/bin/env python3
"""Isolation latency benchmark in the lab (root): a controller and one agent (h1) with a few
live flows, then bulkhead-isolate-bench from the jump host for N isolate/release cycles.

    python3 bench/isolate_bench.py [--build-dir build] [--cycles 200]
"""

import argparse
import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "lab"))

from bhlab import Lab  # noqa: E402
from fleet import Fleet  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--cycles", type=int, default=200)
    a = ap.parse_args()
    with Lab(hosts=1) as lab:
        fleet = Fleet(lab, os.path.abspath(a.build_dir), heartbeat_interval="5s",
                      heartbeat_timeout="15s", log_level="warn")
        fleet.start_controller()
        fleet.start_agent("h1", {"role": "web"})
        fleet.wait_online(["h1"])
        lab.tcp_server("h1", 5000)
        r = lab.run("jump", [fleet.bin("bulkhead-isolate-bench"), "--controller",
                             fleet.controller_addr, "--identity", fleet.admin_identity,
                             "--host", "h1", "--cycles", str(a.cycles)], timeout=600)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        return r.returncode


if __name__ == "__main__":
    sys.exit(main())
