"""A clean Debian 12 root for the package tests, made by mmdebstrap from the package mirror.

The base root (variant "apt": essential packages and apt, nothing of the machine's) is built
once and cached as a tarball in BUILD_DIR/pkgroot/ (keyed by the sources and the variant);
each test extracts a fresh copy. Downloaded .deb files are kept in BUILD_DIR/pkgroot/archives
and bind-mounted into every root, so a second run downloads nothing.

Commands run in the root with `chroot`, inside a private mount namespace (unshare --mount
--propagation private) holding the root's /proc and the archive bind mount: nothing is mounted
on the machine, and nothing outlives the command. Package scripts see no running systemd
(the root's /run is empty), so they enable units but start none, as in any chroot.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from typing import Dict, List, Optional, Sequence

SUITE = "bookworm"
VARIANT = "apt"
BUILD_DIR = os.environ.get("BULKHEAD_BUILD_DIR", "build")
DEB_DIR = os.environ.get("BULKHEAD_DEB_DIR", os.path.join(BUILD_DIR, "deb"))
DEB_NEXT_DIR = os.environ.get("BULKHEAD_DEB_NEXT_DIR", os.path.join(BUILD_DIR, "deb-next"))


def _sources() -> str:
    """The machine's Debian sources (the package mirror it is allowed to reach)."""
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return path
    return "http://deb.debian.org/debian"


def cache_dir(build_dir: str) -> str:
    d = os.path.join(build_dir, "pkgroot")
    os.makedirs(os.path.join(d, "archives", "partial"), exist_ok=True)
    return d


def base_tarball(build_dir: str) -> str:
    """Path of the cached base root, built by mmdebstrap if missing (a few minutes)."""
    sources = _sources()
    text = open(sources).read() if os.path.exists(sources) else sources
    key = hashlib.sha256(f"{SUITE} {VARIANT}\n{text}".encode()).hexdigest()[:12]
    tar = os.path.join(cache_dir(build_dir), f"{SUITE}-{VARIANT}-{key}.tar")
    if not os.path.exists(tar):
        tmp = tar + ".part"
        subprocess.run(["mmdebstrap", f"--variant={VARIANT}", "--mode=root", "--format=tar",
                        "--quiet", SUITE, tmp, sources], check=True, timeout=1800)
        os.replace(tmp, tar)
    return tar


class Root:
    """A throw-away copy of the base root in a temporary directory."""

    def __init__(self, build_dir: str):
        self.build_dir = build_dir
        self.archives = os.path.join(cache_dir(build_dir), "archives")
        self.path = tempfile.mkdtemp(prefix="bulkhead-pkgroot-")
        with tarfile.open(base_tarball(build_dir)) as t:
            t.extractall(self.path, numeric_owner=True)
        shutil.copy("/etc/resolv.conf", os.path.join(self.path, "etc", "resolv.conf"))
        # Downloaded packages stay in the shared cache (the bind mount) for the next run.
        with open(os.path.join(self.path, "etc/apt/apt.conf.d/90bulkhead-test"), "w") as f:
            f.write('APT::Keep-Downloaded-Packages "true";\nBinary::apt::APT::Keep-Downloaded-Packages "true";\n')

    def close(self):
        shutil.rmtree(self.path, ignore_errors=True)

    def host_path(self, path: str) -> str:
        """The machine's path of `path` inside the root."""
        return os.path.join(self.path, path.lstrip("/"))

    def chroot_argv(self, argv: Sequence[str]) -> List[str]:
        """argv run in the root, in its own mount namespace with /proc and the apt cache."""
        script = ('set -e; mount -t proc proc "$R/proc"; '
                  'mount --bind "$A" "$R/var/cache/apt/archives"; '
                  'exec chroot "$R" "$@"')
        return ["unshare", "--mount", "--propagation", "private", "--", "env", f"R={self.path}",
                f"A={self.archives}", "sh", "-c", script, "sh", *argv]

    def run(self, argv: Sequence[str], timeout: float = 600, check: bool = True,
            env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
             "LC_ALL": "C.UTF-8", "HOME": "/root"}
        e.update(env or {})
        r = subprocess.run(self.chroot_argv(argv), capture_output=True, text=True,
                           timeout=timeout, env=e)
        if check and r.returncode != 0:
            raise AssertionError(f"in the root: {' '.join(argv)} exited {r.returncode}:\n"
                                 f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r

    def apt_install(self, *args: str) -> subprocess.CompletedProcess:
        """apt-get install -y --no-install-recommends ARGS (packages or .deb paths inside)."""
        return self.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *args])

    def copy_in(self, files: Sequence[str], dest: str) -> List[str]:
        """Copies files into the root's `dest`; returns their paths inside the root."""
        os.makedirs(self.host_path(dest), exist_ok=True)
        out = []
        for f in files:
            shutil.copy(f, self.host_path(dest))
            out.append(os.path.join(dest, os.path.basename(f)))
        return out

    def installed(self) -> Dict[str, str]:
        """package -> version of every installed package."""
        r = self.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\n"])
        out = {}
        for line in r.stdout.splitlines():
            status, pkg, ver = line.split("\t")
            if status.startswith("ii"):
                out[pkg] = ver
        return out

    # Parts of the tree that are the package manager's own bookkeeping or runtime mounts.
    SNAPSHOT_SKIP = ("proc", "sys", "dev", "run", "tmp", "var/cache/apt", "var/lib/apt",
                     "var/lib/dpkg", "var/log", "var/cache/debconf", "var/cache/ldconfig")

    def snapshot(self) -> set:
        """Every path in the root (relative, leading '/'), bookkeeping excluded."""
        paths = set()
        for dirpath, dirnames, filenames in os.walk(self.path):
            rel = os.path.relpath(dirpath, self.path)
            rel = "" if rel == "." else rel
            dirnames[:] = [d for d in dirnames
                           if os.path.join(rel, d) not in self.SNAPSHOT_SKIP]
            for name in dirnames + filenames:
                paths.add("/" + os.path.join(rel, name))
        return paths


def debs(deb_dir: str) -> List[str]:
    """The three packages in deb_dir (debug-symbol packages left out)."""
    found = sorted(os.path.join(deb_dir, f) for f in os.listdir(deb_dir)
                   if f.endswith(".deb") and "-dbgsym_" not in f)
    names = sorted(os.path.basename(f).split("_")[0] for f in found)
    if names != ["bulkhead", "bulkhead-agent", "bulkhead-controller"]:
        raise FileNotFoundError(f"{deb_dir}: expected the three bulkhead packages, found "
                                f"{names} (scripts/package.sh)")
    return found


def control_field(deb: str, field: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", deb, field], check=True, capture_output=True,
                          text=True).stdout.strip()


def fresh_root(test_class) -> None:
    """setUpClass of the package tests: test_class.debs and .next_debs (the packages and their
    second version), .root (a fresh root with apt's lists updated, closed at class cleanup)."""
    test_class.debs = debs(DEB_DIR)
    test_class.next_debs = debs(DEB_NEXT_DIR)
    test_class.root = Root(BUILD_DIR)
    test_class.addClassCleanup(test_class.root.close)
    test_class.root.run(["apt-get", "update", "-q"])
