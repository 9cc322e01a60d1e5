#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/<target>/ (committed; rerun after changing this file).

Seeds are small valid-looking inputs plus a few broken ones: the fuzzer mutates from them, and
the normal build replays them as the tests fuzz_replay_<target>. Files already in a corpus that
this script does not write (crash regressions, named crash-*/regress-*) are left alone.
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- netlink builders -------------------------------------------------------------------------
def align4(b):
    return b + b"\0" * (-len(b) % 4)


def nlattr(atype, payload):
    return align4(struct.pack("=HH", 4 + len(payload), atype) + payload)


def nlmsg(mtype, payload, seq=1, flags=0):
    return align4(struct.pack("=IHHII", 16 + len(payload), mtype, flags, seq, 0) + payload)


NLMSG_ERROR, NLMSG_DONE, SOCK_DIAG_BY_FAMILY = 2, 3, 20


def parse_seeds():
    for i, text in enumerate([
            "10.77.0.0/16", "fd77::/16", "10.77.0.5", "fd77::1", "::ffff:10.77.0.1/128",
            "10.77.0.1/24", "0.0.0.0/0", "::/0", "1h30m", "500ms", "3s", "1d", "0s",
            "[fd77::1]:443", "host.example:7443", "10.77.0.1:65536", "role=web,env=prod",
            "role=web", "a=b,a=c", "65535", "0", "k=", "=v"]):
        put("parse_fuzz", f"seed-{i:02d}", text)


def policy_seeds():
    os.makedirs(os.path.join(HERE, "corpus", "policy_fuzz"), exist_ok=True)
    for src in ["policies", "policies/guardrails", "tests/unit/common/testdata/policies-bad"]:
        d = os.path.join(ROOT, src)
        for n in sorted(os.listdir(d)):
            if n.endswith((".yaml", ".yml")):
                shutil.copyfile(os.path.join(d, n),
                                os.path.join(HERE, "corpus", "policy_fuzz",
                                             src.replace("/", "_") + "_" + n.lstrip(".")))


