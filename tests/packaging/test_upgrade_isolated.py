#!/usr/bin/env python3
"""The packaged agent keeps an isolated host isolated through an upgrade and a reboot.

A clean Debian 12 root (tests/packaging/pkgroot.py) gets the packages; lab host h1 runs the
agent from that root (`chroot`, in h1's own network, PID and mount namespaces) with the command
line of the installed unit, its ${CONTROLLER} taken from the edited /etc/default/bulkhead-agent.
The unit's CapabilityBoundingSet= and NoNewPrivileges= are applied with setpriv, so the agent
runs with exactly the capabilities its unit grants (the rest of the unit's sandboxing needs
systemd, which the lab does not run). The controller and the operator's CLI come from the build
tree.

  upgrade   h1 is isolated; then, while a prober in the attacker's namespace tries a new TCP
            connection to h1 about every 0.1 s and h1's table is listed every ~20 ms,
            the agent package is upgraded with dpkg and the agent restarted as systemd would
            after the upgrade (SIGTERM, start the new binary). No connection gets through and
            the table is there at every sample; the new agent comes back online still
            isolated.
  boot      the agent is killed (power off) and h1's ruleset flushed with Debian's default
            /etc/nftables.conf (what nftables.service does at boot); h1 is then reachable,
            as a booted host would be. The installed bulkhead-restore.service's ExecStart runs
            (what systemd runs next, before the network): h1 is isolated again, before any
            agent or controller is involved. The unit's ordering is read from the installed
            file: DefaultDependencies=no, After=nftables.service, Before=network-pre.target,
            enabled in sysinit.target.wants.

Needs root, mmdebstrap, the package mirror and the packages (BULKHEAD_DEB_DIR,
BULKHEAD_DEB_NEXT_DIR from scripts/package.sh).
"""

import json
import os
import re
import shlex
import shutil
import signal
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lab"))

import pkgroot  # noqa: E402
from bhlab import Lab, wait_until  # noqa: E402
from fleet import Fleet  # noqa: E402

IS_ROOT = os.geteuid() == 0
PORT = 7000

# Debian's /etc/nftables.conf as the nftables package ships it (the boot-time ruleset).
DEBIAN_NFTABLES_CONF = """#!/usr/sbin/nft -f

flush ruleset

table inet filter {
	chain input {
		type filter hook input priority filter;
	}
	chain forward {
		type filter hook forward priority filter;
	}
	chain output {
		type filter hook output priority filter;
	}
}
"""


def unit_exec_start(unit_text: str, env: dict) -> list:
    """ExecStart= of a unit as systemd expands it: ${VAR} one word, $VAR split on spaces."""
    line = next(l for l in unit_text.splitlines() if l.startswith("ExecStart="))
    argv = []
    for word in shlex.split(line[len("ExecStart="):]):
        m = re.fullmatch(r"\$(\w+)", word)
        if m:
            argv += env.get(m.group(1), "").split()
            continue
        argv.append(re.sub(r"\$\{(\w+)\}", lambda x: env.get(x.group(1), ""), word))
    return argv


def read_default(path: str) -> dict:
    env = {}
    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k] = v.strip('"')
    return env


class Watch:
    """While open: from the attacker, a reconnecting TCP stream to h1 (a new connection attempt
    about every 0.1 s: 50 ms connect timeout, 50 ms pause); in h1, `nft list table inet
    bulkhead` every ~20 ms. After: attempts made, connections that got through (the stream's
    count and the server's accepted count both), table samples missing."""

    def __init__(self, lab: Lab, host_ip: str, server):
        self.lab, self.host_ip, self.server = lab, host_ip, server
        self.attempts = self.leaks = self.table_samples = self.missing_table = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._table)
        self._report = os.path.join(lab.tmpdir, f"watch.{time.monotonic_ns()}.json")

    def _accepted(self) -> int:
        with open(self.server.report_path) as f:
            return json.load(f)["accepted"]

    def _table(self):
        while not self._stop.is_set():
            r = self.lab.run("h1", ["nft", "list", "table", "inet", "bulkhead"], timeout=10)
            self.table_samples += 1
            if r.returncode != 0:
                self.missing_table += 1
            time.sleep(0.02)

    def __enter__(self):
        self._accepted_before = self._accepted()
        self._stream = self.lab.spawn(
            "attacker", [sys.executable, self.lab.TCPSTREAM, "stream", self.host_ip, str(PORT),
                         "--reconnect", "--connect-timeout", "0.05", "--interval-ms", "50",
                         "--report", self._report], label="watch-stream")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)
        self._stream.send_signal(signal.SIGTERM)
        self._stream.wait(timeout=15)
        with open(self._report) as f:
            st = json.load(f)
        self.attempts = st["connects"] + st["failures"]
        self.leaks = st["connects"] + (self._accepted() - self._accepted_before)


