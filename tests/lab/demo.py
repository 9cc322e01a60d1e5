#!/usr/bin/env python3
"""The README demo: a scripted incident in a network-namespace lab.

A real bulkhead-controller and three real agents (h1 web, h2 db, h3 web) in their own network,
PID and mount namespaces; an attacker with a live TCP session into h1; the payment database
(the `service` node) streaming to h1; an implant on h1 whose binary was deleted. The responder
captures h1's state and then isolates it keeping the database flow (`isolate --capture-first`):
the attacker's session dies at once, the database stream never misses a write; the evidence is
listed, summarised (the implant named) and verified; then h1 is released. The incident INC-42
holds it all: its timeline, and at the end its signed PDF report (kept in BUILD/demo/INC-42.pdf).
The SOC's chat channel (a Slack-compatible webhook, its receiver in the lab) is told of each
action as it happens.
Everything runs inside namespaces this script creates and removes.

    python3 tests/lab/demo.py [--build-dir build] [--keep]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bhlab import Lab, read_json, wait_until  # noqa: E402
from fleet import REPO, Fleet  # noqa: E402

BOLD = "\033[1m" if sys.stdout.isatty() else ""
RESET = "\033[0m" if sys.stdout.isatty() else ""


def say(text):
    print(f"\n{BOLD}== {text}{RESET}", flush=True)


def show(fleet, *args, node="jump"):
    print(f"$ bulkhead {' '.join(args)}", flush=True)
    rc, out, err = fleet.cli(*args, json_out=False, node=node)
    sys.stdout.write(out)
    if err:
        sys.stdout.write(err)
    sys.stdout.flush()
    return rc


def soc_channel(lab) -> str:
    """A policy directory whose notifications go to a Slack-compatible receiver in the service
    node (tests/lab/notify_sinks.py, started here); returns the directory."""
    policies = os.path.join(lab.tmpdir, "policies")
    shutil.copytree(os.path.join(REPO, "policies"), policies)
    os.makedirs(os.path.join(policies, "notifications"))
    with open(os.path.join(policies, "notifications", "soc-chat.yaml"), "w") as f:
        f.write(f"name: soc-chat\ntype: slack\nurl: http://{lab.ip4('service')}:8088/slack\n"
                "allow_insecure: true\n")
    sink = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notify_sinks.py")
    lab.spawn("service", [sys.executable, sink, "http", "8088", "--out",
                          os.path.join(lab.tmpdir, "soc-chat.jsonl")], label="soc-chat")
    wait_until(lambda: lab.tcp_probe("jump", lab.ip4("service"), 8088), 15,
               desc="the SOC chat receiver")
    return policies


def soc_messages(lab, seen: int = 0) -> int:
    """Prints the SOC chat's messages after the first `seen`; returns how many it has now."""
    path = os.path.join(lab.tmpdir, "soc-chat.jsonl")
    if not os.path.exists(path):
        return seen
    with open(path, encoding="utf-8") as f:
        texts = [json.loads(json.loads(line)["body"])["text"].split("\n")[0] for line in f]
    for t in texts[seen:]:
        print(f"SOC chat <- {t[:150]}")
    return len(texts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the lab's log directory")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("demo: run as root (it builds network namespaces)", file=sys.stderr)
        return 2
    build_dir = os.path.abspath(args.build_dir) if args.build_dir else None

    with Lab(hosts=3) as lab:
        if args.keep:
            lab.mark_failed()
        say("A lab: controller, hosts h1-h3, jump host, database (service), attacker; "
            "no route outside")
        fleet = Fleet(lab, build_dir, heartbeat_interval="1s", heartbeat_timeout="3s",
                      policy_dir=soc_channel(lab))
        print(f"fleet PKI in {fleet.pki} (ECDSA CA, controller, admin operator, 3 agents)")
        fleet.start_controller()
        labels = {"h1": {"role": "web", "env": "prod"}, "h2": {"role": "db", "env": "prod"},
                  "h3": {"role": "web", "env": "prod"}}
        for h, l in labels.items():
            fleet.start_agent(h, l)
        fleet.wait_online(labels, timeout=20)

        say("The fleet, as the responder sees it from the jump host")
        show(fleet, "hosts")

        say("The incident: the attacker holds a session into h1:2222; h1 writes to the "
            "payment database (service:5432) every 5 ms")
        lab.tcp_server("h1", 2222)
        lab.tcp_server("service", 5432)
        attacker = lab.tcp_stream("attacker", lab.ip4("h1"), 2222)
        database = lab.tcp_stream("h1", lab.ip4("service"), 5432)
        time.sleep(1.0)
        a, d = read_json(attacker.report_path), read_json(database.report_path)
        print(f"attacker session: {a['echoes']} round trips; database stream: "
              f"{d['echoes']} round trips, {d['failures']} failures")

        say("The intruder left an implant on h1: a binary started, then deleted from disk, "
            "calling home to the attacker and listening on 4444")
        implant_dir = os.path.join(lab.tmpdir, "implant")
        os.makedirs(implant_dir)
        implant = os.path.join(implant_dir, "kworker-update")
        shutil.copy("/usr/bin/python3.11", implant)
        lab.tcp_server("attacker", 9001)
        pidfile = os.path.join(implant_dir, "pid")
        code = ("import os,socket,time;l=socket.socket();l.bind(('0.0.0.0',4444));l.listen();"
                "c=socket.create_connection(('10.77.0.66',9001));"
                f"open('{pidfile}','w').write(str(os.getpid()));time.sleep(3600)")
        lab.spawn("h1", [implant, "-c", code], env={"PYTHONHOME": "/usr"}, label="implant")
        wait_until(lambda: os.path.exists(pidfile), 15, desc="implant running")
        os.unlink(implant)
        print(f"implant pid {open(pidfile).read()} on h1, its file deleted")

        say("Open the incident: everything done with --incident INC-42 is its timeline")
        show(fleet, "incident", "open", "INC-42", "--title", "webshell on h1", "--severity",
             "high")

        say("Capture h1's volatile state first, then contain it, keeping the database "
            "replication (and, by default, the jump host)")
        t0 = time.time()
        rc = show(fleet, "isolate", "h1", "--capture-first", "--exempt", "postgres-replication",
                  "--reason", "webshell on h1", "--incident", "INC-42")
        t1 = time.time()
        if rc != 0:
            print("isolation did not complete: see the lab logs", file=sys.stderr)
            lab.mark_failed()
            return 1
        print(f"(the CLI returned {1000 * (t1 - t0):.0f} ms after the command, with the "
              "rules read back from the kernel)")
        time.sleep(1.0)
        a, d = read_json(attacker.report_path), read_json(database.report_path)
        err = a.get("first_error") or {}
        when = ""
        if err:
            lag = 1000 * (err.get("time", t1) - t1)
            when = (f", {lag:.0f} ms after the CLI returned" if lag > 0 else
                    ", before the CLI had even returned")
        print(f"attacker session: {a['state']}"
              + (f" ({err.get('error')}{when})" if err else ""))
        print(f"database stream: {d['state']}, {d['echoes']} round trips, "
              f"{d['failures']} failures")
        ok = lab.tcp_probe("attacker", lab.ip4("h1"), 2222, timeout=1)
        print(f"new attacker connection to h1:2222: {'CONNECTED (bad)' if ok else 'blocked'}")
        ok6 = lab.tcp_probe("attacker", lab.ip6("h1"), 2222, timeout=1)
        print(f"new attacker connection over IPv6: {'CONNECTED (bad)' if ok6 else 'blocked'}")

        say("The SOC's chat was told, from the audit trail, as it happened")
        time.sleep(1.5)
        told = soc_messages(lab)

        say("The evidence: stored by its SHA-256, signed by h1's agent, with a custody record")
        rc, doc, err = fleet.cli("evidence", "list", "--host", "h1")
        evidence_id = doc["evidence"][-1]["evidence_id"] if rc == 0 and doc.get("evidence") else ""
        show(fleet, "evidence", "list")
        show(fleet, "evidence", "show", evidence_id[:12])
        show(fleet, "evidence", "verify", evidence_id[:12])

        say("Status of h1")
        show(fleet, "status", "h1")

        say("Release h1")
        show(fleet, "incident", "note", "INC-42",
             "implant kworker-update recovered from memory; web root restored")
        show(fleet, "release", "h1", "--reason", "cleaned up", "--incident", "INC-42")
        ok = lab.tcp_probe("attacker", lab.ip4("h1"), 2222, timeout=1)
        print(f"new connection to h1:2222 after release: {'connected' if ok else 'BLOCKED (bad)'}")
        time.sleep(1.5)
        soc_messages(lab, told)
        show(fleet, "notify", "channels")

        say("A detection tool on h3 (sshguard) reports the attacker through h3's agent; the "
            "ssh-brute-force playbook blocks it on every host")
        argv = [fleet.bin("bulkhead-agent"), "signal", "--source", "sshguard", "--rule", "sshd",
                "--ip", lab.ip4("attacker"), "--ttl", "10m",
                "--state-dir", fleet.agent_state_dir("h3")]
        print("$ (on h3) bulkhead-agent signal --source sshguard --rule sshd --ip "
              f"{lab.ip4('attacker')} --ttl 10m", flush=True)
        r = lab.run("h3", argv, timeout=30)
        sys.stdout.write(r.stdout + r.stderr)
        wait_until(lambda: not lab.tcp_probe("attacker", lab.ip4("h1"), 2222, timeout=0.3), 10,
                   desc="the fleet-wide block")
        print("new attacker connection to h1:2222: blocked (the block is fleet-wide)")
        show(fleet, "signals")
        show(fleet, "blocks")

        say("The incident's timeline: every action, its evidence, the regulator clock")
        show(fleet, "incident", "show", "INC-42")
        show(fleet, "incident", "close", "INC-42", "--summary",
             "webshell removed, implant recovered, h1 released")

        say("The signed report for lawyers, insurers and the regulator")
        # Kept after the lab is gone: beside the build, replacing an earlier demo's report.
        out_dir = os.path.join(fleet.build_dir, "demo")
        os.makedirs(out_dir, exist_ok=True)
        report = os.path.join(out_dir, "INC-42.pdf")
        for suffix in ("", ".manifest", ".sig", ".crt"):
            if os.path.exists(report + suffix):
                os.remove(report + suffix)
        show(fleet, "incident", "report", "INC-42", "--format", "pdf", "--output", report)
        show(fleet, "incident", "verify-report", report)
        if shutil.which("pdftotext") and os.path.exists(report):
            text = subprocess.run(["pdftotext", "-layout", report, "-"], capture_output=True,
                                  text=True, timeout=60).stdout
            lines = text.splitlines()
            start = next((i for i, line in enumerate(lines) if "Timeline" in line), None)
            if start is not None:
                print(f"the timeline in {report} (pdftotext):")
                print("\n".join(line.rstrip() for line in lines[start:start + 14]))

        say("The audit trail")
        show(fleet, "audit", "--limit", "8")
        show(fleet, "audit", "--verify")
        print("\ndemo complete; the lab is being removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
