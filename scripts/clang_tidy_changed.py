#!/usr/bin/env python3
"""clang-tidy (with the repo's .clang-tidy) on the changed code.

"Changed" means the lines added or modified since a base commit: by default the commit named in
scripts/clang-tidy-base (a fixed commit of main, so a fresh clone of main checks the same lines
as a developer's branch does), or --base REV (e.g. `--base $(git merge-base HEAD main)` for only
your branch's lines). Uncommitted edits count too. Warnings are reported only on those lines,
in .cc and .h files alike: each changed .cc file is checked, and each changed header through
one .cc file of the build that includes it, directly or through other headers. If the base commit is not in the clone (a shallow
clone), the lines of the last commit are checked instead.

Needs compile_commands.json (every CMake build here writes one). Prints each warning, then
"clang-tidy: N passed, N failed" (files without / with a warning); exit status 1 when a
warning or a clang-tidy error is found.

usage: scripts/clang_tidy_changed.py [--build DIR] [--base REV] [--jobs N]
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import compile_db

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_DIRS = ("agent/", "cli/", "common/", "controller/", "evidence/", "fuzz/", "bench/",
               "tests/")


def git(*args, check=True):
    return subprocess.run(["git", "-C", ROOT, *args], check=check, capture_output=True,
                          text=True)


def recorded_base():
    with open(os.path.join(ROOT, "scripts", "clang-tidy-base")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                return line
    raise SystemExit("clang-tidy: scripts/clang-tidy-base names no commit")


def changed_lines(base):
    """{relative path: [(first, last), ...]} of lines added or changed since `base`."""
    diff = git("diff", "-U0", "--no-color", "--no-ext-diff", base, "--", "*.cc", "*.h").stdout
    out, path = {}, None
    for line in diff.splitlines():
        if line.startswith("+++ "):
            name = line[4:]
            path = name[2:] if name.startswith("b/") else None
            if path is not None and not path.startswith(SOURCE_DIRS):
                path = None
        elif line.startswith("@@") and path is not None:
            m = re.match(r"@@ -\S+ \+(\d+)(?:,(\d+))? @@", line)
            first, count = int(m.group(1)), int(m.group(2) or "1")
            if count > 0:
                out.setdefault(path, []).append((first, first + count - 1))
    return {p: r for p, r in out.items() if os.path.exists(os.path.join(ROOT, p))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("BUILD_DIR", "build"))
    ap.add_argument("--base")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    tidy = shutil.which("clang-tidy-14") or shutil.which("clang-tidy")
    if tidy is None:
        print("clang-tidy: not installed (scripts/install-deps.sh installs it)")
        print("clang-tidy: 0 passed, 1 failed")
        return 1
    base = args.base or recorded_base()
    if git("cat-file", "-e", base + "^{commit}", check=False).returncode != 0:
        print(f"clang-tidy: base {base} is not in this clone; checking the last commit's lines")
        base = "HEAD~1"
        if git("cat-file", "-e", "HEAD~1^{commit}", check=False).returncode != 0:
            print("clang-tidy: no parent commit either; nothing to check")
            print("clang-tidy: 0 passed, 0 failed")
            return 0
    changes = changed_lines(base)

    build = os.path.join(ROOT, args.build) if not os.path.isabs(args.build) else args.build
    db_path = os.path.join(build, "compile_commands.json")
    if not os.path.exists(db_path):
        print(f"clang-tidy: {db_path} is missing: build first (scripts/build.sh)")
        print("clang-tidy: 0 passed, 1 failed")
        return 1
    with open(db_path) as f:
        units = sorted({os.path.realpath(e["file"]) for e in json.load(f)
                        if os.path.realpath(e["file"]).startswith(ROOT + "/")})

    def rel(p):
        return os.path.relpath(p, ROOT)

    # Who includes whom, by the repository-root spelling of #include "dir/file.h".
    included_by = {}
    include_line = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
    tracked = git("ls-files", "--", "*.cc", "*.h").stdout.split()
    for source in tracked:
        try:
            with open(os.path.join(ROOT, source), errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        for header in include_line.findall(text):
            included_by.setdefault(header, []).append(source)

    def unit_for(header):
        """A unit of the build that includes `header`, directly or through other headers: the .cc
        beside it first, then the nearest includer (breadth first). None when none does."""
        stem = os.path.splitext(header)[0] + ".cc"
        seen, frontier = {header}, [header]
        while frontier:
            includers = [i for h in frontier for i in included_by.get(h, [])]
            units_here = [i for i in includers if os.path.join(ROOT, i) in units]
            if stem in units_here:
                return os.path.join(ROOT, stem)
            if units_here:
                return os.path.join(ROOT, sorted(units_here)[0])
            frontier = [i for i in includers if i.endswith(".h") and i not in seen]
            seen.update(frontier)
        return None

    to_check, unchecked = set(), []
    for path in changes:
        if path.endswith(".cc"):
            if os.path.join(ROOT, path) in units:
                to_check.add(os.path.join(ROOT, path))
            else:
                unchecked.append(path)
            continue
        unit = unit_for(path)
        if unit is None:
            unchecked.append(path)
        else:
            to_check.add(unit)

    print(f"clang-tidy: base {base}: {len(changes)} changed files, "
          f"{len(to_check)} translation units to check")
    for p in unchecked:
        print(f"clang-tidy: {p}: not in {rel(db_path)} (or not included by a file that is); "
              "not checked")
    if not to_check:
        print("clang-tidy: 0 passed, 0 failed")
        return 0

    line_filter = json.dumps([{"name": os.path.join(ROOT, p), "lines": [list(r) for r in rs]}
                              for p, rs in changes.items()])

    # The build's commands without the precompiled header's options: clang-tidy cannot load
    # gcc's precompiled header (cmake/PrecompiledHeaders.cmake).
    db_dir = tempfile.TemporaryDirectory(prefix="bulkhead-tidy-")
    with open(db_path) as f:
        entries = json.load(f)
    for e in entries:
        e["arguments"] = compile_db.without_pch(compile_db.arguments(e))
        e.pop("command", None)
    with open(os.path.join(db_dir.name, "compile_commands.json"), "w") as f:
        json.dump(entries, f)

    def run(unit):
        start = time.monotonic()
        r = subprocess.run([tidy, "-p", db_dir.name, "--quiet", f"--line-filter={line_filter}", unit],
                           capture_output=True, text=True)
        # Progress as each unit ends, so a log cut short still shows how far it got.
        print(f"clang-tidy: {rel(unit)} checked in {time.monotonic() - start:.0f} s", flush=True)
        return unit, r.returncode, r.stdout, r.stderr

    diag = re.compile(r"^(/[^:]+):(\d+):(\d+): (warning|error): (.*)$")
    findings, errors = {}, []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for unit, code, out, err in pool.map(run, sorted(to_check)):
            found = False
            lines = out.splitlines()
            for i, line in enumerate(lines):
                m = diag.match(line)
                if not m:
                    continue
                found = True
                key = (os.path.realpath(m.group(1)), int(m.group(2)), m.group(5))
                if key not in findings:
                    findings[key] = "\n".join(lines[i:i + 3])
            if code != 0 and not found:
                errors.append(f"{rel(unit)}: clang-tidy exited {code}: {err.strip()[-2000:]}")

    bad_files = {rel(k[0]) for k in findings}
    for key in sorted(findings):
        print(findings[key])
    for e in errors:
        print("clang-tidy:", e)
    checked_files = set(changes) - set(unchecked)
    failed = len(bad_files | {e.split(":")[0] for e in errors})
    print(f"clang-tidy: {len(findings)} warnings on changed lines")
    print(f"clang-tidy: {max(len(checked_files) - failed, 0)} passed, {failed} failed")
    return 1 if findings or errors else 0


if __name__ == "__main__":
    sys.exit(main())
