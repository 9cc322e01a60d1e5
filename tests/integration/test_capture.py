#!/usr/bin/env python3
"""Evidence capture in the lab with a chain of custody. Root only.

h1 runs a planted implant: a copied binary, started, then deleted from disk, holding a TCP
connection to the attacker and listening on a port. The bundle must show it (flagged deleted,
binary recovered with the right SHA-256, its connection and listener with its pid) and the
summary must name it. `verify` passes on a fresh bundle and fails naming the file after one
stored byte changes; every `get` is in the custody record; a hung collector (h2's agent runs
with --test-hang-collector) is cut at its time limit; a capture over 64 MiB (h3: an implant
with 80 MiB of random bytes appended) streams through; `isolate --capture-first` captures the
firewall and connections as the intruder left them, then isolates. `kill-process
--capture-first` stops the implant, captures the host with the implant's maps, fds and binary
while it is stopped, then kills it; with a capture that cannot finish in time (--capture-limit
1ms) the kill still happens and the failure is reported (exit 1).
"""

import statistics

import hashlib
import io
import json
import os
import sys
import tarfile
import time
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed, read_json, wait_until  # noqa: E402
from fleet import Fleet  # noqa: E402

IS_ROOT = os.geteuid() == 0
HOSTS = {"h1": {"role": "web"}, "h2": {"role": "db"}, "h3": {"role": "web"}}
ATTACKER4 = "10.77.0.66"
C2_PORT = 9001        # the attacker's listener the implant calls home to
BACKDOOR = 4444       # the implant's own listening port
PYTHON = "/usr/bin/python3.11"

