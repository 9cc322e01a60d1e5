#!/usr/bin/env python3
"""Detection to enforcement in the lab (root): a fail2ban ban on one host -> the fleet-wide
block enforced on every host, and its unban -> the block lifted everywhere.

Each cycle runs, in h1, the command fail2ban's shipped action runs on a ban
(packaging/integrations/fail2ban/action.d/bulkhead.conf: `bulkhead-report signal --source
fail2ban --rule sshd --ip ADDR ...`, through the agent's local socket, its stream, the
controller's SignalService and the shipped ssh-brute-force playbook), then its unban
(`--resolved`). Each host's kernel is watched with `nft monitor elements` in its own network
namespace: a host is enforcing when the kernel reports the address added to the agent's block
set (lifted when it reports it deleted, or the agent's table deleted). The figure is the time from just before the action
command starts (its process start-up included, as fail2ban pays it) to the LAST host's kernel
event. fail2ban's own time from the log line to running its action is not included.

The same again through sshguard's backend (`bulkhead-report sshguard-backend`, one long-running
process reading `block ADDR 4 32` / `release ...` lines on its stdin, as sshguard runs it): the
path without a process start per ban.

The baseline, measured in the same run: the same command with an address no playbook acts on
(a `sshguard` signal with an unknown rule: recorded and answered, nothing enforced), i.e. the
front door's own round trip.

Two more baselines: `bulkhead-report signal --help` run the same way (the process start and the
harness's fork into h1, which every per-ban figure above includes), and `bulkhead-agent signal
--help` (the daemon's binary, which the action ran before bulkhead-report existed).

The bench's playbooks are the repository's with the rate caps raised (so a cycle every few
hundred ms is not capped): the figure is the path's speed, not the guardrails'.

    python3 bench/ban_bench.py [--build-dir build] [--hosts 3] [--cycles 100]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "lab"))

from bhlab import Lab  # noqa: E402
from fleet import Fleet  # noqa: E402


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def bench_policies(tmpdir):
    """The repository's policies/ with every rate cap raised to 1,000,000 a minute."""
    dst = os.path.join(tmpdir, "bench-policies")
    shutil.copytree(os.path.join(REPO, "policies"), dst)
    for root, _, files in os.walk(dst):
        for f in files:
            if f.endswith(".yaml"):
                p = os.path.join(root, f)
                with open(p) as fh:
                    text = fh.read()
                with open(p, "w") as fh:
                    fh.write(re.sub(r"rate_per_minute:\s*\d+", "rate_per_minute: 1000000", text))
    return dst


