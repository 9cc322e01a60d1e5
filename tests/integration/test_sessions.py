#!/usr/bin/env python3
"""Sessions and processes in the lab, with real SSH sessions: a real sshd in host h1 (UsePAM yes, so
pam_loginuid gives every login its audit session id), real ssh clients from the attacker and
the jump host with key authentication, test users created here (machine-wide: the lab shares
/etc) and deleted at the end. Then kill-sessions (--from, --user, --session, --freeze,
--capture-first: the session's processes in a signed bundle, captured while stopped),
kill-process (--exe, --tree) and the refusals (pid 1, the agent, protected processes, unknown
user or session: exit 2, nothing killed). Root only.
"""

import hashlib
import json
import os
import shutil
import tarfile
import subprocess
import sys
import time
import unittest
import uuid

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed, wait_until  # noqa: E402
from fleet import Fleet  # noqa: E402

IS_ROOT = os.geteuid() == 0
HOST = "h1"
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
            "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=3"]


def _have(path):
    return os.access(path, os.X_OK)


@unittest.skipUnless(IS_ROOT, "the lab needs root")
@unittest.skipUnless(_have("/usr/sbin/sshd") and _have("/usr/bin/ssh"),
                     "openssh-server and openssh-client are needed (scripts/install-deps.sh)")
class SessionsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.users = []
        # Cleanups run last-in first-out: the lab (and every process of the users) goes first.
        cls.addClassCleanup(cls.delete_users)
        cls.lab = Lab(hosts=1)
        cls.addClassCleanup(cls.lab.close)
        tag = uuid.uuid4().hex[:6]
        cls.mallory = f"bhtest-m{tag}"   # the intruder's account
        cls.alice = f"bhtest-a{tag}"     # a responder on the jump host
        cls.sshdir = os.path.join(cls.lab.tmpdir, "ssh")
        os.makedirs(cls.sshdir)
        os.chmod(cls.lab.tmpdir, 0o711)
        os.chmod(cls.sshdir, 0o755)
        for u in (cls.mallory, cls.alice):
            subprocess.run(["useradd", "-M", "-d", "/", "-s", "/bin/sh", u], check=True,
                           capture_output=True, timeout=30)
            cls.users.append(u)
            subprocess.run(["usermod", "-p", "*", u], check=True, capture_output=True,
                           timeout=30)
            key = os.path.join(cls.sshdir, f"id_{u}")
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key],
                           check=True, capture_output=True, timeout=30)
            shutil.copy(key + ".pub", os.path.join(cls.sshdir, f"{u}.authorized"))
            os.chmod(os.path.join(cls.sshdir, f"{u}.authorized"), 0o644)
        hostkey = os.path.join(cls.sshdir, "host_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostkey],
                       check=True, capture_output=True, timeout=30)
        conf = os.path.join(cls.sshdir, "sshd_config")
        with open(conf, "w") as f:
            f.write(f"""Port 22
ListenAddress 0.0.0.0
ListenAddress ::
HostKey {hostkey}
PidFile none
UsePAM yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile {cls.sshdir}/%u.authorized
StrictModes no
PermitRootLogin no
LogLevel VERBOSE
""")
        cls.sshd = cls.lab.spawn(HOST, ["/usr/sbin/sshd", "-D", "-e", "-f", conf], label="sshd")
        wait_until(lambda: cls.sshd.poll() is not None or
                   cls.lab.tcp_probe("jump", cls.lab.ip4(HOST), 22), 15, interval=0.1,
                   desc="sshd listening")
        if cls.sshd.poll() is not None:
            raise RuntimeError("sshd exited: " + cls.lab.log_text(cls.sshd))
        # A binary the agent is told to protect (like a database server).
        cls.protected_dir = os.path.join(cls.lab.tmpdir, "protected")
        os.makedirs(cls.protected_dir)
        cls.protected_exe = os.path.join(cls.protected_dir, "keepme")
        shutil.copy("/bin/sleep", cls.protected_exe)
        cls.fleet = Fleet(cls.lab, heartbeat_interval="500ms", heartbeat_timeout="3s")
        cls.fleet.start_controller()
        cls.fleet.start_agent(HOST, {"role": "web"}, extra=["--protect-exe", cls.protected_exe])
        cls.fleet.wait_online([HOST], timeout=20)

    @classmethod
    def delete_users(cls):
        for u in cls.users:
            r = subprocess.run(["userdel", u], capture_output=True, timeout=30)
            if r.returncode != 0:   # a straggler still running as the user: remove anyway
                subprocess.run(["userdel", "-f", u], capture_output=True, timeout=30)

    def tearDown(self):
        failed = case_failed(self)
        if failed:
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)
        # every test starts without sessions of the test users
        for u in self.users:
            self.fleet.cli("kill-sessions", HOST, "--user", u, "--reason", "test cleanup",
                           timeout=60)
        for p in getattr(self, "_clients", []):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)

    # ---- helpers -------------------------------------------------------------------------------

    def ssh(self, node, user, command):
        """A real ssh client in `node`, logged in to h1 as `user`, running `command`."""
        key = os.path.join(self.sshdir, f"id_{user}")
        p = self.lab.spawn(node, ["ssh", "-i", key, *SSH_OPTS,
                                  f"{user}@{self.lab.ip4(HOST)}", command],
                           label=f"ssh-{user}")
        self._clients = getattr(self, "_clients", []) + [p]
        return p

    def ps(self):
        """h1's processes: pid -> (ppid, sessionid, user, args), read inside h1."""
        script = ("for d in /proc/[0-9]*; do p=${d#/proc/}; "
                  "s=$(cat $d/sessionid 2>/dev/null) || continue; "
                  "st=$(cut -d' ' -f4 $d/stat 2>/dev/null) || continue; "
                  "u=$(stat -c %U $d 2>/dev/null); "
                  "a=$(tr '\\0' ' ' < $d/cmdline 2>/dev/null); "
                  "echo \"$p|$st|$s|$u|$a\"; done")
        r = self.lab.sh(HOST, script, timeout=30)
        out = {}
        for line in r.stdout.splitlines():
            parts = line.split("|", 4)
            if len(parts) == 5 and parts[0].isdigit():
                out[int(parts[0])] = (int(parts[1]), int(parts[2]), parts[3], parts[4].strip())
        return out

    def sessions(self):
        rc, doc, err = self.fleet.cli("sessions", HOST, timeout=30)
        self.assertEqual(rc, 0, err)
        return doc["list_sessions"]["sessions"]

    def wait_session(self, user, marker, timeout=15):
        """The session of `user` whose processes include `marker` in a command line."""
        def find():
            procs = self.ps()
            ids = {s for (_, s, _, a) in procs.values() if marker in a}
            for s in self.sessions():
                if s["user"] == user and s["id"] in ids:
                    return s
            return None
        return wait_until(find, timeout, interval=0.2, desc=f"session of {user} running {marker}")

    def pids_running(self, marker):
        """Processes whose command line starts with `marker` (not the shells that ran them)."""
        return sorted(p for p, (_, _, _, a) in self.ps().items() if a.startswith(marker))

    def listener_pids(self):
        return [p for p, (pp, _, _, a) in self.ps().items() if pp in (0, 1) and "[listener]" in a]

    def kill(self, *args, expect=0):
        rc, doc, err = self.fleet.cli(*args, "--reason", "sessions lab test", timeout=60)
        self.assertEqual(rc, expect, f"{args}: rc={rc} err={err} out={doc}")
        return doc, err

    # ---- tests ---------------------------------------------------------------------------------

    def test_01_sessions_listed_with_remote_and_audit_id(self):
        m = f"sleep 1001{os.getpid() % 10}"
        self.ssh("attacker", self.mallory, f"{m}")
        s = self.wait_session(self.mallory, m)
        self.assertEqual(s["remote"], self.lab.ip4("attacker"))
        self.assertEqual(s["service"], "sshd")
        self.assertGreaterEqual(s["processes"], 3)   # [priv], user sshd, the command
        self.assertNotEqual(s["id"], 4294967295)
        rc, text, err = self.fleet.cli("sessions", HOST, json_out=False, timeout=30)
        self.assertEqual(rc, 0, err)
        self.assertIn(self.mallory, text)
        self.assertIn("REMOTE", text)
        self.kill("kill-sessions", HOST, "--user", self.mallory)

    def test_02_kill_from_cidr_ends_attacker_and_nohup_child_only(self):
        tag = str(int(time.time() * 1000) % 100000)
        evil = self.ssh("attacker", self.mallory,
                        f"nohup sleep 2{tag} >/dev/null 2>&1 & setsid sleep 3{tag} & sleep 4{tag}")
        good = self.ssh("jump", self.alice, f"sleep 5{tag}")
        s_evil = self.wait_session(self.mallory, f"sleep 4{tag}")
        s_good = self.wait_session(self.alice, f"sleep 5{tag}")
        wait_until(lambda: self.pids_running(f"sleep 2{tag}") and self.pids_running(f"sleep 3{tag}"),
                   10, desc="nohup and setsid children")
        listener = self.listener_pids()
        self.assertEqual(len(listener), 1)

        doc, _ = self.kill("kill-sessions", HOST, "--from", f"{self.lab.ip4('attacker')}/32")
        res = doc["kill_processes"]
        self.assertEqual([s["id"] for s in res["sessions"]], [s_evil["id"]])
        for t in (f"sleep 2{tag}", f"sleep 3{tag}", f"sleep 4{tag}"):
            self.assertTrue(any(p["cmdline"].startswith(t) for p in res["killed"]), (t, res))
        self.assertTrue(all(p["pid"] for p in res["killed"]))
        # The session's TCP connection was cut (RST) before the kill, and the client saw it end.
        self.assertGreaterEqual(res["connections_cut"], 1, res)
        evil.wait(timeout=15)
        for t in (f"sleep 2{tag}", f"sleep 3{tag}", f"sleep 4{tag}"):
            self.assertEqual(self.pids_running(t), [], t)
        # The responder's session and the sshd listener live on.
        self.assertIsNone(good.poll())
        self.assertTrue(self.pids_running(f"sleep 5{tag}"))
        self.assertIn(listener[0], self.ps())
        self.assertIn(s_good["id"], [s["id"] for s in self.sessions()])
        # And the audit trail holds the result.
        rc, audit, err = self.fleet.cli("audit", timeout=30)
        self.assertEqual(rc, 0, err)
        rows = [r for r in audit["records"] if r.get("action") == "kill-sessions.result"]
        self.assertTrue(any(f"sleep 4{tag}" in r.get("detail", "") for r in rows), rows[-3:])
        self.kill("kill-sessions", HOST, "--user", self.alice)
        good.wait(timeout=15)

    def test_03_user_ends_all_sessions_of_that_user_session_only_one(self):
        tag = str(int(time.time() * 1000) % 100000)
        a1 = self.ssh("attacker", self.mallory, f"sleep 6{tag}")
        a2 = self.ssh("jump", self.mallory, f"sleep 7{tag}")
        b1 = self.ssh("jump", self.alice, f"sleep 8{tag}")
        b2 = self.ssh("jump", self.alice, f"sleep 9{tag}")
        self.wait_session(self.mallory, f"sleep 6{tag}")
        self.wait_session(self.mallory, f"sleep 7{tag}")
        s_b1 = self.wait_session(self.alice, f"sleep 8{tag}")
        s_b2 = self.wait_session(self.alice, f"sleep 9{tag}")

        doc, _ = self.kill("kill-sessions", HOST, "--user", self.mallory)
        self.assertEqual(len(doc["kill_processes"]["sessions"]), 2)
        a1.wait(timeout=15)
        a2.wait(timeout=15)
        self.assertIsNone(b1.poll())
        self.assertIsNone(b2.poll())

        doc, _ = self.kill("kill-sessions", HOST, "--session", str(s_b1["id"]))
        self.assertEqual([s["id"] for s in doc["kill_processes"]["sessions"]], [s_b1["id"]])
        b1.wait(timeout=15)
        time.sleep(0.5)
        self.assertIsNone(b2.poll())
        self.assertTrue(self.pids_running(f"sleep 9{tag}"))
        self.assertIn(s_b2["id"], [s["id"] for s in self.sessions()])
        self.kill("kill-sessions", HOST, "--session", str(s_b2["id"]))
        b2.wait(timeout=15)

    def test_04_freeze_captures_records_before_the_kill(self):
        tag = str(int(time.time() * 1000) % 100000)
        evil = self.ssh("attacker", self.mallory, f"nohup sleep 3{tag} >/dev/null 2>&1 & sleep 2{tag}")
        s = self.wait_session(self.mallory, f"sleep 2{tag}")
        doc, _ = self.kill("kill-sessions", HOST, "--session", str(s["id"]), "--freeze")
        res = doc["kill_processes"]
        self.assertTrue(res["frozen"])
        recs = {r["pid"]: r for r in res["records"]}
        killed = {p["pid"] for p in res["killed"]}
        self.assertEqual(set(recs), killed)   # a record for every process that died
        sleeps = [r for r in recs.values() if r["cmdline"].startswith(f"sleep 2{tag}")]
        self.assertEqual(len(sleeps), 1)
        rec = sleeps[0]
        self.assertEqual(rec["user"], self.mallory)
        self.assertTrue(rec["exe"].endswith("sleep"), rec)
        with open("/bin/sleep", "rb") as f:
            import hashlib
            self.assertEqual(rec["exe_sha256"], hashlib.sha256(f.read()).hexdigest())
        # the session's sshd held the TCP connection to the attacker: its record shows it
        sshd_socks = [sk for r in recs.values() if r["comm"] == "sshd" for sk in r["sockets"]
                      if sk.get("kind") == "tcp"]
        self.assertTrue(any(self.lab.ip4("attacker") in sk["remote"] for sk in sshd_socks),
                        sshd_socks)
        evil.wait(timeout=15)
        self.assertEqual(self.pids_running(f"sleep 3{tag}"), [])

    def test_04b_capture_first_bundle_holds_the_stopped_session(self):
        tag = str(int(time.time() * 1000) % 100000)
        evil = self.ssh("attacker", self.mallory, f"nohup sleep 3{tag} >/dev/null 2>&1 & sleep 2{tag}")
        s = self.wait_session(self.mallory, f"sleep 2{tag}")
        doc, _ = self.kill("kill-sessions", HOST, "--from", f"{self.lab.ip4('attacker')}/32",
                           "--capture-first")
        res = doc["kill_processes"]
        self.assertEqual([x["id"] for x in res["sessions"]], [s["id"]])
        self.assertEqual(res["capture_error"], "")
        eid = res["capture"]["evidence_id"]
        killed = {p["pid"]: p for p in res["killed"]}
        sleeps = [p for p in killed.values() if p["cmdline"].startswith(f"sleep 2{tag}")]
        self.assertEqual(len(sleeps), 1)
        evil.wait(timeout=15)
        for t in (f"sleep 2{tag}", f"sleep 3{tag}"):
            self.assertEqual(self.pids_running(t), [], t)
        print(f"kill-sessions --capture-first: {len(killed)} processes stopped "
              f"{res['stopped_for_capture_ms']} ms for the capture", file=sys.stderr)

        out = os.path.join(self.lab.tmpdir, "session-capture-first.tar.gz")
        rc, got, err = self.fleet.cli("evidence", "get", eid, "--output", out, timeout=120)
        self.assertEqual(rc, 0, err)
        with tarfile.open(out, "r:gz") as tar:
            top = tar.getnames()[0].split("/", 1)[0]
            data = tar.extractfile(f"{top}/artifacts/stopped_processes.jsonl").read()
            recs = {r["pid"]: r for r in map(json.loads, data.decode().splitlines())}
            self.assertEqual(set(recs), set(killed), "every killed process is in the bundle")
            with open("/bin/sleep", "rb") as f:
                sleep_sha = hashlib.sha256(f.read()).hexdigest()
            r = recs[sleeps[0]["pid"]]
            self.assertEqual(r["state"], "T")
            self.assertEqual(r["exe_sha256"], sleep_sha)
            self.assertEqual(hashlib.sha256(tar.extractfile(f"{top}/{r['binary']}").read())
                             .hexdigest(), sleep_sha)
            self.assertTrue(r["maps"] and r["fds"] is not None, r)
            # the session's sshd holds the attacker's TCP connection: a socket fd in its record
            sshd = [x for x in recs.values() if any("sshd" in a for a in x["cmdline"] or [])]
            self.assertTrue(any(f["socket_inode"] for x in sshd for f in x["fds"]), sshd)

    def test_05_kill_process_exe_and_tree(self):
        d = os.path.join(self.lab.tmpdir, f"bin{int(time.time() * 1000) % 100000}")
        os.makedirs(d)
        exe = os.path.join(d, "implant")
        shutil.copy("/bin/sleep", exe)
        for i in range(3):
            self.lab.spawn(HOST, [exe, f"90{i}"], label="implant")
        other = self.lab.spawn(HOST, ["sleep", "9031"], label="other")
        wait_until(lambda: len(self.pids_running(f"{exe} 90")) == 3, 10, desc="implants")
        doc, _ = self.kill("kill-process", HOST, "--exe", exe)
        self.assertEqual(len(doc["kill_processes"]["killed"]), 3)
        wait_until(lambda: self.pids_running(f"{exe} 90") == [], 10, desc="implants gone")
        self.assertIsNone(other.poll())

        # --tree: a parent shell with children and a grandchild
        parent = self.lab.spawn(HOST, ["sh", "-c", f"sleep 9101 & sh -c 'sleep 9102 & wait' & {exe} 9100"],
                                label="tree")
        wait_until(lambda: self.pids_running("sleep 9102") and self.pids_running(f"{exe} 9100"), 10,
                   desc="tree")
        procs = self.ps()
        root = [p for p, (_, _, _, a) in procs.items() if a.startswith("sh -c sleep 9101")]
        self.assertEqual(len(root), 1)
        doc, _ = self.kill("kill-process", HOST, "--pid", str(root[0]), "--tree")
        self.assertGreaterEqual(len(doc["kill_processes"]["killed"]), 5)   # sh, sleep, sh, sleep, implant
        parent.wait(timeout=10)
        for t in ("sleep 9101", "sleep 9102", f"{exe} 9100"):
            self.assertEqual(self.pids_running(t), [], t)
        self.assertIsNone(other.poll())
        other.kill()

    def test_05b_all_interactive_sessions_and_kill_process_user(self):
        tag = str(int(time.time() * 1000) % 100000)
        a = self.ssh("attacker", self.mallory, f"sleep 11{tag}")
        b = self.ssh("jump", self.alice, f"sleep 12{tag}")
        self.wait_session(self.mallory, f"sleep 11{tag}")
        self.wait_session(self.alice, f"sleep 12{tag}")
        bystander = self.lab.spawn(HOST, ["sleep", f"13{tag}"], label="bystander")  # no session
        listener = self.listener_pids()
        doc, _ = self.kill("kill-sessions", HOST, "--all")
        users = sorted(s["user"] for s in doc["kill_processes"]["sessions"])
        self.assertEqual(users, sorted([self.mallory, self.alice]))
        a.wait(timeout=15)
        b.wait(timeout=15)
        self.assertIsNone(bystander.poll())
        self.assertEqual(self.listener_pids(), listener)

        # kill-process --user: every process of that uid, wherever it runs
        c = self.ssh("jump", self.alice, f"nohup sleep 14{tag} >/dev/null 2>&1 & sleep 15{tag}")
        wait_until(lambda: self.pids_running(f"sleep 14{tag}") and self.pids_running(f"sleep 15{tag}"),
                   15, desc="alice's processes")
        doc, _ = self.kill("kill-process", HOST, "--user", self.alice)
        for t in (f"sleep 14{tag}", f"sleep 15{tag}"):
            self.assertTrue(any(p["cmdline"].startswith(t) for p in doc["kill_processes"]["killed"]), t)
        self.assertTrue(all(p["user"] == self.alice for p in doc["kill_processes"]["killed"]))
        c.wait(timeout=15)
        self.assertIsNone(bystander.poll())
        bystander.kill()

    def test_06_refusals_exit_2_nothing_killed(self):
        procs_before = self.ps()
        agent = [p for p, (pp, _, _, a) in procs_before.items() if "bulkhead-agent" in a]
        listener = self.listener_pids()
        self.assertEqual(len(agent), 1)
        self.assertEqual(len(listener), 1)
        keep = self.lab.spawn(HOST, [self.protected_exe, "9201"], label="keepme")
        wait_until(lambda: self.pids_running(f"{self.protected_exe} 9201"), 10, desc="keepme")

        for args, words in (
                (("kill-process", HOST, "--pid", "1"), "pid 1"),
                (("kill-process", HOST, "--pid", "1", "--tree"), "pid 1"),
                (("kill-process", HOST, "--pid", str(agent[0]), "--tree"), "agent"),
                (("kill-process", HOST, "--pid", str(agent[0])), "agent"),
                (("kill-process", HOST, "--pid", str(listener[0])), "sshd listener"),
                (("kill-process", HOST, "--exe", self.protected_exe), "protected exe"),
                (("kill-sessions", HOST, "--user", "bhtest-nobody-xyz"), "unknown user"),
                (("kill-sessions", HOST, "--session", "987654"), "no session"),
                (("kill-process", HOST, "--user", "bhtest-nobody-xyz"), "unknown user")):
            _, err = self.kill(*args, expect=2)
            self.assertIn(words, err, args)
            self.assertEqual(len(err.strip().splitlines()), 1, err)
        # usage errors
        rc, _, err = self.fleet.cli("kill-sessions", HOST, "--reason", "x", timeout=30)
        self.assertEqual(rc, 2, err)
        rc, _, err = self.fleet.cli("kill-process", HOST, "--pid", "5", "--exe", "/x", "--reason",
                                    "x", timeout=30)
        self.assertEqual(rc, 2, err)
        after = self.ps()
        self.assertIn(1, after)
        self.assertIn(agent[0], after)
        self.assertIn(listener[0], after)
        self.assertIsNone(keep.poll())
        keep.kill()


if __name__ == "__main__":
    unittest.main(verbosity=2)