IMPLANT_CODE = """
import os, socket, sys, time
pidfile = sys.argv[1]
l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", %d))
l.listen(4)
c = socket.create_connection(("%s", %d), timeout=5)
c.sendall(b"hello from implant\\n")
with open(pidfile + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(pidfile + ".tmp", pidfile)
time.sleep(3600)
""" % (BACKDOOR, ATTACKER4, C2_PORT)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Bundle:
    """A downloaded bundle opened with Python's tarfile (a stock reader)."""

    def __init__(self, path):
        self.tar = tarfile.open(path, "r:gz")
        self.names = self.tar.getnames()
        tops = {n.split("/", 1)[0] for n in self.names}
        assert len(tops) == 1, f"one top directory expected, got {tops}"
        self.top = tops.pop()

    def read(self, rel):
        f = self.tar.extractfile(f"{self.top}/{rel}")
        return f.read() if f else None

    def jsonl(self, name):
        data = self.read(f"artifacts/{name}")
        if data is None:
            return []
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]

    def log(self):
        data = self.read("collection-log.jsonl") or b""
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class CaptureTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=3)
        cls.addClassCleanup(cls.lab.close)
        cls.fleet = Fleet(cls.lab, heartbeat_interval="500ms", heartbeat_timeout="3s")
        cls.fleet.start_controller()
        for h, labels in HOSTS.items():
            extra = ["--test-hang-collector"] if h == "h2" else []
            cls.fleet.start_agent(h, labels, extra=extra)
        cls.fleet.wait_online(HOSTS, timeout=20)
        cls.c2 = cls.lab.tcp_server("attacker", C2_PORT)
        cls.out_dir = os.path.join(cls.lab.tmpdir, "evidence-out")
        os.makedirs(cls.out_dir, exist_ok=True)

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    # ---- helpers -------------------------------------------------------------------------------

    def plant_implant(self, host, pad_mib=0):
        """Copies python to a file, optionally pads it, starts it as the implant and deletes
        the file. Returns (pid inside the host's pid namespace, SHA-256 of the binary)."""
        d = os.path.join(self.lab.tmpdir, f"implant-{host}")
        os.makedirs(d, exist_ok=True)
        exe = os.path.join(d, "implant")
        with open(PYTHON, "rb") as src, open(exe, "wb") as dst:
            dst.write(src.read())
            if pad_mib:
                dst.write(os.urandom(pad_mib << 20))
        os.chmod(exe, 0o755)
        sha = sha256_file(exe)
        pidfile = os.path.join(d, "pid")
        if os.path.exists(pidfile):   # an earlier implant's on this host: wait for this one's
            os.unlink(pidfile)
        p = self.lab.spawn(host, [exe, "-c", IMPLANT_CODE, pidfile],
                           env={"PYTHONHOME": "/usr", "PATH": "/usr/bin:/bin"}, label="implant")
        wait_until(lambda: os.path.exists(pidfile) or p.poll() is not None, 15,
                   desc="implant up")
        self.assertIsNone(p.poll(), f"implant exited: {self.lab.log_text(p)}")
        os.unlink(exe)
        self.addCleanup(lambda: (p.kill(), p.wait()))
        with open(pidfile) as f:
            return int(f.read()), sha

    def capture(self, host, *extra, expect=0, reason="INC-42", timeout=300):
        out = os.path.join(self.out_dir, f"{host}-{time.time_ns()}.tar.gz")
        t0 = time.monotonic()
        rc, doc, err = self.fleet.cli("capture", host, "--reason", reason, "--output", out,
                                      *extra, timeout=timeout)
        took = time.monotonic() - t0
        self.assertEqual(rc, expect, f"capture {host}: {err} {doc}")
        if expect != 0:
            return None, None, err
        self.assertIsInstance(doc, dict, err)
        self.assertEqual(doc["output"], out)
        doc = doc["record"]
        self.assertTrue(os.path.exists(out))
        self.assertEqual(sha256_file(out), doc["evidence_id"], "downloaded bytes = evidence id")
        print(f"capture {host}: {took:.2f} s end to end, {int(doc['size']) / 2**20:.1f} MiB, "
              f"{doc.get('files')} files", file=sys.stderr)
        return doc, Bundle(out), err

    def stored_path(self, evidence_id):
        return os.path.join(self.fleet.data_dir, "evidence", evidence_id[:2],
                            f"{evidence_id}.tar.gz")

    def evidence(self, *args, expect=0):
        rc, doc, err = self.fleet.cli("evidence", *args, timeout=120)
        self.assertEqual(rc, expect, f"evidence {args}: {err} {doc}")
        return doc, err

    # ---- tests ---------------------------------------------------------------------------------

    def test_implant_is_captured_and_named(self):
        pid, sha = self.plant_implant("h1")
        doc, bundle, err = self.capture("h1")
        self.assertEqual(doc["host_id"], "h1")
        self.assertEqual(doc["reason"], "INC-42")
        self.assertTrue(doc.get("signature_ok"), doc)
        self.assertIn("capture h1", err, "progress shown on stderr")

        procs = {p["pid"]: p for p in bundle.jsonl("processes.jsonl")}
        self.assertIn(pid, procs, "implant in the process table")
        imp = procs[pid]
        self.assertTrue(imp["exe_deleted"], imp)
        self.assertTrue(imp["exe"].endswith("(deleted)"), imp)
        self.assertEqual(imp["exe_sha256"], sha)
        self.assertEqual(imp["recovered"], f"binaries/{sha}")
        recovered = bundle.read(imp["recovered"])
        self.assertIsNotNone(recovered, "recovered binary in the bundle")
        self.assertEqual(hashlib.sha256(recovered).hexdigest(), sha)

        socks = bundle.jsonl("sockets.jsonl")
        conn = [s for s in socks if s.get("protocol") == "tcp" and
                s.get("remote_address") == ATTACKER4 and s.get("remote_port") == C2_PORT]
        self.assertTrue(conn, "the implant's connection to the attacker")
        self.assertIn(pid, conn[0]["pids"])
        self.assertEqual(conn[0]["state"], "established")
        listen = [s for s in socks if s.get("protocol") == "tcp" and
                  s.get("state") == "listen" and s.get("local_port") == BACKDOOR]
        self.assertTrue(listen, "the implant's listener")
        self.assertIn(pid, listen[0]["pids"])

        # the other artifacts are there and every collector ran
        log = {e["collector"]: e for e in bundle.log()}
        for c in ("metadata", "processes", "open_files", "sockets", "network", "firewall",
                  "logins", "kernel", "temp_files", "persistence"):
            self.assertIn(c, log, f"collector {c} in the log")
            self.assertIn(log[c]["status"], ("ok", "truncated"), log[c])
        meta = json.loads(bundle.read("metadata.json"))
        self.assertEqual(meta["host_id"], "h1")
        self.assertIn("boot_time_unix_ms", meta)
        self.assertIn("clock_offset_ms", meta)
        self.assertTrue(any(a.get("address") == self.lab.ip4("h1")
                            for a in bundle.jsonl("addresses.jsonl")))
        self.assertTrue(bundle.jsonl("routes.jsonl"))
        manifest = json.loads(bundle.read("manifest.json"))
        self.assertEqual(manifest["format"], "bulkhead-evidence/1")
        for f in manifest["files"]:
            self.assertEqual(hashlib.sha256(bundle.read(f["path"])).hexdigest(), f["sha256"],
                             f["path"])

        show, _ = self.evidence("show", doc["evidence_id"])
        s = show["summary"]
        deleted = [d for d in s["deleted_executables"] if d["pid"] == pid]
        self.assertTrue(deleted, s["deleted_executables"])
        self.assertTrue(any(f.get("pid") == pid and f["kind"] == "deleted_executable"
                            for f in s["findings"]), s["findings"])
        self.assertTrue(any(x.get("pid") == pid and str(BACKDOOR) in x.get("local", "")
                            for x in s["unexpected_listeners"]), s["unexpected_listeners"])
        self.assertTrue(any(x.get("pid") == pid and ATTACKER4 in x.get("remote", "")
                            for x in s["remote_connections"]), s["remote_connections"])
        # the human summary names it too
        rc, text, err = self.fleet.cli("evidence", "show", doc["evidence_id"][:12],
                                       json_out=False)
        self.assertEqual(rc, 0, err)
        self.assertIn(str(pid), text)
        self.assertIn("deleted", text)

    def test_verify_custody_and_tamper(self):
        doc, _, _ = self.capture("h1", reason="INC-43 verify")
        eid = doc["evidence_id"]
        v, _ = self.evidence("verify", eid)
        self.assertTrue(v["ok"], v)
        self.assertGreater(v.get("files_checked", 0), 5)

        for _ in range(2):
            out = os.path.join(self.out_dir, f"get-{time.time_ns()}.tar.gz")
            g, _ = self.evidence("get", eid, "--output", out)
            self.assertEqual(sha256_file(out), eid)
        listed, _ = self.evidence("list")
        self.assertIn(eid, [r["evidence_id"] for r in listed["evidence"]])
        v, _ = self.evidence("verify", eid)
        custody = v["record"]["custody"]
        actions = [c["action"] for c in custody]
        # capture --output downloaded once, then two gets
        self.assertEqual(actions.count("get"), 3, actions)
        self.assertIn("requested", actions)
        self.assertIn("received", actions)
        self.assertTrue(all(c.get("actor") for c in custody))

        # one byte of the stored bundle changed: verify fails naming the file
        stored = self.stored_path(eid)
        self.assertTrue(os.path.exists(stored), stored)
        with open(stored, "rb") as f:
            original = f.read()
        damaged = bytearray(original)
        damaged[len(damaged) // 2] ^= 0x01
        with open(stored, "wb") as f:
            f.write(damaged)
        try:
            rc, text, err = self.fleet.cli("evidence", "verify", eid, json_out=False)
            self.assertEqual(rc, 1, f"{text} {err}")
            self.assertIn(eid, text + err, "the stored file is named")
            self.assertIn("FAIL", text + err)
        finally:
            with open(stored, "wb") as f:
                f.write(original)

        # one member's content changed inside a well-formed bundle: verify names that member
        src = tarfile.open(fileobj=io.BytesIO(original), mode="r:gz")
        buf = io.BytesIO()
        dst = tarfile.open(fileobj=buf, mode="w:gz")
        target = None
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None
            if m.name.endswith("artifacts/processes.jsonl"):
                target = m.name
                data = data.replace(b'"pid"', b'"pId"', 1)
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
        dst.close()
        self.assertIsNotNone(target)
        with open(stored, "wb") as f:
            f.write(buf.getvalue())
        try:
            rc, v, err = self.fleet.cli("evidence", "verify", eid)
            self.assertEqual(rc, 1, err)
            files = [p["file"] for p in v["problems"]]
            self.assertTrue(any(f.endswith("artifacts/processes.jsonl") for f in files), files)
        finally:
            with open(stored, "wb") as f:
                f.write(original)
        v, _ = self.evidence("verify", eid)
        self.assertTrue(v["ok"], v)

    def test_hung_collector_is_cut(self):
        t0 = time.monotonic()
        doc, bundle, _ = self.capture("h2", "--collector-timeout", "2s", reason="INC-44 hang")
        took = time.monotonic() - t0
        self.assertLess(took, 60, "the capture did not wait for the hung collector")
        self.assertTrue(any("test-hang" in e for e in doc.get("collector_errors", [])), doc)
        log = {e["collector"]: e for e in bundle.log()}
        self.assertEqual(log["test-hang"]["status"], "timeout", log["test-hang"])
        self.assertEqual(log["processes"]["status"], "ok", log["processes"])
        v, _ = self.evidence("verify", doc["evidence_id"])
        self.assertTrue(v["ok"], v)

    def test_capture_over_64_mib_streams(self):
        pid, sha = self.plant_implant("h3", pad_mib=80)
        doc, bundle, _ = self.capture("h3", reason="INC-45 large")
        self.assertGreater(int(doc["size"]), 64 << 20)
        imp = {p["pid"]: p for p in bundle.jsonl("processes.jsonl")}[pid]
        self.assertEqual(imp["exe_sha256"], sha)
        self.assertFalse(imp.get("recovered_truncated", False))
        self.assertEqual(hashlib.sha256(bundle.read(imp["recovered"])).hexdigest(), sha)
        v, _ = self.evidence("verify", doc["evidence_id"])
        self.assertTrue(v["ok"], v)

    def test_isolate_capture_first(self):
        server = self.lab.tcp_server("h3", 7070)
        stream = self.lab.tcp_stream("attacker", self.lab.ip4("h3"), 7070)
        self.addCleanup(lambda: (stream.terminate(), stream.wait(), server.kill(),
                                 server.wait()))
        before = {r["evidence_id"] for r in self.evidence("list")[0].get("evidence", [])}
        rc, doc, err = self.fleet.cli("isolate", "h3", "--capture-first", "--reason",
                                      "INC-46", "--wait", "10s", timeout=300)
        self.addCleanup(lambda: self.fleet.cli("release", "h3", "--reason", "test cleanup",
                                               timeout=60))
        self.assertEqual(rc, 0, f"{err} {doc}")
        wait_until(lambda: read_json(stream.report_path)["state"] == "dead", 5,
                   desc="attacker stream cut by the isolation")
        new = [r for r in self.evidence("list", "--host", "h3")[0]["evidence"]
               if r["evidence_id"] not in before]
        self.assertEqual(len(new), 1, new)
        out = os.path.join(self.out_dir, "capture-first.tar.gz")
        self.evidence("get", new[0]["evidence_id"], "--output", out)
        b = Bundle(out)
        ruleset = json.loads(b.read("artifacts/nftables.json"))
        tables = [x["table"]["name"] for x in ruleset.get("nftables", []) if "table" in x]
        self.assertNotIn("bulkhead", tables, "captured before the isolation changed it")
        # the echo server is dual-stack: its accepted sockets carry v4-mapped addresses
        self.assertTrue(any(s.get("remote_address") in (ATTACKER4, "::ffff:" + ATTACKER4)
                            and s.get("local_port") == 7070
                            and s.get("state") == "established"
                            for s in b.jsonl("sockets.jsonl")),
                        "the attacker's live connection as the intruder left it")

        # while isolated, a capture still reaches the controller (the channel is exempt) and
        # now shows the isolation table
        doc, after, _ = self.capture("h3", reason="INC-46 after isolation")
        ruleset = json.loads(after.read("artifacts/nftables.json"))
        tables = [x["table"]["name"] for x in ruleset.get("nftables", []) if "table" in x]
        self.assertIn("bulkhead", tables)
        show, _ = self.evidence("show", doc["evidence_id"])
        agent = json.loads(after.read("metadata.json"))["agent_pid"]
        self.assertFalse(any(f.get("pid") == agent for f in show["summary"]["findings"]),
                         "the agent's own controller channel is not a finding")

    def kill_capture_first(self, host, *match, expect=0, limit=None):
        extra = ["--capture-limit", limit] if limit else []
        rc, doc, err = self.fleet.cli("kill-process", host, *match, "--capture-first", *extra,
                                      "--reason", "INC-47 stop-capture-kill", timeout=330)
        self.assertEqual(rc, expect, f"kill-process {match}: {err} {doc}")
        self.assertIsInstance(doc, dict, err)
        return doc["kill_processes"], err

    def test_kill_process_capture_first(self):
        pid, sha = self.plant_implant("h1")
        res, _ = self.kill_capture_first("h1", "--pid", str(pid))
        self.assertEqual([p["pid"] for p in res["killed"]], [pid])
        self.assertEqual(res["capture_error"], "")
        eid = res["capture"]["evidence_id"]
        self.assertTrue(res["capture_id"].startswith("cap-"), res)
        self.assertEqual(res["capture"]["capture_id"], res["capture_id"])
        print(f"kill-process --capture-first: implant stopped {res['stopped_for_capture_ms']} ms "
              f"for the capture", file=sys.stderr)
        # dead afterwards, inside the host's own pid namespace (a zombie until the lab reaps it)
        def dead():
            r = self.lab.sh("h1", f"cut -d' ' -f3 /proc/{pid}/stat 2>/dev/null", check=False)
            return r.stdout.strip() in ("", "Z", "X")
        wait_until(dead, 10, desc="implant dead")

        out = os.path.join(self.out_dir, "kill-capture-first.tar.gz")
        self.evidence("get", eid, "--output", out)
        self.assertEqual(sha256_file(out), eid)
        b = Bundle(out)
        recs = [r for r in b.jsonl("stopped_processes.jsonl") if r["pid"] == pid]
        self.assertEqual(len(recs), 1, b.jsonl("stopped_processes.jsonl"))
        r = recs[0]
        self.assertEqual(r["state"], "T", "captured while stopped")
        self.assertEqual(r["exe_sha256"], sha)
        self.assertTrue(r["exe"].endswith("(deleted)"), r["exe"])
        self.assertEqual(hashlib.sha256(b.read(r["binary"])).hexdigest(), sha,
                         "the deleted binary's bytes are in the bundle")
        self.assertTrue(any("libpython" in m or "implant" in m for m in r["maps"]), r["maps"][:5])
        self.assertTrue(any("[stack]" in m for m in r["maps"]))
        socks = [f for f in r["fds"] if f["socket_inode"]]
        self.assertGreaterEqual(len(socks), 2, r["fds"])   # the listener and the C2 connection
        self.assertIn("pos", socks[0])
        self.assertTrue(any(line.startswith("State:\tT") for line in r["status"]), r["status"])
        self.assertIn(IMPLANT_CODE.strip().splitlines()[0], " ".join(r["cmdline"]))
        self.assertIn("PYTHONHOME=/usr", r["environ"])
        # ... with the host's full volatile state, as any capture
        conns = [s for s in b.jsonl("sockets.jsonl") if pid in (s.get("pids") or [])]
        self.assertTrue(any(s.get("remote_address") == ATTACKER4 and s.get("remote_port") == C2_PORT
                            for s in conns), conns)
        self.assertTrue(b.jsonl("processes.jsonl"))
        self.assertEqual(json.loads(b.read("metadata.json"))["capture_id"], res["capture_id"])
        # stored with its custody record, and verifiable
        v, _ = self.evidence("verify", eid)
        self.assertTrue(v["ok"], v)
        self.assertEqual(v["record"]["capture_id"], res["capture_id"])
        self.assertIn("received", [c["action"] for c in v["record"]["custody"]])
        show, _ = self.evidence("show", eid)
        self.assertTrue(any(d["pid"] == pid for d in show["summary"]["deleted_executables"]))
        rc, audit, err = self.fleet.cli("audit", timeout=30)
        self.assertEqual(rc, 0, err)
        rows = [x for x in audit["records"] if x.get("action") == "kill-process.result"]
        self.assertTrue(any(eid in x.get("detail", "") for x in rows), rows[-2:])

    def test_kill_process_capture_first_failure_still_kills(self):
        victim = self.lab.spawn("h1", ["sleep", "4711"], label="victim")
        self.addCleanup(lambda: (victim.kill(), victim.wait()))
        wait_until(lambda: "sleep 4711" in self.lab.sh("h1", "ps -eo args", check=False).stdout,
                   10, desc="victim up")
        pid = int(self.lab.sh("h1", "pgrep -f '^sleep 4711$'").stdout.split()[0])
        # 1 ms is not enough for a full capture: it is cancelled, the kill goes on
        res, err = self.kill_capture_first("h1", "--pid", str(pid), expect=1, limit="1ms")
        self.assertEqual([p["pid"] for p in res["killed"]], [pid])
        self.assertIsNone(res["capture"])
        self.assertIn("not finished within 1 ms", res["capture_error"])
        self.assertIn("killed without it", err)
        victim.wait(timeout=10)
        rc, text, err = self.fleet.cli("kill-process", "h1", "--pid", "999999", "--capture-first",
                                       "--capture-limit", "1ms", "--reason", "x", json_out=False,
                                       timeout=60)
        self.assertEqual(rc, 2, f"{text} {err}")   # matches nothing: refused, nothing captured

    def test_kill_process_capture_first_stop_times(self):
        """Figures: how long the processes stay stopped for a full capture."""
        times = []
        for i in range(5):
            v = self.lab.spawn("h1", ["sleep", f"48{i}0"], label="victim")
            self.addCleanup(lambda v=v: (v.kill(), v.wait()))
            wait_until(lambda i=i: self.lab.sh("h1", f"pgrep -f '^sleep 48{i}0$'",
                                               check=False).returncode == 0, 10, desc="victim")
            pid = int(self.lab.sh("h1", f"pgrep -f '^sleep 48{i}0$'").stdout.split()[0])
            res, _ = self.kill_capture_first("h1", "--pid", str(pid))
            self.assertTrue(res["capture"]["evidence_id"])
            times.append(int(res["stopped_for_capture_ms"]))
        print(f"capture-first stop time over {len(times)} kills: min {min(times)} ms, median "
              f"{statistics.median(times)} ms, max {max(times)} ms", file=sys.stderr)

    def test_bad_input_changes_nothing(self):
        before = self.evidence("list")[0].get("evidence", [])
        for args, needle in ((("capture", "h1"), "--reason"),
                             (("capture", "nosuchhost", "--reason", "x"), "nosuchhost"),
                             (("evidence", "get", "deadbeefdeadbeef"), "deadbeefdeadbeef"),
                             (("evidence", "verify", "00"), "")):
            rc, _, err = self.fleet.cli(*args, timeout=60)
            self.assertEqual(rc, 2, f"{args}: {err}")
            self.assertEqual(len(err.strip().splitlines()), 1, err)
            self.assertIn(needle, err)
        self.assertEqual(len(self.evidence("list")[0].get("evidence", [])), len(before))

    # ---- a hostile host: root on h2 writes what its agent uploads ----------------------------

    def audit_rows(self, limit=2000):
        rc, doc, err = self.fleet.cli("audit", "--limit", str(limit), timeout=60)
        self.assertEqual(rc, 0, f"audit: {err}")
        return doc.get("records", [])

    def plant_in_spool(self, host, capture_id, name, data):
        """Writes a bundle and its sidecar into the agent's spool, as root on the host can."""
        spool = os.path.join(self.fleet.agent_state_dir(host), "evidence")
        os.makedirs(spool, mode=0o700, exist_ok=True)
        with open(os.path.join(spool, name), "wb") as f:
            f.write(data)
        sidecar = {"capture_id": capture_id, "size": len(data),
                   "sha256": hashlib.sha256(data).hexdigest(), "file_name": name,
                   "command_id": "", "spooled_at_unix_ms": 0}
        with open(os.path.join(spool, capture_id + ".json"), "w") as f:
            json.dump(sidecar, f)
        return sidecar["sha256"]

    @staticmethod
    def crafted_bundle(capture_id, host, junk):
        """A tar.gz shaped like a bundle: an unsigned manifest listing nothing and `junk`
        members with 200-character names (one verification problem each)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            def add(name, data):
                info = tarfile.TarInfo(f"{capture_id}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            add("manifest.json", json.dumps({"format": "bulkhead-evidence/1", "host_id": host,
                                             "files": []}).encode())
            for i in range(junk):
                add(f"junk/{i:0>200}", b"")
        return buf.getvalue()

    def restart_h2(self):
        self.fleet.kill_agent("h2")
        self.fleet.start_agent("h2", HOSTS["h2"], extra=["--test-hang-collector"])
        self.fleet.wait_online(["h2"], timeout=20)

    def test_hostile_uploads_are_bounded(self):
        # An open capture whose agent never answers: the hung collector holds it past --wait,
        # then the agent is killed before it uploads.
        rc, _, err = self.fleet.cli("capture", "h2", "--reason", "INC-48 hostile", "--wait",
                                    "1s", "--collector-timeout", "60s", timeout=60)
        self.assertEqual(rc, 1, err)
        self.fleet.kill_agent("h2")
        self.addCleanup(self.restart_h2)
        caps = [r for r in self.audit_rows() if r["action"] == "capture"
                and r.get("target") == "h2" and "INC-48" in r.get("reason", "")]
        self.assertTrue(caps, "the capture's audit row")
        capture_id = caps[-1]["detail"].split()[1]
        # Root on h2 plants a crafted bundle for it: 20,000 bogus members.
        crafted = self.crafted_bundle(capture_id, "h2", 20000)
        eid = self.plant_in_spool("h2", capture_id, "crafted.tar.gz", crafted)
        self.fleet.start_agent("h2", HOSTS["h2"], extra=["--test-hang-collector"])
        self.fleet.wait_online(["h2"], timeout=20)
        wait_until(lambda: any(r["evidence_id"] == eid for r in
                               self.evidence("list", "--host", "h2")[0].get("evidence", [])),
                   30, desc="the crafted bundle uploaded by h2's agent")
        # Stored (never dropped), unsigned; its audit row bounded; audit and show still work.
        rows = [r for r in self.audit_rows() if r["action"] == "evidence-received"
                and r.get("target") == eid]
        self.assertTrue(rows)
        self.assertLess(len(rows[-1].get("detail", "")), 10000, rows[-1].get("detail", "")[:300])
        self.assertIn("signature NOT OK", rows[-1]["detail"])
        show, err = self.evidence("show", eid)
        self.assertFalse(show["record"].get("signature_ok", False))
        v, _ = self.evidence("verify", eid, expect=1)
        self.assertLessEqual(len(v["problems"]), 101)
        # A different bundle for the capture now received is refused; the agent keeps it.
        other = self.crafted_bundle(capture_id, "h2", 3)
        self.plant_in_spool("h2", capture_id, "crafted2.tar.gz", other)
        self.restart_h2()
        wait_until(lambda: any(r["action"] == "evidence-received"
                               and "already has its bundle" in r.get("outcome", "")
                               for r in self.audit_rows()),
                   30, desc="the second bundle refused and audited")
        spool = os.path.join(self.fleet.agent_state_dir("h2"), "evidence")
        self.assertTrue(os.path.exists(os.path.join(spool, "crafted2.tar.gz")))
        os.unlink(os.path.join(spool, "crafted2.tar.gz"))
        os.unlink(os.path.join(spool, capture_id + ".json"))

    def test_offline_host_fails_clearly(self):
        self.fleet.kill_agent("h2")
        self.addCleanup(lambda: (self.fleet.start_agent("h2", HOSTS["h2"],
                                                        extra=["--test-hang-collector"]),
                                 self.fleet.wait_online(["h2"], timeout=20)))
        self.fleet.wait_online(["h2"], timeout=15, online=False)
        _, _, err = self.capture("h2", expect=1, timeout=60)
        self.assertIn("h2", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
