#!/usr/bin/env python3
"""Fails on an #include that breaks bulkhead's layering (README.md, Layout; each top folder's
README says what it may depend on). Run by CTest (test `layering`, label unit).

  scripts/check_layers.py [--root DIR]   checks the sources under DIR (default: the repo)
  scripts/check_layers.py --self-test    proves each rule reports a violation
  scripts/check_layers.py --compile-db BUILD/compile_commands.json [--self-test]
      checks that the build enforces the same project rules: with the compile command of a
      source in each folder, a header of every folder that folder may not include is not found
      (each target exports only its own folder's headers, cmake/Headers.cmake), while a header
      of its own folder is. --self-test adds -I<repo> to every command (a target exporting the
      whole tree) and passes only if every forbidden header is then reported.

Prints one line per violation, "FILE:LINE: includes X: RULE" (compile check: "FILE: finds X:
RULE"), and a closing "N passed, N failed" line (files or probes checked, violations). Exit
status 1 on any violation.
"""
import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile

import compile_db

# (folder the including file is in, forbidden included path (regex), why). Checked in order;
# every matching rule reports.
PROJECT_RULES = [
    ("common/", r"^(agent|controller|cli|evidence)/",
     "common/ depends on nothing of ours"),
    ("evidence/", r"^(agent|controller|cli)/",
     "evidence/ depends only on common/"),
    ("agent/core/", r"^(agent/(linux|collect|capture|daemon|rpc)|controller|cli)/",
     "agent/core/ is pure: no side effects, no rpc"),
    ("controller/core/", r"^(controller/(rpc|service|store)|agent|cli)/",
     "controller/core/ is pure: no store, no service, no rpc"),
    ("controller/playbook/", r"^(controller/(rpc|service|store)|agent|cli)/",
     "controller/playbook/ is pure: no store, no service, no rpc"),
    ("controller/store/", r"^(controller/(rpc|service)|agent|cli)/",
     "controller/store/ stores: it never calls service/ or rpc/"),
    ("controller/store/", r"^controller/report/",
     "controller/store/ stores: the report reads it, not the other way"),
    ("controller/report/", r"^(controller/(rpc|service|webhook|crowdsec|metrics)|agent|cli)/",
     "controller/report/ renders what service/ hands it: it never calls service/ or rpc/"),
    ("controller/crowdsec/", r"^controller/rpc/",
     "controller/crowdsec/ is a front door: it hands signals to service/'s SignalIntake, "
     "never through rpc/"),
    ("controller/notify/", r"^controller/(rpc|webhook|crowdsec|metrics)/",
     "controller/notify/ sits beside rpc/: it reads the audit trail from the store and answers "
     "operators through service/'s NotificationService"),
    ("controller/metrics/", r"^controller/(rpc|webhook|crowdsec)/",
     "controller/metrics/ sits beside rpc/: it reads the fleet and the store through the "
     "functions main.cc hands it"),
    ("controller/service/", r"^controller/rpc/",
     "controller/service/ is what every front door calls: it never includes rpc/"),
    ("controller/service/", r"^controller/webhook/",
     "controller/service/ is what every front door calls: it never includes webhook/"),
    ("controller/webhook/formats", r"^controller/(rpc|service|store)/",
     "controller/webhook/formats is pure: payload text in, signals out, no service or store"),
    ("controller/webhook/", r"^controller/(rpc|store)/",
     "controller/webhook/ is a front door beside rpc/: it reaches the controller through "
     "service/ only"),
    ("controller/", r"^(agent|cli)/",
     "the controller does not include the agent or the CLI"),
    ("agent/", r"^(controller|cli)/",
     "the agent does not include the controller or the CLI"),
    ("cli/", r"^(agent|controller/(rpc|service|store))/",
     "the CLI talks to the controller over its API only"),
]

