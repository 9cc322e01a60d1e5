#!/usr/bin/env python3
"""Capture benchmark in the lab (root): a controller and one agent (h1); h1 first as it is, then
with 1,000 extra processes and 5,000 extra sockets (2,500 established TCP connections over
loopback, both ends). For each, N captures from the jump host; prints the medians of the time
the agent spent collecting (manifest started -> finished: packing comes after), the end-to-end
time of `bulkhead capture --output` (request, collect, pack, upload, store, download), the
time the agent spent packing and what comes after it (upload, store, download and the CLI's
verification), timed from the CLI's progress lines; the agent's CPU time per capture (all its
threads, min and max too) and the bundle size, and each collector's median duration. Target
(DESIGN.md): capture end to end with 10,000 processes and 50,000 sockets <= 2 s
(--procs 10000 --sockets 50000).

    python3 bench/capture_bench.py [--build-dir build] [--runs 5] [--procs 1000] [--sockets 5000]
"""

import argparse
import json
import os
import statistics
import sys
import tarfile

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "lab"))

from bhlab import Lab, wait_until  # noqa: E402
from fleet import Fleet  # noqa: E402

LOAD = r"""
import os, resource, signal, socket, sys, time
procs, pairs, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
# Each holder process keeps as many connection pairs as its open-files limit allows (the hard
# limit may be below what all of them need, and raising it may not be permitted).
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
per = max(1, (hard - 1024) // 2) if hard != resource.RLIM_INFINITY else pairs
kids = []
for _ in range(procs):
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.execv("/bin/sleep", ["sleep", "3600"])
    kids.append(pid)
r, w = os.pipe()
left = pairs
while left > 0:
    n = min(per, left)
    left -= n
    pid = os.fork()
    if pid == 0:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n * 2 + 1024), hard))
        l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        l.bind(("127.0.0.1", 0)); l.listen(4096)
        held = []
        for _ in range(n):
            c = socket.create_connection(l.getsockname())
            s, _ = l.accept()
            held += [c, s]
        os.write(w, b"%d\n" % len(held))
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        while True: time.sleep(3600)
    kids.append(pid)
total, buf = 0, b""
while buf.count(b"\n") < len(kids) - procs:
    buf += os.read(r, 4096)
total = sum(int(x) for x in buf.split())
open(ready, "w").write(str(total))
def stop(*_):
    for k in kids:
        try: os.kill(k, signal.SIGKILL)
        except OSError: pass
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
while True: time.sleep(3600)
"""


def cpu_seconds(pid):
    """User + system CPU of process `pid` (all its threads, exited ones included), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Runs a command in the jump host and prints each line of its output (standard error merged)
# with the seconds since the start, so the stages of `capture`'s progress can be timed.
STAMP = r"""
import subprocess, sys, time
t0 = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
for line in p.stdout:
    print(f"{time.monotonic() - t0:.4f} {line.rstrip()}", flush=True)
rc = p.wait()
print(f"{time.monotonic() - t0:.4f} exit {rc}")
sys.exit(rc)
"""


def stage_start(lines, text):
    """Seconds at which the first progress line containing `text` came."""
    return next((float(t) for t, rest in lines if text in rest), None)


def capture_once(fleet, out_dir, label, i):
    out = os.path.join(out_dir, f"{label}-{i}.tar.gz")
    agent_pid = fleet.agents["h1"].pid
    cpu0 = cpu_seconds(agent_pid)
    argv = [*fleet.cli_prefix, fleet.bin("bulkhead"), "--controller", fleet.controller_addr,
            "--identity", fleet.admin_identity, "capture", "h1", "--reason",
            f"bench {label} {i}", "--output", out]
    r = fleet.lab.run("jump", [sys.executable, "-c", STAMP, *argv], timeout=600)
    cpu = cpu_seconds(agent_pid) - cpu0
    if r.returncode != 0:
        raise RuntimeError(f"capture failed ({r.returncode}): {r.stdout}")
    lines = [tuple(x.split(" ", 1)) for x in r.stdout.splitlines() if " " in x]
    wall = float(lines[-1][0])  # the CLI's start to its exit, without the wrapper's own start
    packing, uploading = stage_start(lines, " packing "), stage_start(lines, " uploading ")
    with tarfile.open(out, "r:gz") as t:
        top = t.getnames()[0].split("/", 1)[0]
        manifest = json.load(t.extractfile(f"{top}/manifest.json"))
        log = [json.loads(x) for x in t.extractfile(f"{top}/collection-log.jsonl").read()
               .decode().splitlines() if x.strip()]
        procs = sum(1 for _ in t.extractfile(f"{top}/artifacts/processes.jsonl"))
        socks = sum(1 for _ in t.extractfile(f"{top}/artifacts/sockets.jsonl"))
    size = os.path.getsize(out)
    os.unlink(out)
    return {"collect_s": (manifest["finished_at_unix_ms"] - manifest["started_at_unix_ms"]) / 1e3,
            "wall_s": wall, "cpu_s": cpu, "size": size, "procs": procs, "sockets": socks,
            "pack_s": uploading - packing if packing and uploading else 0.0,
            "after_s": wall - uploading if uploading else 0.0,
            "collectors": {e["collector"]: e["duration_ms"] for e in log}}


def report(label, runs):
    med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
    print(f"{label}: {runs[0]['procs']} processes, {runs[0]['sockets']} sockets, "
          f"{len(runs)} runs")
    print(f"  collection median {med('collect_s'):.3f} s (min {min(r['collect_s'] for r in runs):.3f},"
          f" max {max(r['collect_s'] for r in runs):.3f})")
    for key, what in (("wall_s", "end to end (capture --output)"),
                      ("pack_s", "packing (first packing to first uploading line)"),
                      ("after_s", "upload, store, download and verify (to the last line)"),
                      ("cpu_s", "agent CPU")):
        print(f"  {what} median {med(key):.3f} s (min {min(r[key] for r in runs):.3f}, "
              f"max {max(r[key] for r in runs):.3f})")
    print(f"  bundle median {med('size') / 2**20:.2f} MiB")
    names = runs[0]["collectors"].keys()
    print("  collectors (median ms): " + ", ".join(
        f"{n} {statistics.median(r['collectors'].get(n, 0) for r in runs):.0f}" for n in names))
    sys.stdout.flush()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--procs", type=int, default=1000)
    ap.add_argument("--sockets", type=int, default=5000)
    a = ap.parse_args()
    with Lab(hosts=1) as lab:
        fleet = Fleet(lab, os.path.abspath(a.build_dir), heartbeat_interval="5s",
                      heartbeat_timeout="15s", log_level="warn")
        fleet.start_controller()
        fleet.start_agent("h1", {"role": "web"})
        fleet.wait_online(["h1"])
        out_dir = os.path.join(lab.tmpdir, "bench")
        os.makedirs(out_dir)
        report("idle host", [capture_once(fleet, out_dir, "idle", i) for i in range(a.runs)])
        ready = os.path.join(lab.tmpdir, "load.ready")
        load = lab.spawn("h1", [sys.executable, "-c", LOAD, str(a.procs), str(a.sockets // 2),
                                ready], label="load")
        wait_until(lambda: os.path.exists(ready) or load.poll() is not None, 300,
                   desc="load ready")
        if load.poll() is not None:
            print(lab.log_text(load), file=sys.stderr)
            return 1
        report(f"+{a.procs} processes, +{a.sockets} sockets",
               [capture_once(fleet, out_dir, "loaded", i) for i in range(a.runs)])
        load.terminate()
        load.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
