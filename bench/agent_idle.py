#!/usr/bin/env python3
"""The agent at rest, in the lab (root): a controller and one agent (h1), connected and idle.
For each run and each variant, starts the agent, waits until the controller lists it online,
lets it idle, then reads from /proc: RSS (VmRSS) at the start of the idle window (before the
agent's first trim of clean library pages, 15 s after it starts) and at its end, PSS
(smaps_rollup: all, anonymous, file), its threads, and the CPU it used over the idle window. Prints min/median/max per variant and
each variant's median against the first one (the baseline), measured in the same run.
Targets (DESIGN.md): RSS <= 15 MB, CPU <= 0.1 % of a core.

    python3 bench/agent_idle.py [--build-dir build] [--runs 5] [--idle 20]
        [--variant NAME:K=V[,K=V]]...    e.g. --variant arena2:MALLOC_ARENA_MAX=2
                                         BIN=PATH runs another agent program (a link variant)
"""

import argparse
import os
import statistics
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "lab"))

from bhlab import Lab, wait_until  # noqa: E402
from fleet import Fleet  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pss_kb(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in ("Pss:", "Pss_Anon:", "Pss_File:"):
                out[parts[0][:-1]] = int(parts[1])
    return out


def rss_by_file(pid: int) -> dict:
    """Rss and Pss (KiB) per mapped file ("[anon]" for the rest), from /proc/PID/smaps."""
    out = {}
    name = "[anon]"
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and ":" not in parts[0]:  # a mapping's header line
                name = parts[5] if len(parts) >= 6 else "[anon]"
                name = os.path.basename(name) if name.startswith("/") else name
                out.setdefault(name, [0, 0])
            elif parts[0] == "Rss:":
                out[name][0] += int(parts[1])
            elif parts[0] == "Pss:":
                out[name][1] += int(parts[1])
    return out


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def parse_variant(text: str):
    name, _, assignments = text.partition(":")
    env = {}
    for a in filter(None, assignments.split(",")):
        k, _, v = a.partition("=")
        env[k] = v
    return name, env


def measure(lab, fleet, env, idle: float) -> dict:
    env = dict(env)
    argv = fleet.agent_argv("h1")
    if "BIN" in env:
        argv[0] = env.pop("BIN")
    p = lab.spawn("h1", argv, env=dict(os.environ, **env), label="agent-h1")
    try:
        fleet.wait_online(["h1"], timeout=30)
        time.sleep(2)  # the first state report and its enforcement settle
        t0, c0 = time.monotonic(), cpu_ticks(p.pid)
        rss_start = status_kb(p.pid, "VmRSS")  # before the agent's first trim (15 s after start)
        time.sleep(idle)
        c1, t1 = cpu_ticks(p.pid), time.monotonic()
        pss = pss_kb(p.pid)
        measure.last_files = rss_by_file(p.pid)
        return {"rss_start_kb": rss_start, "rss_kb": status_kb(p.pid, "VmRSS"),
                "hwm_kb": status_kb(p.pid, "VmHWM"),
                "pss_kb": pss.get("Pss", 0), "pss_anon_kb": pss.get("Pss_Anon", 0),
                "pss_file_kb": pss.get("Pss_File", 0), "threads": status_kb(p.pid, "Threads"),
                "cpu_pct": 100.0 * (c1 - c0) / CLK_TCK / (t1 - t0)}
    finally:
        p.kill()
        p.wait(timeout=15)
        fleet.wait_online(["h1"], timeout=30, online=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--idle", type=float, default=20.0)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--files", type=int, default=0,
                    help="print the N mapped files with the most RSS (last run of each variant)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("agent_idle: the lab needs root", file=sys.stderr)
        return 2
    variants = [("baseline", {})] + [parse_variant(v) for v in args.variant]
    results = {name: [] for name, _ in variants}
    with Lab(hosts=1) as lab:
        # The shipped defaults (5 s heartbeats), not the tests' quick ones.
        fleet = Fleet(lab, build_dir=args.build_dir, heartbeat_interval="5s",
                      heartbeat_timeout="15s", log_level="info")
        fleet.start_controller()
        for run in range(args.runs):
            # Variants interleaved, so a drift of the machine touches each alike.
            for name, env in variants:
                r = measure(lab, fleet, env, args.idle)
                results[name].append(r)
                if args.files and run == args.runs - 1:
                    top = sorted(measure.last_files.items(), key=lambda kv: -kv[1][0])
                    print(f"{name}: RSS / PSS KiB by mapping ({len(top)} mappings)")
                    for file, (rss, pss) in top[:args.files]:
                        print(f"  {rss:7d} {pss:7d}  {file}")
                print(f"run {run + 1} {name}: rss {r['rss_kb']} KiB, pss {r['pss_kb']} KiB "
                      f"(anon {r['pss_anon_kb']}, file {r['pss_file_kb']}), "
                      f"{r['threads']} threads, cpu {r['cpu_pct']:.3f} %", flush=True)
    base = {k: statistics.median(r[k] for r in results["baseline"])
            for k in results["baseline"][0]}
    print(f"\nagent idle, {args.runs} runs of {args.idle:.0f} s (min / median / max):")
    for name, _ in variants:
        rs = results[name]
        for key, unit in (("rss_start_kb", "KiB"), ("rss_kb", "KiB"), ("pss_kb", "KiB"), ("pss_anon_kb", "KiB"),
                          ("pss_file_kb", "KiB"), ("hwm_kb", "KiB"), ("threads", ""),
                          ("cpu_pct", "% of a core")):
            vals = [r[key] for r in rs]
            med = statistics.median(vals)
            ratio = f"  ({med / base[key]:.2f}x baseline)" if name != "baseline" and base[key] \
                else ""
            print(f"  {name:10} {key:12} {min(vals):10.3f} / {med:10.3f} / {max(vals):10.3f} "
                  f"{unit}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