# Kernel interfaces: only agent/linux/ and agent/collect/ (and tests) may include them.
KERNEL_HEADER = re.compile(
    r"^(nftables/|netlink/|libmnl/|linux/(netlink|rtnetlink|sock_diag|inet_diag|unix_diag|"
    r"packet_diag|netfilter)|sys/pidfd\.h)")
KERNEL_ALLOWED = ("agent/linux/", "agent/collect/", "tests/", "bench/", "fuzz/")

# gRPC (its headers and the generated service stubs, *.grpc.pb.h): only the transport layers.
# Everything else handles plain types and the generated messages (*.pb.h).
GRPC_HEADER = re.compile(r"^(grpcpp/|grpc/|grpc\+\+/|.*\.grpc\.pb\.h$)")
GRPC_ALLOWED = ("controller/rpc/", "agent/rpc/", "cli/", "common/tls/", "controller/main.cc",
                "tests/", "bench/", "fuzz/")

SOURCE_DIRS = ("agent", "controller", "common", "evidence", "cli", "tests", "bench", "fuzz")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')

COMMON_TLS_WHY = ("common/ is the part without TLS, the CA or gRPC; common/pki/ and common/tls/ "
                  "build on it, not the other way")


def project_rules_for(rel):
    """(forbidden included path (regex), why) of every project rule for the file at rel."""
    rules = [(forbidden, why) for folder, forbidden, why in PROJECT_RULES
             if rel.startswith(folder)]
    if rel.startswith("common/") and not rel.startswith(("common/tls/", "common/pki/")):
        rules.append((r"^common/(tls|pki)/", COMMON_TLS_WHY))
    if rel.startswith("common/pki/"):
        rules.append((r"^common/tls/", "common/pki/ is the CA alone; common/tls/ builds on it"))
    return rules


def check_file(rel, text):
    problems = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = INCLUDE.match(line)
        if not m:
            continue
        kind, inc = m.group(1), m.group(2)
        if kind == '"':
            for forbidden, why in project_rules_for(rel):
                if re.match(forbidden, inc):
                    problems.append(f"{rel}:{lineno}: includes {inc}: {why}")
        if KERNEL_HEADER.match(inc) and not rel.startswith(KERNEL_ALLOWED):
            problems.append(f"{rel}:{lineno}: includes <{inc}>: kernel interfaces (netlink, "
                            "nftables, pidfd) belong in agent/linux/ or agent/collect/")
        if GRPC_HEADER.match(inc) and not rel.startswith(GRPC_ALLOWED):
            problems.append(f"{rel}:{lineno}: includes {inc}: gRPC belongs in the rpc/ layers "
                            "(controller/rpc/, agent/rpc/, cli/, common/tls/)")
    return problems


