#!/usr/bin/env python3
"""Isolation latency benchmark in the lab (root): a controller and one agent (h1) with a few
live flows, then bulkhead-isolate-bench from the jump host for N isolate/release cycles.

    python3 bench/isolate_bench.py [--build-dir build] [--cycles 200]
    python3 bench/isolate_bench.py --tenants [--runs 5] [--cycles 100]

--tenants: what tenants and role bindings cost an isolate. First the single-team install
(no tenant but default, the admin's certificate role), then with 50 tenants and 200 bindings
in the store, runs alternating between the admin (--tenant default) and an operator whose
only role is a responder binding limited by labels (role=web), on the same host. Prints each
run's figures and the min/median/max of the runs' isolate+release p50, and the ratios.

--stores: the same isolate/release cycles on SQLite (the baseline) and on PostgreSQL 15 (the
lab-tools build, in node ctl, unix socket: tests/lab/postgres.py), runs alternating, the
controller restarted on the other store each time.

--after-trim: the isolate an agent answers after idling. 15 s after it starts (then every
5 min) the agent unmaps its clean library pages (agent/linux/resident_pages.h), so its first
isolate faults the code it runs back in. Each run starts h1's agent with
--keep-resident-pages (the baseline), then as shipped; each idles 20 s, then one isolate is
timed, and one more right after it, with the agent's minor page faults for each.

--baseline-agent PATH: two agent programs on the same host, runs alternating: PATH (the
baseline, e.g. a build of the commit before a change) and the build's agent. Each run restarts
h1's agent and times --cycles isolate/release cycles. Prints the min/median/max of the runs'
isolate p50 (operator call) and agent apply p50, and the ratios.

--replicas: two controllers serving one PostgreSQL 15 database at once (--replica a, c); h1's
agent streams to c. Runs alternate between calls to c (the baseline: the agent's own
controller) and calls to a (the state reaches c at the commit's notice, the acknowledgement
comes back to a on the link).
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "lab"))

from bhlab import Lab  # noqa: E402
from fleet import Fleet  # noqa: E402


def run_bench(lab, fleet, identity, cycles, tenant=""):
    argv = [fleet.bin("bulkhead-isolate-bench"), "--controller", fleet.controller_addr,
            "--identity", identity, "--host", "h1", "--cycles", str(cycles)]
    if tenant:
        argv += ["--tenant", tenant]
    r = lab.run("jump", argv, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"bench failed: {r.stderr}")
    both = re.search(r"^both\s+n=\d+\s+rpc p50\s+([\d.]+) ms", r.stdout, re.M)
    return r.stdout, float(both.group(1))


def run_bench_tails(lab, fleet, cycles):
    """run_bench as the admin: the isolate+release p50 and p99 (None when none is printed)."""
    out, p50 = run_bench(lab, fleet, fleet.admin_identity, cycles)
    p99 = re.search(r"^both\s+n=\d+\s+rpc p50\s+[\d.]+ ms\s+p90\s+[\d.]+ ms\s+p99\s+([\d.]+) ms",
                    out, re.M)
    return p50, float(p99.group(1)) if p99 else None


def minor_faults(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])  # field 10, minflt


def isolate_once(lab, fleet):
    """One isolate+release cycle: the agent's own apply time of the isolate (its report's
    duration: the bench's first call also pays for its channel) and the agent's minor faults
    meanwhile."""
    pid = fleet.agents["h1"].pid
    before = minor_faults(pid)
    out, _ = run_bench(lab, fleet, fleet.admin_identity, 1)
    faults = minor_faults(pid) - before
    m = re.search(r"^isolate\s+n=1\s.*agent apply p50\s+([\d.]+) ms", out, re.M)
    return float(m.group(1)), faults


def restart_agent(fleet, extra=()):
    """Stops h1's agent, starts fleet.bin("bulkhead-agent") with `extra` flags, waits online."""
    fleet.kill_agent("h1", signal.SIGTERM)
    fleet.wait_online(["h1"], online=False, timeout=30)
    fleet.start_agent("h1", {"role": "web"}, extra=extra)
    fleet.wait_online(["h1"])


def compare_after_trim(lab, fleet, runs):
    """Per run, h1's agent twice: with --keep-resident-pages (the baseline), then as shipped."""
    ms = {"kept": {"idle": [], "again": []}, "trimmed": {"idle": [], "again": []}}
    faults = {"kept": {"idle": [], "again": []}, "trimmed": {"idle": [], "again": []}}
    for run in range(runs):
        for variant, extra in (("kept", ["--keep-resident-pages"]), ("trimmed", [])):
            restart_agent(fleet, extra)
            time.sleep(20)  # past the agent's first trim, 15 s after it starts
            for when in ("idle", "again"):
                t, f = isolate_once(lab, fleet)
                ms[variant][when].append(t)
                faults[variant][when].append(f)
            print(f"run {run + 1} {variant}: after idling {ms[variant]['idle'][-1]:.2f} ms "
                  f"({faults[variant]['idle'][-1]} minor faults), right after "
                  f"{ms[variant]['again'][-1]:.2f} ms ({faults[variant]['again'][-1]})",
                  flush=True)
    base = statistics.median(ms["kept"]["idle"])
    print("agent apply time of one isolate, ms min / median / max:")
    for variant in ("kept", "trimmed"):
        for when, what in (("idle", "after 20 s idle"), ("again", "right after another")):
            v, f = ms[variant][when], faults[variant][when]
            print(f"  {variant:8} {what:20} {min(v):7.2f} / {statistics.median(v):7.2f} / "
                  f"{max(v):7.2f}   minor faults median {statistics.median(f):5.0f}   "
                  f"{statistics.median(v) / base:.2f}x kept-after-idle")


