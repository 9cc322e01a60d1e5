#!/usr/bin/env python3
"""Self-test of the network-namespace lab (tests/lab/bhlab.py). Root only.

Run: python3 tests/integration/test_lab.py   (from any directory)
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

import bhlab  # noqa: E402
from bhlab import Lab, LabError, case_failed, read_json, wait_until  # noqa: E402

BHLAB = os.path.join(os.path.abspath(LAB_DIR), "bhlab.py")
IS_ROOT = os.geteuid() == 0


def ns_with_prefix(prefix):
    return [n for n in bhlab.list_netns() if n.startswith(prefix)]


def pids_in_proc(lab, node):
    r = lab.run(node, ["ps", "-eo", "pid=,args="], check=True)
    return r.stdout


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class LabTest(unittest.TestCase):
    lab = None

    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=2)
        cls.addClassCleanup(cls.lab.close)

    def tearDown(self):
        # keep the logs of a failed test and show them
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    # ---- topology --------------------------------------------------------------------------

    def test_topology(self):
        lab = self.lab
        self.assertTrue(bhlab.PREFIX_RE.match(lab.prefix))
        self.assertFalse(lab.prefix.startswith("bhx-"))
        self.assertEqual(sorted(lab.nodes),
                         sorted(["ctl", "h1", "h2", "jump", "service", "attacker"]))
        self.assertEqual([n.name for n in lab.hosts], ["h1", "h2"])
        want = {"ctl": ("10.77.0.1", "fd77::1"), "h1": ("10.77.0.11", "fd77::11"),
                "h2": ("10.77.0.12", "fd77::12"), "jump": ("10.77.0.40", "fd77::40"),
                "service": ("10.77.0.50", "fd77::50"), "attacker": ("10.77.0.66", "fd77::66")}
        for name, (a4, a6) in want.items():
            self.assertEqual((lab.ip4(name), lab.ip6(name)), (a4, a6))
            out = lab.run(name, ["ip", "-o", "addr", "show", "dev", "eth0"], check=True).stdout
            self.assertIn(f"inet {a4}/16", out)
            self.assertIn(f"inet6 {a6}/64", out)
            self.assertNotIn("tentative", out)
            self.assertEqual(lab.run(name, ["hostname"], check=True).stdout.strip(), name)
            self.assertTrue(os.path.exists(lab.ns_path(name)))
        # lab namespace: lo, br0 and one veth per node, all enslaved to br0
        out = subprocess.run(["ip", "-n", lab.lab_ns, "-o", "link"], capture_output=True,
                             text=True, check=True).stdout
        names = sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())
        self.assertEqual(names, sorted(["lo", "br0"] + list(lab.nodes)))
        for n in lab.nodes:
            self.assertRegex(out, rf"{n}@\S+: .* master br0 ")

    def test_reachability_v4_v6(self):
        lab = self.lab
        srv = lab.tcp_server("ctl", 7100)
        self.assertTrue(lab.tcp_probe("h1", lab.ip4("ctl"), 7100, echo=True))
        self.assertTrue(lab.tcp_probe("h1", lab.ip6("ctl"), 7100, echo=True))
        self.assertFalse(lab.tcp_probe("h1", lab.ip4("ctl"), 7101))  # nothing listens
        self.assertEqual(read_json(srv.report_path)["accepted"], 2)
        srv.kill()
        srv.wait(5)

    def test_no_route_outside(self):
        lab = self.lab
        for node in ("attacker", "h1", "ctl"):
            for fam in ("-4", "-6"):
                out = lab.run(node, ["ip", fam, "route", "show", "default"], check=True).stdout
                self.assertEqual(out.strip(), "", f"{node} has a default route")
            links = lab.run(node, ["ip", "-o", "link"], check=True).stdout
            self.assertEqual(sorted(l.split(":")[1].strip().split("@")[0]
                                    for l in links.splitlines()), ["eth0", "lo"])
        t = time.monotonic()
        r = lab.run("attacker", [sys.executable, lab.TCPSTREAM, "probe", "1.1.1.1", "53"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("unreachable", r.stderr)
        r = lab.run("attacker", [sys.executable, lab.TCPSTREAM, "probe", "2606:4700::1111",
                                 "53"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("unreachable", r.stderr)
        self.assertLess(time.monotonic() - t, 5)

    # ---- private /proc, /run, pid 1 --------------------------------------------------------

    def test_proc_private(self):
        lab = self.lab
        p = lab.spawn("h1", ["sleep", "1234.5"])
        try:
            wait_until(lambda: "sleep 1234.5" in pids_in_proc(lab, "h1"), 5,
                       desc="sleep visible in h1")
            self.assertNotIn("sleep 1234.5", pids_in_proc(lab, "h2"))
            self.assertNotIn("sleep 1234.5", pids_in_proc(lab, "ctl"))
            # few processes: holder (pid 1), the sleep, ps
            lines = pids_in_proc(lab, "h1").strip().splitlines()
            self.assertLessEqual(len(lines), 4, lines)
            # pid 1 in h1 is the holder; the sleep's pid inside h1 is small
            cmd1 = lab.run("h1", ["cat", "/proc/1/cmdline"], check=True).stdout
            self.assertIn(bhlab.HOLDER_MARK, cmd1)
            self.assertTrue(cmd1.rstrip("\0").endswith("\0h1"), repr(cmd1))
            with open(f"/proc/{p.pid}/status") as f:
                nspid = [l for l in f if l.startswith("NSpid:")][0].split()[1:]
            self.assertEqual(len(nspid), 2)
            self.assertNotEqual(int(nspid[1]), p.pid)
            self.assertEqual(lab.run("h1", ["cat", f"/proc/{nspid[1]}/cmdline"],
                                     check=True).stdout, "sleep\x001234.5\x00")
            # from h2, that pid is not the sleep (h2 cannot signal h1's processes)
            r = lab.run("h2", ["cat", f"/proc/{nspid[1]}/cmdline"])
            self.assertNotIn("1234.5", r.stdout)
            # Popen handle acts on the real process
            p.kill()
            self.assertEqual(p.wait(5), -signal.SIGKILL)
        finally:
            if p.poll() is None:
                p.kill()

    def test_run_private(self):
        lab = self.lab
        out = lab.run("h1", ["sh", "-c", "grep ' /run ' /proc/self/mounts; ls -d /run/sshd; "
                                         "echo x > /run/bhlab-test-marker"], check=True).stdout
        self.assertIn("tmpfs /run tmpfs", out)
        self.assertFalse(os.path.exists("/run/bhlab-test-marker"))
        r = lab.run("h2", ["ls", "/run/bhlab-test-marker"])
        self.assertNotEqual(r.returncode, 0)
        self.assertTrue(os.path.isdir("/run/netns"))  # the machine's /run untouched

    def test_orphans_reaped(self):
        lab = self.lab
        lab.run("h2", ["sh", "-c", "sleep 0.2 & exit 0"], check=True)
        time.sleep(0.6)
        out = lab.run("h2", ["ps", "-eo", "stat=,args="], check=True).stdout
        self.assertNotIn("Z", "".join(l.split()[0] for l in out.splitlines()), out)

    # ---- safety ----------------------------------------------------------------------------

    def test_refuses_machine_netns(self):
        lab = self.lab
        fake = bhlab.Node(name="evil", role="host", ns="bh-000000-evil", ip4="10.77.0.99",
                          ip6="fd77::99", holder_pid=os.getpid(),
                          holder_start=bhlab._start_time(os.getpid()))
        lab.nodes["evil"] = fake
        try:
            with self.assertRaisesRegex(LabError, "machine's own"):
                lab.run("evil", ["true"])
            with self.assertRaisesRegex(LabError, "machine's own"):
                lab.spawn("evil", ["true"])
        finally:
            del lab.nodes["evil"]
        with self.assertRaisesRegex(LabError, "no node"):
            lab.run("nosuch", ["true"])

    def test_run_timeout_kills(self):
        t = time.monotonic()
        with self.assertRaises(subprocess.TimeoutExpired):
            self.lab.run("h1", ["sleep", "30"], timeout=0.5)
        self.assertLess(time.monotonic() - t, 5)
        self.assertNotIn("sleep 30", pids_in_proc(self.lab, "h1"))

    # ---- traffic ---------------------------------------------------------------------------

    def test_stream_attacker_to_h1(self):
        lab = self.lab
        srv = lab.tcp_server("h1", 7200)
        s4 = lab.tcp_stream("attacker", lab.ip4("h1"), 7200, interval_ms=5)
        s6 = lab.tcp_stream("attacker", lab.ip6("h1"), 7200, interval_ms=5)
        time.sleep(1.0)
        for s in (s4, s6):
            r = read_json(s.report_path)
            self.assertEqual(r["state"], "streaming", r)
            self.assertEqual(r["failures"], 0, r)
            self.assertGreater(r["echoes"], 50, r)
        # silently drop h1's answers: the streams must notice within ~1 s (user/echo timeout)
        t = time.time()
        lab.run("h1", ["ip", "route", "add", "blackhole", "10.77.0.66/32"], check=True)
        lab.run("h1", ["ip", "-6", "route", "add", "blackhole", "fd77::66/128"], check=True)
        try:
            for s in (s4, s6):
                err = wait_until(lambda: (read_json(s.report_path) or {}).get("first_error"),
                                 5, desc="stream error")
                self.assertLess(err["time"] - t, 2.5, err)
                self.assertEqual(s.wait(5), 1)
                self.assertEqual(read_json(s.report_path)["state"], "dead")
        finally:
            lab.run("h1", ["ip", "route", "del", "blackhole", "10.77.0.66/32"])
            lab.run("h1", ["ip", "-6", "route", "del", "blackhole", "fd77::66/128"])
        # a reset is seen at once
        s4 = lab.tcp_stream("service", lab.ip4("h1"), 7200)
        t = time.time()
        srv.kill()
        err = wait_until(lambda: (read_json(s4.report_path) or {}).get("first_error"), 5,
                         desc="stream error after server kill")
        self.assertLess(err["time"] - t, 1.0, err)
        # SIGTERM: final report, exit 0
        srv = lab.tcp_server("h1", 7200)
        s = lab.tcp_stream("service", lab.ip6("h1"), 7200)
        s.terminate()
        self.assertEqual(s.wait(5), 0)
        self.assertEqual(read_json(s.report_path)["state"], "stopped")
        srv.kill()


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class TeardownTest(unittest.TestCase):

    def assertGone(self, prefix, timeout=10):
        wait_until(lambda: not ns_with_prefix(prefix), timeout, desc=f"{prefix}* to disappear")

    def test_teardown_removes_everything(self):
        lab = Lab(hosts=1)
        prefix, tmpdir = lab.prefix, lab.tmpdir
        self.assertEqual(len(ns_with_prefix(prefix)), 6)
        self.assertTrue(os.path.exists(lab.state_path))
        p = lab.spawn("h1", ["sleep", "100"])
        t = time.monotonic()
        # returns although the background sleep still holds the pipes
        inner = lab.run("h1", ["sh", "-c", "sleep 100 & echo $!"], check=True, timeout=10)
        self.assertLess(time.monotonic() - t, 3)
        holders = [n.holder_pid for n in lab.nodes.values()]
        lab.close()
        self.assertEqual(ns_with_prefix(prefix), [])
        self.assertIsNotNone(p.poll())
        for h in holders:
            self.assertFalse(os.path.exists(f"/proc/{h}"), h)
        self.assertFalse(os.path.exists(lab.state_path))
        self.assertFalse(os.path.exists(tmpdir))
        self.assertTrue(inner.stdout.strip())
        lab.close()  # idempotent
        with self.assertRaises(LabError):
            lab.run("h1", ["true"])

    def test_teardown_on_exception_keeps_logs(self):
        with self.assertRaises(ZeroDivisionError):
            with Lab(hosts=1) as lab:
                lab.spawn("h1", ["sh", "-c", "echo hello-log; sleep 100"], label="hello")
                wait_until(lambda: "hello-log" in lab.dump_logs(), 5, desc="log line")
                1 / 0
        self.assertEqual(ns_with_prefix(lab.prefix), [])
        self.assertTrue(os.path.isdir(lab.tmpdir))
        self.assertTrue(any(f.startswith("h1.hello.") for f in os.listdir(lab.tmpdir)))
        subprocess.run(["rm", "-rf", lab.tmpdir])

    def _child_lab(self):
        code = ("import signal, sys, time; sys.path.insert(0, %r); import bhlab\n"
                # a backgrounded shell job inherits SIGINT ignored; bhlab respects SIG_IGN
                "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
                "lab = bhlab.Lab(hosts=1)\n"
                "lab.spawn('h1', ['sleep', '100'])\n"
                "print(lab.prefix, flush=True)\n"
                "time.sleep(60)\n" % os.path.abspath(LAB_DIR))
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        prefix = p.stdout.readline().strip()
        p.stdout.close()
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        self.assertRegex(prefix, bhlab.PREFIX_RE.pattern)
        self.assertEqual(len(ns_with_prefix(prefix)), 6)
        return p, prefix

    def test_sigterm_tears_down(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            p, prefix = self._child_lab()
            tmpdir = read_json(os.path.join(bhlab.STATE_DIR, prefix + ".json"))["tmpdir"]
            p.send_signal(sig)
            # Bounded by the teardown's own waits (a few seconds per node and per `ip netns
            # del`), which a loaded CI machine can stretch past 15 s (seen once).
            p.wait(60)
            subprocess.run(["rm", "-rf", tmpdir])
            self.assertEqual(ns_with_prefix(prefix), [], sig)
            self.assertFalse(os.path.exists(os.path.join(bhlab.STATE_DIR, prefix + ".json")))
            st = bhlab.read_json(os.path.join(bhlab.STATE_DIR, prefix + ".json"))
            self.assertIsNone(st)

    def test_sigkill_then_cleanup(self):
        live = Lab(hosts=1)  # a live lab: cleanup must leave it alone
        try:
            p, prefix = self._child_lab()
            st = read_json(os.path.join(bhlab.STATE_DIR, prefix + ".json"))
            holders = [n["holder_pid"] for n in st["nodes"].values()]
            p.kill()
            p.wait(5)
            # the holders die with their creator (PDEATHSIG chain), the namespaces stay
            wait_until(lambda: not any(os.path.exists(f"/proc/{h}") for h in holders), 10,
                       desc="holders of the killed lab to die")
            left = len(ns_with_prefix(prefix))
            r = subprocess.run([sys.executable, BHLAB, "cleanup"], capture_output=True,
                               text=True, timeout=60, cwd="/")
            self.assertEqual(r.returncode, 0, r.stderr)
            if left:  # else a concurrent run's cleanup got there first, which is fine
                self.assertEqual(left, 6)
                self.assertIn(f"removed {prefix}", r.stdout)
            self.assertEqual(ns_with_prefix(prefix), [])
            self.assertEqual(len(ns_with_prefix(live.prefix)), 6)
            self.assertTrue(live.tcp_probe("h1", live.ip4("ctl"), 1) is False)  # still works
            subprocess.run(["rm", "-rf", st["tmpdir"]])
        finally:
            live.close()

    def test_cli_up_exec_down(self):
        r = subprocess.run([sys.executable, BHLAB, "up", "--hosts", "1", "--json"],
                           capture_output=True, text=True, timeout=60, cwd=tempfile.gettempdir())
        self.assertEqual(r.returncode, 0, r.stderr)
        st = json.loads(r.stdout)
        prefix = st["prefix"]
        try:
            self.assertEqual(len(ns_with_prefix(prefix)), 6)
            # survives its creator; cleanup (without --all) keeps it
            subprocess.run([sys.executable, BHLAB, "cleanup"], capture_output=True, timeout=60)
            self.assertEqual(len(ns_with_prefix(prefix)), 6)
            r = subprocess.run([sys.executable, BHLAB, "exec", prefix, "h1", "--", "sh", "-c",
                                "hostname; ip -o -4 addr show dev eth0; exit 3"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn("h1\n", r.stdout)
            self.assertIn("10.77.0.11/16", r.stdout)
            r = subprocess.run([sys.executable, BHLAB, "list"], capture_output=True, text=True,
                               timeout=30)
            self.assertIn(prefix, r.stdout)
            lab = Lab.attach(prefix)
            self.assertTrue(lab.node_alive("ctl"))
            self.assertEqual(lab.run("ctl", ["hostname"], check=True).stdout.strip(), "ctl")
        finally:
            r = subprocess.run([sys.executable, BHLAB, "down", prefix], capture_output=True,
                               text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(ns_with_prefix(prefix), [])
        subprocess.run(["rm", "-rf", st["tmpdir"]])
        r = subprocess.run([sys.executable, BHLAB, "exec", prefix, "h1", "--", "true"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no lab", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