def check_tree(root):
    files = 0
    problems = []
    for top in SOURCE_DIRS:
        base = os.path.join(root, top)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if d != "testdata"]
            for name in sorted(filenames):
                if not name.endswith((".cc", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8", errors="replace") as f:
                    problems += check_file(rel, f.read())
                files += 1
    return files, problems


def compile_args(entry):
    """The compiler and its options from a compile_commands.json entry, without the source,
    the output, the dependency-file and the precompiled header's options."""
    args = compile_db.without_pch(compile_db.arguments(entry))
    if os.path.basename(args[0]) in ("ccache", "sccache"):
        args = args[1:]
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
        elif a in ("-c", "-MD", "-MMD", entry["file"]):
            pass
        else:
            out.append(a)
    return out


def finds(entry, header, extra):
    """Whether entry's compile command (plus extra) finds header: the preprocessor's
    __has_include, which searches exactly as #include does without reading the header."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = os.path.join(tmp, "probe.cc")
        with open(probe, "w") as f:
            f.write(f'#if __has_include("{header}")\nbulkhead_found\n#else\n'
                    'bulkhead_missing\n#endif\n')
        r = subprocess.run(compile_args(entry) + extra + ["-E", "-P", probe],
                           cwd=entry["directory"], capture_output=True, text=True)
    words = r.stdout.split()
    if r.returncode != 0 or words not in (["bulkhead_found"], ["bulkhead_missing"]):
        raise RuntimeError(f"{entry['file']}: the probe for {header} did not preprocess "
                           f"(exit {r.returncode}): {r.stderr.strip()[-500:]}")
    return words == ["bulkhead_found"]


def compile_probes(db_path, root):
    """(including file's entry, header, forbidden: why or None for the own-folder control)."""
    with open(db_path) as f:
        entries = json.load(f)
    units = {}
    for e in sorted(entries, key=lambda e: e["file"]):
        rel = os.path.relpath(os.path.realpath(e["file"]), os.path.realpath(root))
        if rel.startswith("..") or not rel.endswith(".cc"):
            continue
        units.setdefault(os.path.dirname(rel), (rel, e))
    header_dirs = {}
    for top in SOURCE_DIRS:
        if top in ("tests", "bench", "fuzz"):
            continue
        for dirpath, _, filenames in os.walk(os.path.join(root, top)):
            headers = sorted(n for n in filenames if n.endswith(".h"))
            if headers:
                folder = os.path.relpath(dirpath, root)
                header_dirs[folder] = f"{folder}/{headers[0]}"
    probes = []
    for folder, (rel, entry) in sorted(units.items()):
        rules = project_rules_for(rel)
        if not rules:
            continue
        if folder in header_dirs:
            probes.append((rel, entry, header_dirs[folder], None))
        for _, header in sorted(header_dirs.items()):
            for forbidden, why in rules:
                if re.match(forbidden, header):
                    probes.append((rel, entry, header, why))
                    break
    return probes


def check_compile(db_path, root, extra):
    """(probes, problems): each problem is (file, header, message)."""
    probes = compile_probes(db_path, root)
    problems = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = pool.map(lambda p: finds(p[1], p[2], extra), probes)
        for (rel, _, header, why), found in zip(probes, results):
            if why is None and not found:
                problems.append((rel, header, f"does not find {header}, a header of its own "
                                 "folder"))
            elif why is not None and found:
                problems.append((rel, header, f"finds {header}: {why}"))
    return probes, problems


def compile_self_test(db_path, root):
    probes, problems = check_compile(db_path, root, ["-I" + root])
    forbidden = {(rel, header) for rel, _, header, why in probes if why is not None}
    reported = {(rel, header) for rel, header, _ in problems}
    for rel, header, message in problems:
        if (rel, header) not in forbidden:
            print(f"self-test: {rel}: {message}")
    missed = sorted(forbidden - reported)
    for rel, header in missed:
        print(f"self-test: {rel} finds {header} with -I{root} but was not reported")
    failed = len(missed) + len(reported - forbidden) + (0 if forbidden else 1)
    if not forbidden:
        print("self-test: no forbidden header to probe (is the compile database empty?)")
    print(f"include graph self-test: {len(forbidden) - len(missed)} passed, {failed} failed")
    return 1 if failed else 0


def self_test():
    cases = {
        "agent/core/a.cc": '#include "agent/linux/nftables_firewall.h"\n',
        "controller/core/b.cc": '#include "controller/store/store.h"\n',
        "controller/core/c.cc": '#include "controller/rpc/fleet.h"\n',
        "controller/store/d.cc": '#include "controller/rpc/fleet.h"\n',
        "common/e.cc": '#include "controller/core/clock.h"\n',
        "evidence/f.cc": '#include "agent/core/config.h"\n',
        "controller/rpc/g.cc": '#include "agent/core/config.h"\n',
        "agent/daemon/h.cc": '#include "controller/core/clock.h"\n',
        "cli/i.cc": '#include "controller/rpc/server.h"\n',
        "agent/daemon/j.cc": "#include <nftables/libnftables.h>\n",
        "controller/rpc/k.cc": "#include <linux/sock_diag.h>\n",
        "agent/core/l.cc": "#include <sys/pidfd.h>\n",
        "controller/core/m.cc": "#include <grpcpp/grpcpp.h>\n",
        "agent/daemon/n.cc": '#include "bulkhead/v1/agent.grpc.pb.h"\n',
        "common/o.cc": '#include "common/pki/pki.h"\n',
        "controller/service/s1.cc": '#include "controller/rpc/fleet.h"\n',
        "controller/service/s2.cc": "#include <grpcpp/grpcpp.h>\n",
        "controller/service/s3.cc": '#include "bulkhead/v1/operator.grpc.pb.h"\n',
        "controller/store/s4.cc": '#include "controller/service/audit.h"\n',
        "controller/core/s5.cc": '#include "controller/service/audit.h"\n',
        "cli/s6.cc": '#include "controller/service/authorization.h"\n',
        "controller/webhook/w1.cc": '#include "controller/rpc/server.h"\n',
        "controller/webhook/formats_x.cc": '#include "controller/service/signals.h"\n',
        "controller/service/s7.cc": '#include "controller/webhook/listener.h"\n',
        "controller/crowdsec/s7.cc": '#include "controller/rpc/server.h"\n',
        "controller/crowdsec/s8.cc": "#include <grpcpp/grpcpp.h>\n",
        "controller/notify/n1.cc": '#include "controller/rpc/server.h"\n',
    }
    allowed = {
        "agent/linux/ok.cc": '#include <nftables/libnftables.h>\n#include "agent/core/flow.h"\n',
        "agent/collect/ok.cc": "#include <netlink/route/link.h>\n",
        "controller/rpc/ok.cc": '#include "controller/store/store.h"\n#include "common/json.h"\n',
        "tests/kernel/ok.cc": "#include <nftables/libnftables.h>\n",
        "agent/rpc/ok.cc": '#include <grpcpp/grpcpp.h>\n#include "bulkhead/v1/agent.grpc.pb.h"\n',
        "controller/core/ok.cc": '#include "bulkhead/v1/operator.pb.h"\n',
        "common/tls/ok.cc": '#include <grpcpp/grpcpp.h>\n#include "common/json.h"\n',
        "controller/service/ok.cc": ('#include "controller/store/store.h"\n'
                                     '#include "bulkhead/v1/operator.pb.h"\n'),
        "controller/rpc/ok2.cc": '#include "controller/service/audit.h"\n',
        "controller/webhook/ok.cc": ('#include "controller/service/signal_intake.h"\n'
                                     "#include <httplib.h>\n"),
        "controller/crowdsec/ok.cc": '#include "controller/service/signal_intake.h"\n',
        "controller/notify/ok.cc": ('#include "controller/service/notifications.h"\n'
                                    '#include "controller/store/store.h"\n'),
    }
    with tempfile.TemporaryDirectory() as root:
        for rel, text in {**cases, **allowed}.items():
            os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(root, rel), "w") as f:
                f.write(text)
        _, problems = check_tree(root)
    reported = {p.split(":")[0] for p in problems}
    missed = sorted(set(cases) - reported)
    wrong = sorted(reported - set(cases))
    for rel in missed:
        print(f"self-test: {rel} was not reported")
    for rel in wrong:
        print(f"self-test: {rel} was reported but is allowed")
    failed = len(missed) + len(wrong)
    print(f"self-test: {len(cases) + len(allowed) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--compile-db", metavar="FILE")
    args = ap.parse_args()
    if args.compile_db:
        root = os.path.realpath(args.root)
        if args.self_test:
            return compile_self_test(args.compile_db, root)
        probes, problems = check_compile(args.compile_db, root, [])
        for rel, _, message in problems:
            print(f"{rel}: {message}")
        print(f"include graph: {len(probes) - len(problems)} passed, {len(problems)} failed")
        return 1 if problems else 0
    if args.self_test:
        return self_test()
    files, problems = check_tree(args.root)
    for p in problems:
        print(p)
    print(f"layering: {files} passed, {len(problems)} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