class KernelWatch:
    """`nft monitor` in one lab host: when each address was added to / deleted from a set, as
    seen by this process (CLOCK_MONOTONIC at the line's arrival). The agent removes its whole
    table when the last block goes and nothing is isolated: that deletes every element."""

    def __init__(self, lab, host):
        self.host = host
        self.events = []  # (monotonic, "add"|"delete", line)
        self.lock = threading.Lock()
        self.cv = threading.Condition(self.lock)
        self.proc = lab.spawn(host, ["nft", "monitor"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            now = time.monotonic()
            kind = "add" if line.startswith("add element") else \
                "delete" if line.startswith("delete element") else \
                "table-gone" if line.startswith("delete table inet bulkhead") else None
            if kind:
                with self.cv:
                    self.events.append((now, kind, line))
                    self.cv.notify_all()

    def wait(self, kind, address, since, timeout):
        """The time of the first `kind` event naming `address` after `since`, or None."""
        pattern = re.compile(r"[{ ,]" + re.escape(address) + r"[ ,}/]")
        end = time.monotonic() + timeout
        with self.cv:
            while True:
                for t, k, line in self.events:
                    if t >= since and ((k == kind and pattern.search(line)) or
                                       (kind == "delete" and k == "table-gone")):
                        return t
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(left)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--cycles", type=int, default=100)
    a = ap.parse_args()
    if a.cycles < 1 or a.hosts < 1 or a.cycles > 5000:
        print("--hosts must be >= 1 and --cycles in 1..5000", file=sys.stderr)
        return 2
    with Lab(hosts=a.hosts) as lab:
        fleet = Fleet(lab, os.path.abspath(a.build_dir), heartbeat_interval="5s",
                      heartbeat_timeout="15s", log_level="warn",
                      policy_dir=bench_policies(lab.tmpdir))
        fleet.start_controller()
        names = [h.name for h in lab.hosts]
        for h in names:
            fleet.start_agent(h, {"role": "web"})
        fleet.wait_online(names)
        watches = [KernelWatch(lab, h) for h in names]
        time.sleep(0.5)  # the monitors subscribed
        reporter = names[0]

        def signal(address, key, extra=(), source="fail2ban", rule="sshd"):
            argv = [fleet.bin("bulkhead-report"), "signal", "--source", source, "--rule", rule,
                    "--ip", address, "--key", key, "--timeout", "5s",
                    "--state-dir", fleet.agent_state_dir(reporter), *extra]
            t0 = time.monotonic()
            r = lab.run(reporter, argv, timeout=30)
            if r.returncode != 0:
                raise RuntimeError(f"signal failed ({r.returncode}): {r.stderr.strip()}")
            return t0, time.monotonic()

        backend = lab.spawn(reporter, [fleet.bin("bulkhead-report"), "sshguard-backend",
                                       "--state-dir", fleet.agent_state_dir(reporter)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True, bufsize=1)

        def enforced(kind, address, t0):
            """ms from t0 to the last host's kernel event, and to the first; None if missing."""
            seen = [w.wait(kind, address, t0, 10.0) for w in watches]
            missing = [w.host for w, t in zip(watches, seen) if t is None]
            if missing:
                print(f"{kind} of {address} not seen within 10 s on {', '.join(missing)}",
                      file=sys.stderr)
                return None
            return 1000 * (max(seen) - t0), 1000 * (min(seen) - t0)

        front_door, ban_all, unban_all, ban_first = [], [], [], []
        process_start = {"bulkhead-report": [], "bulkhead-agent": []}
        guard_ban, guard_release = [], []
        try:
            for i in range(a.cycles):
                address = f"10.77.{200 + i // 250}.{1 + i % 250}"
                # Baseline: the same front door, a signal no playbook acts on.
                t0, t1 = signal(address, f"bench:{i}:noop", source="sshguard", rule="bench-noop")
                front_door.append(1000 * (t1 - t0))
                # And the process start alone (the harness's fork into h1 included).
                for binary, times in process_start.items():
                    t0 = time.monotonic()
                    lab.run(reporter, [fleet.bin(binary), "signal", "--help"], timeout=30)
                    times.append(1000 * (time.monotonic() - t0))
                for kind, extra, out in (("add", ["--ttl", "600s"], ban_all),
                                         ("delete", ["--resolved"], unban_all)):
                    t0, _ = signal(address, f"bench:{i}:{kind}", extra)
                    seen = [w.wait(kind, address, t0, 10.0) for w in watches]
                    missing = [w.host for w, t in zip(watches, seen) if t is None]
                    if missing:
                        print(f"cycle {i}: {kind} of {address} not seen within 10 s on "
                              f"{', '.join(missing)}", file=sys.stderr)
                        for w in watches:
                            print(f"{w.host}: {w.events[-4:]}", file=sys.stderr)
                        print(fleet.cli("signals")[1], file=sys.stderr)
                        return 1
                    out.append(1000 * (max(seen) - t0))
                    if kind == "add":
                        ban_first.append(1000 * (min(seen) - t0))
                address = f"10.77.{220 + i // 250}.{1 + i % 250}"
                for kind, verb, out in (("add", "block", guard_ban),
                                        ("delete", "release", guard_release)):
                    t0 = time.monotonic()
                    backend.stdin.write(f"{verb} {address} 4 32\n")
                    backend.stdin.flush()
                    got = enforced(kind, address, t0)
                    if got is None:
                        return 1
                    out.append(got[0])
        finally:
            for w in watches:
                w.stop()
            backend.stdin.close()
            backend.wait(timeout=10)

    def line(name, v):
        print(f"{name:48s} min {min(v):7.1f}  p50 {pct(v, 50):7.1f}  p99 {pct(v, 99):7.1f}  "
              f"max {max(v):7.1f} ms")

    print(f"ban bench: {a.hosts} hosts, {a.cycles} cycles (p99 of {a.cycles} is the "
          f"{'largest' if a.cycles < 100 else f'{pct(range(a.cycles), 99) + 1}th smallest'})")
    line("ban -> every host enforcing", ban_all)
    line("ban -> first host enforcing", ban_first)
    line("unban -> block lifted on every host", unban_all)
    line("sshguard block -> every host enforcing", guard_ban)
    line("sshguard release -> lifted on every host", guard_release)
    line("baseline: signal round trip, no action", front_door)
    for binary, times in process_start.items():
        line(f"baseline: {binary} signal --help in h1", times)
    print(f"ratio p50 ban-everywhere / baseline p50: {pct(ban_all, 50) / pct(front_door, 50):.2f}; "
          f"sshguard block p50 / baseline p50: {pct(guard_ban, 50) / pct(front_door, 50):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