def compare_agents(lab, fleet, runs, cycles, baseline_bin):
    built = fleet.bin("bulkhead-agent")
    rpc = {"baseline": [], "built": []}
    apply = {"baseline": [], "built": []}
    for run in range(runs):
        for variant, program in (("baseline", baseline_bin), ("built", built)):
            fleet.programs["bulkhead-agent"] = program
            restart_agent(fleet)
            out, _ = run_bench(lab, fleet, fleet.admin_identity, cycles)
            m = re.search(r"^isolate\s+n=\d+\s+rpc p50\s+([\d.]+) ms.*agent apply p50\s+([\d.]+) ms",
                          out, re.M)
            rpc[variant].append(float(m.group(1)))
            apply[variant].append(float(m.group(2)))
            print(f"run {run + 1} {variant}: isolate p50 {rpc[variant][-1]:.2f} ms, agent apply "
                  f"p50 {apply[variant][-1]:.2f} ms", flush=True)
    print(f"isolate p50 over {runs} runs of {cycles} cycles, ms min / median / max:")
    for name, values in (("operator call", rpc), ("agent apply", apply)):
        base = statistics.median(values["baseline"])
        for variant in ("baseline", "built"):
            v = values[variant]
            print(f"  {name:14} {variant:9} {min(v):7.2f} / {statistics.median(v):7.2f} / "
                  f"{max(v):7.2f}   {statistics.median(v) / base:.2f}x baseline")


def summary(name, values, base=None):
    line = (f"{name:<34} p50 of isolate+release: min {min(values):.2f}  median "
            f"{statistics.median(values):.2f}  max {max(values):.2f} ms")
    if base:
        line += f"   ratio (median) {statistics.median(values) / statistics.median(base):.2f}x"
    print(line)


def compare_tenants(lab, fleet, runs, cycles):
    single = [run_bench(lab, fleet, fleet.admin_identity, cycles)[1] for _ in range(runs)]

    def admin(*args):
        rc, _, err = fleet.cli(*args)
        if rc != 0:
            raise RuntimeError(f"bulkhead {' '.join(args)}: {err}")

    fleet.cli_prefix = ["env", "BULKHEAD_TENANT=*"]  # the admin holds every tenant
    for i in range(50):
        admin("tenants", "create", f"t{i:02}", "--reason", "bench")
    for i in range(196):
        admin("access", "grant", f"op{i:03}", f"--tenant=t{i % 50:02}", "--role", "viewer",
              "--reason", "bench")
    subprocess.run([fleet.bin("bulkhead"), "pki", "issue", "operator", "--name", "ann",
                    "--role", "none", "--dir", fleet.pki], check=True, capture_output=True,
                   timeout=30)
    admin("access", "grant", "ann", "--tenant=default", "--role", "responder", "--hosts",
          "role=web", "--reason", "bench")
    for i in range(3):
        admin("access", "grant", "ann", f"--tenant=t{i:02}", "--role", "viewer", "--reason",
              "bench")
    ann = os.path.join(fleet.pki, "operators", "ann")
    admin_runs, bound_runs = [], []
    for _ in range(runs):
        admin_runs.append(run_bench(lab, fleet, fleet.admin_identity, cycles, "default")[1])
        bound_runs.append(run_bench(lab, fleet, ann, cycles, "default")[1])
    print(f"{runs} runs of {cycles} isolate/release cycles each, host h1 (role=web)")
    summary("single team (no tenants)", single)
    summary("admin, 50 tenants, 200 bindings", admin_runs, single)
    summary("label-bound responder (binding)", bound_runs, single)