@unittest.skipUnless(IS_ROOT, "needs root (lab, chroot)")
class PackagedAgentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        pkgroot.fresh_root(cls)
        inside = cls.root.copy_in(cls.debs, "/tmp/debs")
        cls.root.apt_install(*inside)
        cls.root.copy_in(cls.next_debs, "/tmp/debs-next")

        cls.lab = Lab(hosts=1)
        cls.addClassCleanup(cls.lab.close)
        cls.fleet = Fleet(cls.lab)
        cls.fleet.start_controller()
        # The host's identity copied in and CONTROLLER set, as the README tells an admin to.
        ident = cls.root.host_path("/etc/bulkhead/identity")
        for f in os.listdir(cls.fleet.agent_identity("h1")):
            shutil.copy(os.path.join(cls.fleet.agent_identity("h1"), f), ident)
        with open(cls.root.host_path("/etc/default/bulkhead-agent"), "a") as f:
            f.write(f"CONTROLLER={cls.fleet.controller_addr}\n")
        # h1's own mount namespace: the root's /proc shows h1's processes only.
        cls.lab.run("h1", ["mount", "-t", "proc", "proc", cls.root.host_path("/proc")],
                    check=True)
        cls.server = cls.lab.tcp_server("h1", PORT)
        cls.agent = None

    def tearDown(self):
        outcome = getattr(self, "_outcome", None)
        if outcome is not None and not getattr(outcome, "success", True):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def unit_argv(self, unit: str) -> list:
        """The unit's command as systemd would start it: its ExecStart= with the environment
        file, its CapabilityBoundingSet= and NoNewPrivileges= (setpriv, inside the root)."""
        with open(self.root.host_path(f"/lib/systemd/system/{unit}")) as f:
            text = f.read()
        env = read_default(self.root.host_path("/etc/default/bulkhead-agent"))
        caps = next(l for l in text.splitlines() if l.startswith("CapabilityBoundingSet="))
        bounding = ",".join(["-all"] + [f"+{c.lower().removeprefix('cap_')}"
                                        for c in caps.split("=", 1)[1].split()])
        self.assertIn("NoNewPrivileges=yes", text.splitlines())
        return ["chroot", self.root.path, "setpriv", f"--bounding-set={bounding}",
                "--no-new-privs", "--", *unit_exec_start(text, env)]

    def start_agent(self):
        type(self).agent = self.lab.spawn("h1", self.unit_argv("bulkhead-agent.service"),
                                          label="packaged-agent")
        self.fleet.wait_online(["h1"], timeout=30)

    def reachable(self) -> bool:
        return self.lab.tcp_probe("attacker", self.lab.ip4("h1"), PORT, timeout=0.5)

    def ok(self, *args):
        rc, doc, err = self.fleet.cli(*args, timeout=60)
        self.assertEqual(rc, 0, f"{args}: {err} {doc}")
        return doc

    def test_1_upgrade_while_isolated_never_opens_the_host(self):
        self.start_agent()
        self.assertTrue(self.reachable(), "h1 unreachable before any containment")
        with Watch(self.lab, self.lab.ip4("h1"), self.server) as open_host:
            time.sleep(1.0)
        self.assertGreater(open_host.leaks, 0, "the watch does not see an open host")
        self.ok("isolate", "h1", "--reason", "INC-14 upgrade test")
        wait_until(lambda: not self.reachable(), 10, desc="h1 isolated")
        before = self.root.installed()["bulkhead-agent"]

        with Watch(self.lab, self.lab.ip4("h1"), self.server) as watch:
            time.sleep(0.5)
            deb = next(d for d in os.listdir(self.root.host_path("/tmp/debs-next"))
                       if d.startswith("bulkhead-agent_"))
            r = self.lab.run("h1", ["chroot", self.root.path, "dpkg", "-i",
                                    f"/tmp/debs-next/{deb}"], timeout=300)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            # What systemd does after the upgrade (dh_installsystemd's restart): stop, start.
            self.agent.send_signal(signal.SIGTERM)
            self.agent.wait(timeout=15)
            self.start_agent()
            time.sleep(0.5)
        after = self.root.installed()["bulkhead-agent"]
        self.assertNotEqual(before, after, "the agent package was not upgraded")
        print(f"upgrade window: {watch.attempts} connection attempts, {watch.leaks} got "
              f"through; {watch.table_samples} table samples, {watch.missing_table} missing",
              file=sys.stderr)
        self.assertGreater(watch.attempts, 10, "the prober hardly ran")
        self.assertGreater(watch.table_samples, 10, "the table was hardly sampled")
        self.assertEqual(watch.leaks, 0, "a connection reached h1 during the upgrade")
        self.assertEqual(watch.missing_table, 0, "h1's table was missing during the upgrade")
        host = self.fleet.hosts()["h1"]
        self.assertTrue(host["online"], host)
        self.assertFalse(self.reachable())

    def test_2_boot_restore_isolates_before_the_network(self):
        self.agent.send_signal(signal.SIGKILL)  # power off
        self.agent.wait(timeout=15)
        conf = os.path.join(self.lab.tmpdir, "nftables.conf")
        with open(conf, "w") as f:
            f.write(DEBIAN_NFTABLES_CONF)
        self.lab.run("h1", ["nft", "-f", conf], check=True)
        self.assertTrue(self.reachable(), "the flushed host should be open (boot, no restore)")

        r = self.lab.run("h1", self.unit_argv("bulkhead-restore.service"), timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertFalse(self.reachable(), "the restore unit left h1 open")

        with open(self.root.host_path("/lib/systemd/system/bulkhead-restore.service")) as f:
            unit = f.read()
        for line in ("DefaultDependencies=no", "After=nftables.service local-fs.target",
                     "Before=network-pre.target", "WantedBy=sysinit.target"):
            self.assertIn(line, unit.splitlines())
        self.assertTrue(os.path.islink(self.root.host_path(
            "/etc/systemd/system/sysinit.target.wants/bulkhead-restore.service")))

        # The agent comes back and the controller still has h1 isolated; release opens it.
        self.start_agent()
        self.assertFalse(self.reachable())
        self.ok("release", "h1", "--reason", "INC-14 done")
        wait_until(self.reachable, 20, interval=0.2, desc="h1 released")


if __name__ == "__main__":
    unittest.main(verbosity=2)