def tar_gz(members, top="cap-1", extra=()):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        d = tarfile.TarInfo(top)
        d.type = tarfile.DIRTYPE
        t.addfile(d)
        for name, data in list(members.items()) + list(extra):
            ti = tarfile.TarInfo(name if name.startswith(("/", "..")) else f"{top}/{name}")
            ti.size = len(data)
            ti.mtime = 0
            t.addfile(ti, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


SUMMARY_MEMBERS = {
    "metadata.json": {"host_id": "web-01", "capture_id": "cap-1", "collected_at_unix_ms": 1},
    "artifacts/processes.jsonl": [
        {"pid": 1, "ppid": 0, "comm": "init", "exe": "/sbin/init", "uid": 0},
        {"pid": 77, "ppid": 1, "comm": "implant", "exe": "/tmp/implant (deleted)",
         "exe_deleted": True, "exe_sha256": "ab" * 32, "recovered": "binaries/" + "ab" * 32},
        {"pid": 78, "ppid": 1, "comm": "memfd", "exe": "/memfd:x (deleted)", "exe_memfd": True,
         "exe_deleted": True}],
    "artifacts/sockets.jsonl": [
        {"family": "inet", "protocol": "tcp", "state": "listen", "local_address": "0.0.0.0",
         "local_port": 4444, "remote_address": "0.0.0.0", "remote_port": 0, "pids": [77]},
        {"family": "inet6", "protocol": "tcp", "state": "established",
         "local_address": "fd77::11", "local_port": 22, "remote_address": "fd77::66",
         "remote_port": 51234, "pids": [78]}],
    "artifacts/wtmp.jsonl": [
        {"type": "user_process", "user": "root", "line": "pts/0", "host": "10.77.0.66",
         "at_unix_ms": 5}],
    "artifacts/btmp.jsonl": [
        {"type": "login_process", "user": "admin", "host": "10.77.0.66", "at_unix_ms": 6}],
    "artifacts/preload.jsonl": [{"source": "/etc/ld.so.preload", "entry": "/tmp/x.so"}],
    "artifacts/kernel.json": {"tainted": 4096, "taint_flags": [{"flag": "O"}]},
    "artifacts/hidden_pids.jsonl": [{"pid": 999, "comm": "hidden"}],
    "collection-log.jsonl": [{"collector": "processes", "status": "ok"},
                             {"collector": "sockets", "status": "timeout", "error": "t"}],
}


def member_bytes(v):
    if isinstance(v, list):
        return "".join(json.dumps(x) + "\n" for x in v).encode()
    return json.dumps(v).encode()


def summary_seeds():
    text = ""
    for name, v in SUMMARY_MEMBERS.items():
        text += f"@@ {name}\n" + member_bytes(v).decode()
    put("summary_fuzz", "seed-full", text)
    put("summary_fuzz", "seed-wrong-types",
        "@@ metadata.json\n{\"host_id\": 7}\n@@ artifacts/processes.jsonl\n"
        "{\"pid\": \"1\", \"exe\": 5}\nnot json\n[1,2]\n@@ artifacts/sockets.jsonl\n"
        "{\"pids\": \"77\", \"local_port\": \"x\"}\n")
    put("summary_fuzz", "seed-empty", "")


def bundle_seeds():
    members = {name: member_bytes(v) for name, v in SUMMARY_MEMBERS.items()}
    files = [{"path": n, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
             for n, b in members.items() if n != "collection-log.jsonl"]
    manifest = {"format": "bulkhead-evidence/1", "capture_id": "cap-1", "host_id": "web-01",
                "files": files}
    members["manifest.json"] = json.dumps(manifest).encode()
    members["manifest.sig"] = b"\x30\x06\x02\x01\x01\x02\x01\x01"
    members["agent.crt"] = b"-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"
    put("bundle_fuzz", "seed-bundle.tar.gz", tar_gz(members))
    bad = dict(members)
    bad["manifest.json"] = json.dumps(
        {"format": 1, "files": [{"path": 3}, {"path": "x", "sha256": 5, "size": "7"}]}).encode()
    put("bundle_fuzz", "seed-bad-manifest.tar.gz", tar_gz(bad))
    put("bundle_fuzz", "seed-escape.tar.gz",
        tar_gz({"manifest.json": b"{}"}, extra=[("../etc/passwd", b"x"), ("/abs", b"y")]))
    put("bundle_fuzz", "seed-truncated.tar.gz", tar_gz(members)[:200])
    put("bundle_fuzz", "seed-not-gzip", b"plain text, not an archive\n")


def nft_seeds():
    NFNL_SUBSYS_NFTABLES = 10
    NEWTABLE, DELTABLE, NEWRULE, DELRULE, NEWGEN = 0, 2, 6, 8, 15

    def nft(msg, family, attrs):
        return nlmsg((NFNL_SUBSYS_NFTABLES << 8) | msg,
                     struct.pack("=BBH", family, 0, 0) + b"".join(attrs))

    table = nlattr(1, b"bulkhead\0")
    gen = nft(NEWGEN, 0, [nlattr(1, struct.pack(">I", 42)), nlattr(2, struct.pack(">I", 4242)),
                          nlattr(3, b"nft\0")])
    put("nft_event_fuzz", "seed-flush",
        nft(DELRULE, 1, [table]) + nft(DELTABLE, 1, [table]) + gen)
    put("nft_event_fuzz", "seed-add",
        nft(NEWTABLE, 1, [table]) + nft(NEWRULE, 1, [nlattr(1, b"bulkhead\0")]) + gen)
    put("nft_event_fuzz", "seed-other-table",
        nft(DELTABLE, 2, [nlattr(1, b"filter\0")]) + nlmsg(0x0101, b"\0" * 8))
    put("nft_event_fuzz", "seed-bad-attr", nft(DELTABLE, 1, [struct.pack("=HH", 200, 1)]))


def sock_diag_seeds():
    def inet(family, state, sport, dport, src, dst, inode):
        sockid = struct.pack(">HH", sport, dport) + src.ljust(16, b"\0") + dst.ljust(16, b"\0")
        sockid += struct.pack("=III", 0, 1, 0)
        return nlmsg(SOCK_DIAG_BY_FAMILY,
                     struct.pack("=BBBB", family, state, 0, 0) + sockid +
                     struct.pack("=IIIII", 0, 0, 0, 0, inode))

    v4 = inet(2, 1, 22, 51234, bytes([10, 77, 0, 11]), bytes([10, 77, 0, 66]), 1234)
    v6 = inet(10, 1, 22, 51235, bytes.fromhex("fd770000000000000000000000000011"),
              bytes.fromhex("fd770000000000000000000000000066"), 1235)
    done = nlmsg(NLMSG_DONE, struct.pack("=i", 0))
    put("sock_diag_fuzz", "seed-inet", v4 + v6 + done)
    put("sock_diag_fuzz", "seed-error", nlmsg(NLMSG_ERROR, struct.pack("=i", -1) + b"\0" * 16))
    put("sock_diag_fuzz", "seed-acks",
        nlmsg(NLMSG_ERROR, struct.pack("=i", 0) + b"\0" * 16, seq=5) +
        nlmsg(NLMSG_ERROR, struct.pack("=i", -2) + b"\0" * 16, seq=6))

    def unix(utype, state, ino, attrs):
        return nlmsg(SOCK_DIAG_BY_FAMILY,
                     struct.pack("=BBBBIII", 1, utype, state, 0, ino, 0, 0) + b"".join(attrs))

    put("sock_diag_fuzz", "seed-unix",
        unix(1, 10, 100, [nlattr(0, b"/run/systemd/private"), nlattr(7, struct.pack("=I", 0))]) +
        unix(2, 7, 101, [nlattr(0, b"\0abstract\xff"), nlattr(2, struct.pack("=I", 100))]) +
        done)

    def packet(num, ino, attrs):
        return nlmsg(SOCK_DIAG_BY_FAMILY,
                     struct.pack("=BBHIII", 17, 3, num, ino, 0, 0) + b"".join(attrs))

    put("sock_diag_fuzz", "seed-packet",
        packet(3, 200, [nlattr(0, struct.pack("=6I", 2, 0, 0, 0, 0, 1)),
                        nlattr(5, struct.pack("=I", 0))]) + done)
    put("sock_diag_fuzz", "seed-truncated", (v4 + v6)[:100])


def mountinfo_seeds():
    put("mountinfo_fuzz", "seed-mountinfo",
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "36 22 0:32 / /proc rw,nosuid shared:12 - proc proc rw\n"
        "40 22 0:45 / /mnt/my\\040share rw,relatime shared:20 - fuse.sshfs host:/x rw\n"
        "41 22 0:46 / /srv/nfs rw - nfs4 10.77.0.5:/export rw,vers=4.2\n"
        "42 22 0:47 / /a\\134b\\011c rw - cifs //h/s rw\n"
        "43 22 0:48 / /bad\\9 rw - 9p none rw\n")
    put("mountinfo_fuzz", "seed-short-lines", "1 2 3\n - fuse\n\\\n - nfs x\n")


def logins_seeds():
    # struct utmp on Linux x86_64/aarch64: 384 bytes.
    def utmp(ut_type, pid, line, uid_id, user, host, session, sec, addr):
        return (struct.pack("=hxxi", ut_type, pid) + line.ljust(32, b"\0") +
                uid_id.ljust(4, b"\0") + user.ljust(32, b"\0") + host.ljust(256, b"\0") +
                struct.pack("=hhiii", 0, 0, session, sec, 0) + addr.ljust(16, b"\0") +
                b"\0" * 20)

    recs = [utmp(2, 0, b"~", b"~~", b"reboot", b"6.1.0", 0, 1700000000, b""),
            utmp(7, 4242, b"pts/0", b"ts/0", b"root", b"10.77.0.66", 3, 1700000100,
                 bytes([10, 77, 0, 66])),
            utmp(8, 4242, b"pts/0", b"ts/0", b"", b"", 0, 1700000200, b""),
            utmp(6, 0, b"ssh:notty", b"", b"admin\xff\xfe", b"fd77::66", 0, 1700000300,
                 bytes.fromhex("fd770000000000000000000000000066"))]
    assert all(len(r) == 384 for r in recs)
    put("logins_fuzz", "seed-wtmp", b"".join(recs))
    put("logins_fuzz", "seed-short", recs[1][:100])
    put("logins_fuzz", "seed-session",
        "# This is private data. Do not parse.\nUID=0\nUSER=root\nACTIVE=1\nSTATE=active\n"
        "REMOTE=1\nTYPE=tty\nCLASS=user\nSCOPE=session-3.scope\nREMOTE_HOST=10.77.0.66\n"
        "SERVICE=sshd\nLEADER=4242\nREALTIME=1700000100000000\nTTY=pts/0\n")


def proc_seeds():
    put("proc_fuzz", "seed-stat",
        "4242 (evil) (x) S 1 4242 4242 34816 4242 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 "
        "1000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n")
    put("proc_fuzz", "seed-status",
        "Name:\tsshd\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNgid:\t0\nPid:\t4242\n"
        "PPid:\t1\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nThreads:\t1\n")
    put("proc_fuzz", "seed-cmdline", b"sshd: root@pts/0\0-D\0\xff\xfe\0")
    put("proc_fuzz", "seed-loginuid", "4294967295")
    put("proc_fuzz", "seed-net-tcp",
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode\n"
        "   0: 0B4D0A0A:0016 424D0A0A:C822 01 00000000:00000000 02:000A6AB1 00000000     0 "
        "       0 1234 2 0000000000000000 20 4 30 10 -1\n"
        "   1: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000     0        0 1235 1 0 100 0 0 10 0\n")
    put("proc_fuzz", "seed-maps",
        "55d0c0a00000-55d0c0a02000 r-xp 00000000 08:01 131 /tmp/implant (deleted)\n"
        "7f0000000000-7f0000001000 rwxp 00000000 00:00 0 \n"
        "7f0000002000-7f0000003000 r-xp 00000000 00:01 7 /memfd:payload (deleted)\n"
        "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]\n")
    put("proc_fuzz", "seed-proc-stat", "cpu  1 2 3 4\nbtime 1700000000\nprocesses 5\n")
    put("proc_fuzz", "seed-uptime", "12345.67 2345.00\n")
    put("proc_fuzz", "seed-fd-link", "socket:[12345]")
    put("proc_fuzz", "seed-loginctl-show",
        "Id=3\nUser=0\nName=root\nTTY=pts/0\nRemoteHost=10.77.0.66\nService=sshd\nLeader=4242\n")
    put("proc_fuzz", "seed-loginctl-list", "      3    0 root  pts/0\n c1 1000 user tty1\n")



def webhook_seeds():
    """The first byte picks the format (0 Alertmanager, 1 Falcosidekick, 2 generic)."""
    testdata = os.path.join(ROOT, "tests", "unit", "controller", "testdata", "webhook")
    for pick, name in ((0, "alertmanager_firing"), (0, "alertmanager_resolved"),
                       (1, "falcosidekick")):
        with open(os.path.join(testdata, name + ".json"), "rb") as f:
            put("webhook_fuzz", name, bytes([pick]) + f.read())
    put("webhook_fuzz", "generic",
        b'\x02{"alerts":[{"rule":"r","sev":"high","ips":["192.0.2.1"],"a":{"b":["h1"]},'
        b'"id":7,"r":true,"ttl":60,"x":{"y":"z"}}]}')
    put("webhook_fuzz", "am_missing", b'\x00{"version":"4","alerts":[{"status":"firing","labels":{}}]}')
    put("webhook_fuzz", "falco_bad", b'\x01{"rule":"r","priority":"Loud"}')


def crowdsec_seeds():
    # CrowdSec 1.4.6's /v1/decisions/stream answers, as seen in the lab (test_detection_tools).
    d = {"duration": "59.981466914s", "id": 1, "origin": "cscli",
         "scenario": "manual 'ban' from 'bulkhead-lab'", "scope": "Ip", "type": "ban",
         "value": "10.77.0.66"}
    put("crowdsec_fuzz", "seed-empty", '{"new":null,"deleted":null}')
    put("crowdsec_fuzz", "seed-new", json.dumps({"new": [d, dict(d, id=2, scope="Range",
                                                                   value="10.77.9.0/24",
                                                                   duration="3h59m58s")],
                                                 "deleted": None}))
    put("crowdsec_fuzz", "seed-deleted", json.dumps({"new": None, "deleted": [
        dict(d, duration="-6.2s"), dict(d, id=3, scope="Country", value="FR")]}))
    put("crowdsec_fuzz", "seed-later", json.dumps({"new": [dict(
        d, id=4, value="fd77::66", simulated=True, until="2026-12-04T03:00:00Z",
        type="captcha")], "deleted": []}))
    put("crowdsec_fuzz", "seed-bad", '{"new":[{"id":"1","duration":"1x"}]}')
    put("crowdsec_fuzz", "seed-duration", "1h2m3.5s")


if __name__ == "__main__":
    parse_seeds()
    policy_seeds()
    summary_seeds()
    bundle_seeds()
    nft_seeds()
    sock_diag_seeds()
    mountinfo_seeds()
    logins_seeds()
    proc_seeds()
    webhook_seeds()
    crowdsec_seeds()