def compare_stores(lab, fleet, runs, cycles):
    import signal
    import subprocess as sp
    from bhlab import wait_until
    from postgres import LabPostgres

    pg = LabPostgres(lab, "ctl")
    key = os.path.join(lab.tmpdir, "shared-audit.key")
    sp.run(["sh", "-c", f"umask 077; openssl rand -hex 32 > {key}"], check=True, timeout=10)
    stores = {"sqlite": [], "postgresql": [], "postgresql-p99": [], "sqlite-p99": []}
    for _ in range(runs):
        for name, extra in (("sqlite", []),
                            ("postgresql", ["--store", pg.url(), "--audit-key", key])):
            # Each store counts its own generations: h1 starts afresh (released, no state) so
            # it takes the new controller's generation 1.
            fleet.kill_controller(signal.SIGTERM)
            fleet.kill_agent("h1", signal.SIGTERM)
            import shutil
            shutil.rmtree(fleet.agent_state_dir("h1"), ignore_errors=True)
            fleet.start_controller(extra)
            fleet.start_agent("h1", {"role": "web"})
            fleet.wait_online(["h1"], timeout=30)
            p50, p99 = run_bench_tails(lab, fleet, cycles)
            stores[name].append(p50)
            if p99 is not None:
                stores[name + "-p99"].append(p99)
    print(f"{runs} runs of {cycles} isolate/release cycles each, host h1, runs alternating")
    summary("SQLite (baseline)", stores["sqlite"])
    summary("PostgreSQL 15 (unix socket)", stores["postgresql"], stores["sqlite"])
    if stores["sqlite-p99"] and stores["postgresql-p99"]:
        print(f"p99: SQLite median {statistics.median(stores['sqlite-p99']):.2f} ms, "
              f"PostgreSQL median {statistics.median(stores['postgresql-p99']):.2f} ms")
    fleet.kill_controller(signal.SIGTERM)
    pg.close()


def compare_replicas(lab, fleet, runs, cycles):
    import signal
    import subprocess as sp
    from bhlab import wait_until
    from postgres import LabPostgres

    pg = LabPostgres(lab, "ctl")
    key = os.path.join(lab.tmpdir, "shared-audit.key")
    sp.run(["sh", "-c", f"umask 077; openssl rand -hex 32 > {key}"], check=True, timeout=10)
    fleet.kill_controller(signal.SIGTERM)
    fleet.kill_agent("h1", signal.SIGTERM)
    import shutil
    shutil.rmtree(fleet.agent_state_dir("h1"), ignore_errors=True)
    ctl = lab.ip4("ctl")
    procs = {}
    for name, port in (("a", 7443), ("c", 7445)):
        argv = fleet.other_controller_argv(
            port, os.path.join(lab.tmpdir, f"controller-{name}"),
            ["--store", pg.url(), "--audit-key", key, "--replica", name])
        procs[name] = lab.spawn("ctl", argv, label=f"controller-{name}")
        wait_until(lambda port=port: lab.tcp_probe("jump", ctl, port), 20, interval=0.1,
                   desc=f"controller {name} listening")
    argv = fleet.agent_argv("h1", {"role": "web"})
    argv[argv.index("--controller") + 1] = f"{ctl}:7445"
    fleet.agents["h1"] = lab.spawn("h1", argv + ["--controller", f"{ctl}:7443"], label="agent-h1")
    figures = {"c": [], "a": [], "c-p99": [], "a-p99": []}
    for name in ("a", "c"):
        fleet.controller_addr = f"{ctl}:{7443 if name == 'a' else 7445}"
        fleet.wait_online(["h1"], timeout=30)
    for _ in range(runs):
        for name, port in (("c", 7445), ("a", 7443)):
            fleet.controller_addr = f"{ctl}:{port}"
            p50, p99 = run_bench_tails(lab, fleet, cycles)
            figures[name].append(p50)
            if p99 is not None:
                figures[name + "-p99"].append(p99)
    print(f"{runs} runs of {cycles} isolate/release cycles each, h1 streaming to c, runs alternating")
    summary("call to c (the agent's controller)", figures["c"])
    summary("call to a (another controller)", figures["a"], figures["c"])
    if figures["c-p99"] and figures["a-p99"]:
        print(f"p99: to c median {statistics.median(figures['c-p99']):.2f} ms, "
              f"to a median {statistics.median(figures['a-p99']):.2f} ms")
    for p in procs.values():
        p.terminate()
        p.wait(timeout=15)
    pg.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tenants", action="store_true")
    ap.add_argument("--stores", action="store_true")
    ap.add_argument("--replicas", action="store_true")
    ap.add_argument("--after-trim", action="store_true")
    ap.add_argument("--baseline-agent", metavar="PATH")
    a = ap.parse_args()
    with Lab(hosts=1) as lab:
        fleet = Fleet(lab, os.path.abspath(a.build_dir), heartbeat_interval="5s",
                      heartbeat_timeout="15s", log_level="warn")
        fleet.start_controller()
        fleet.start_agent("h1", {"role": "web"})
        fleet.wait_online(["h1"])
        lab.tcp_server("h1", 5000)
        if a.tenants:
            compare_tenants(lab, fleet, a.runs, a.cycles)
            return 0
        if a.stores:
            compare_stores(lab, fleet, a.runs, a.cycles)
            return 0
        if a.replicas:
            compare_replicas(lab, fleet, a.runs, a.cycles)
            return 0
        if a.baseline_agent:
            compare_agents(lab, fleet, a.runs, a.cycles, os.path.abspath(a.baseline_agent))
            return 0
        if a.after_trim:
            compare_after_trim(lab, fleet, a.runs)
            return 0
        out, _ = run_bench(lab, fleet, fleet.admin_identity, a.cycles)
        sys.stdout.write(out)
        return 0


if __name__ == "__main__":
    sys.exit(main())
