#!/usr/bin/env python3
"""Fails on an #include that breaks bulkhead's layering (README.md, Layout; each top folder's
README says what it may depend on). Run by CTest (test `layering`, label unit).

  scripts/check_layers.py [--root DIR]   checks the sources under DIR (default: the repo)
  scripts/check_layers.py --self-test    proves each rule reports a violation

Prints one line per violation, "FILE:LINE: includes X: RULE", and a closing "N passed,
N failed" line (files checked, violations). Exit status 1 on any violation.
"""
import argparse
import os
import re
import sys
import tempfile

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
    ("controller/store/", r"^(controller/(rpc|service)|agent|cli)/",
     "controller/store/ stores: it never calls service/ or rpc/"),
    ("controller/service/", r"^controller/rpc/",
     "controller/service/ is what every front door calls: it never includes rpc/"),
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


def check_file(rel, text):
    problems = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = INCLUDE.match(line)
        if not m:
            continue
        kind, inc = m.group(1), m.group(2)
        if kind == '"':
            for folder, forbidden, why in PROJECT_RULES:
                if rel.startswith(folder) and re.match(forbidden, inc):
                    problems.append(f"{rel}:{lineno}: includes {inc}: {why}")
        if KERNEL_HEADER.match(inc) and not rel.startswith(KERNEL_ALLOWED):
            problems.append(f"{rel}:{lineno}: includes <{inc}>: kernel interfaces (netlink, "
                            "nftables, pidfd) belong in agent/linux/ or agent/collect/")
        if GRPC_HEADER.match(inc) and not rel.startswith(GRPC_ALLOWED):
            problems.append(f"{rel}:{lineno}: includes {inc}: gRPC belongs in the rpc/ layers "
                            "(controller/rpc/, agent/rpc/, cli/, common/tls/)")
        if (kind == '"' and inc.startswith("common/tls/") and rel.startswith("common/")
                and not rel.startswith("common/tls/")):
            problems.append(f"{rel}:{lineno}: includes {inc}: common/ is the part without TLS, "
                            "the CA or gRPC; common/tls/ builds on it, not the other way")
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
        "common/o.cc": '#include "common/tls/pki.h"\n',
        "controller/service/s1.cc": '#include "controller/rpc/fleet.h"\n',
        "controller/service/s2.cc": "#include <grpcpp/grpcpp.h>\n",
        "controller/service/s3.cc": '#include "bulkhead/v1/operator.grpc.pb.h"\n',
        "controller/store/s4.cc": '#include "controller/service/audit.h"\n',
        "controller/core/s5.cc": '#include "controller/service/audit.h"\n',
        "cli/s6.cc": '#include "controller/service/authorization.h"\n',
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
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    files, problems = check_tree(args.root)
    for p in problems:
        print(p)
    print(f"layering: {files} passed, {len(problems)} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
