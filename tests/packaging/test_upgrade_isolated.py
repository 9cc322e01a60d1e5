#!/usr/bin/env python3
"""The packaged controller, CLI and agent set up as the README says, and the packaged agent
keeping an isolated host isolated through an upgrade and a reboot.

A clean Debian 12 root (tests/packaging/pkgroot.py) gets the packages. Every program runs from
that root (`chroot`), each in its lab node's own network, PID and mount namespaces:

  set-up    the README's steps, in the root: `bulkhead pki init` with the controller's address,
            the controller's identity installed root:bulkhead 0640, the controller started
            (node ctl) with its unit's command line and settings, as user bulkhead; an agent
            identity issued and copied to /etc/bulkhead/identity, CONTROLLER appended to
            /etc/default/bulkhead-agent, the agent started (node h1) with its unit's command
            line; the operator's `bulkhead` (node jump) with the admin identity `pki init`
            made. h1 comes online with the packaged agent's version.

Each program starts as systemd would start its unit: ExecStart= expanded from its
EnvironmentFile=, under its User=/Group=, UMask=, CapabilityBoundingSet= and NoNewPrivileges=
(setpriv), with the StateDirectory= and RuntimeDirectory= systemd would create. The rest of the
units' sandboxing needs systemd, which the lab does not run.

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
import signal
import stat
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lab"))

import pkgroot  # noqa: E402
from bhlab import Lab, case_failed, wait_until  # noqa: E402
from fleet import CONTROLLER_PORT, Fleet  # noqa: E402

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
class PackagedFleetTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        pkgroot.fresh_root(cls)
        inside = cls.root.copy_in(cls.debs, "/tmp/debs")
        cls.root.apt_install(*inside)
        cls.root.copy_in(cls.next_debs, "/tmp/debs-next")

        cls.lab = Lab(hosts=1)
        cls.addClassCleanup(cls.lab.close)
        # The fleet's addresses and waits; its programs are the packaged ones, in the root.
        cls.fleet = Fleet(cls.lab)
        cls.fleet.programs = {"bulkhead": "/usr/bin/bulkhead"}
        cls.fleet.cli_prefix = ["chroot", cls.root.path]
        cls.fleet.pki = "/etc/bulkhead/pki"
        # Each node's own mount namespace: the root's /proc there shows that node's processes.
        for node in ("ctl", "h1", "jump"):
            cls.lab.run(node, ["mount", "-t", "proc", "proc", cls.root.host_path("/proc")],
                        check=True)
        cls.server = cls.lab.tcp_server("h1", PORT)
        cls.controller = cls.agent = None

    def in_root(self, node: str, script: str):
        """A README step: `sh -c script` in the root, in lab node `node`."""
        r = self.lab.run(node, ["chroot", self.root.path, "sh", "-ec", script], timeout=60)
        self.assertEqual(r.returncode, 0, f"{script}: {r.stdout} {r.stderr}")
        return r

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def unit_argv(self, unit: str) -> list:
        """The unit's command as systemd would start it (inside the root): its ExecStart= with
        its EnvironmentFile=, under its UMask=, User=, Group=, CapabilityBoundingSet= and
        NoNewPrivileges= (setpriv), after creating its StateDirectory= and RuntimeDirectory=
        as systemd does (owned by User=, with the units' modes)."""
        with open(self.root.host_path(f"/lib/systemd/system/{unit}")) as f:
            lines = f.read().splitlines()
        keys = {}
        for line in lines:
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                keys.setdefault(k, v)
        env = {}
        for line in lines:
            if line.startswith("EnvironmentFile="):
                path = line.split("=", 1)[1].lstrip("-")
                if os.path.exists(self.root.host_path(path)):
                    env.update(read_default(self.root.host_path(path)))
        self.assertIn("NoNewPrivileges=yes", lines)
        bounding = ",".join(["-all"] + [f"+{c.lower().removeprefix('cap_')}"
                                        for c in keys["CapabilityBoundingSet"].split()])
        user, group = keys.get("User", "root"), keys.get("Group", "root")
        for kind, base in (("StateDirectory", "/var/lib"), ("RuntimeDirectory", "/run")):
            for name in keys.get(kind, "").split():
                mode = keys.get(f"{kind}Mode", "0755")
                self.in_root("jump", f"install -d -o {user} -g {group} -m {mode} {base}/{name}")
        ids = ["--reuid", user, "--regid", group, "--init-groups"] if user != "root" else []
        return ["chroot", self.root.path, "sh", "-c", 'umask "$0"; exec "$@"',
                keys.get("UMask", "0022"), "setpriv", *ids, f"--bounding-set={bounding}",
                "--no-new-privs", "--", *unit_exec_start("\n".join(lines), env)]

    def start_agent(self):
        type(self).agent = self.lab.spawn("h1", self.unit_argv("bulkhead-agent.service"),
                                          label="packaged-agent")
        self.fleet.wait_online(["h1"], timeout=30)

    def test_0_set_up_as_the_readme_says(self):
        ctl = self.lab.ip4("ctl")
        # On the controller's machine (README, "Install from Debian packages").
        self.in_root("ctl", f"bulkhead pki init --dir /etc/bulkhead/pki --controller-ip {ctl}")
        self.in_root("ctl", "install -o root -g bulkhead -m 0640 /etc/bulkhead/pki/controller/* "
                            "/etc/bulkhead/controller/")
        type(self).controller = self.lab.spawn(
            "ctl", self.unit_argv("bulkhead-controller.service"), label="packaged-controller")
        wait_until(lambda: self.controller.poll() is not None or
                   self.lab.tcp_probe("jump", ctl, CONTROLLER_PORT), 20, interval=0.2,
                   desc="the packaged controller listening")
        self.assertIsNone(self.controller.poll(), self.lab.log_text(self.controller))
        self.in_root("ctl", "bulkhead pki issue agent --host-id h1 --dir /etc/bulkhead/pki")
        # On the server: the identity copied over, CONTROLLER set.
        self.in_root("h1", "cp /etc/bulkhead/pki/agents/h1/* /etc/bulkhead/identity/ && "
                           "chmod 0600 /etc/bulkhead/identity/tls.key")
        self.in_root("h1", f"echo CONTROLLER={ctl}:{CONTROLLER_PORT} >> "
                           "/etc/default/bulkhead-agent")
        self.start_agent()
        # The operator's CLI (packaged) lists the packaged agent with its version.
        host = self.fleet.hosts()["h1"]
        self.assertTrue(host["online"], host)
        version = self.root.installed()["bulkhead-agent"]
        self.assertTrue(version.startswith(host["agent_version"]), (version, host))
        # The controller runs as its system user, its state private to it.
        for path in ("/var/lib/bulkhead", "/var/lib/bulkhead-audit"):
            st = os.stat(self.root.host_path(path))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o700, path)
            self.assertEqual(st.st_uid, self.root_uid("bulkhead"), path)
        self.assertEqual(self.proc_uid(self.controller), self.root_uid("bulkhead"))

    def root_uid(self, user: str) -> int:
        with open(self.root.host_path("/etc/passwd")) as f:
            for line in f:
                fields = line.split(":")
                if fields[0] == user:
                    return int(fields[2])
        raise AssertionError(f"no user {user} in the root")

    def proc_uid(self, proc) -> int:
        """The real uid of the program proc started (after sh, chroot and setpriv exec'd)."""
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
        raise AssertionError("no Uid line")

    def reachable(self) -> bool:
        return self.lab.tcp_probe("attacker", self.lab.ip4("h1"), PORT, timeout=0.5)

    def ok(self, *args):
        rc, doc, err = self.fleet.cli(*args, timeout=60)
        self.assertEqual(rc, 0, f"{args}: {err} {doc}")
        return doc

    def test_1_upgrade_while_isolated_never_opens_the_host(self):
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
