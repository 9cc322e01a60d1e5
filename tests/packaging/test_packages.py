#!/usr/bin/env python3
"""The Debian packages on a clean Debian 12 root (mmdebstrap, tests/packaging/pkgroot.py).

Lifecycle (PackageLifecycleTest), in order:
  1. the declared dependencies of the three packages (their Depends fields) are installed with
     `apt-get satisfy`, then the packages with apt: nothing else is pulled in, so what they
     declare is all they need;
  2. the binaries run (--version, --help; no unresolved shared library);
  3. `systemd-analyze verify` passes on the three units, which point at the installed binaries;
  4. the layout: /usr/bin, conffiles in /etc (defaults, policies), tight modes on the identity
     and state directories, the controller's system user, the units enabled;
  5. an upgrade keeps an edited conffile;
  6. purge leaves only what is meant to stay (listed below, with the reason).

Needs root, mmdebstrap and the package mirror; BULKHEAD_DEB_DIR and BULKHEAD_DEB_NEXT_DIR hold
the packages (scripts/package.sh) and a second version of them for the upgrade.
"""

import os
import re
import stat
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pkgroot  # noqa: E402

IS_ROOT = os.geteuid() == 0
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OURS = {"bulkhead", "bulkhead-agent", "bulkhead-controller"}
UNITS = ("bulkhead-agent.service", "bulkhead-restore.service", "bulkhead-controller.service")

def upstream_version() -> str:
    """The upstream part of debian/changelog's newest version ("0.2.0" of "0.2.0-1"): what the
    packaged programs' --version must print."""
    with open(os.path.join(REPO, "debian", "changelog")) as f:
        m = re.match(r"bulkhead \(([^)+~-]+)", f.readline())
    if not m:
        raise RuntimeError("debian/changelog: no version on its first line")
    return m.group(1)


# What purge may leave behind, each for a reason:
#   /var/lib/bulkhead, /var/lib/bulkhead-audit: the controller's database, evidence and audit
#     key: the record of what was done, kept on purge (README.Debian says so);
#   the system user "bulkhead": Debian leaves system users in place (a file owned by the uid
#     may remain, and reusing the uid would hand it to someone else);
#   /etc/{passwd,group,shadow,gshadow}- : the backups systemd-sysusers writes when it adds the
#     user.
ALLOWED_LEFTOVERS = ("/var/lib/bulkhead", "/var/lib/bulkhead-audit", "/etc/passwd-",
                     "/etc/group-", "/etc/shadow-", "/etc/gshadow-")


@unittest.skipUnless(IS_ROOT, "needs root (chroot, mount namespaces)")
class PackageLifecycleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        pkgroot.fresh_root(cls)

    def test_1_installs_with_only_declared_dependencies(self):
        depends = [pkgroot.control_field(d, "Depends") for d in self.debs]
        self.root.run(["apt-get", "satisfy", "-y", "-q", "--no-install-recommends",
                       ", ".join(d for d in depends if d)])
        before = self.root.installed()
        type(self).baseline = self.root.snapshot()
        type(self).baseline_packages = set(before)
        inside = self.root.copy_in(self.debs, "/tmp/debs")
        self.root.apt_install(*inside)
        after = self.root.installed()
        self.assertEqual(set(after) - set(before), OURS,
                         "installing the packages pulled in more than they declare")

    def test_2_binaries_run(self):
        for prog in ("bulkhead", "bulkhead-agent", "bulkhead-controller", "bulkhead-report"):
            with self.subTest(prog=prog):
                path = f"/usr/bin/{prog}"
                ldd = self.root.run(["ldd", path])
                self.assertNotIn("not found", ldd.stdout, f"{prog}: a library is missing")
                r = self.root.run([path, "--help"], check=False)
                self.assertEqual(r.returncode, 0, f"{prog} --help: {r.stderr}")
                self.assertIn("usage", (r.stdout + r.stderr).lower())
        for prog in ("bulkhead", "bulkhead-agent", "bulkhead-controller"):
            with self.subTest(prog=prog, flag="--version"):
                r = self.root.run([f"/usr/bin/{prog}", "--version"], check=False)
                self.assertEqual(r.returncode, 0, f"{prog} --version: {r.stderr}")
                self.assertIn(f"{prog} {upstream_version()} (git ", r.stdout)

    def test_3_units_verify(self):
        # man-db: verify checks each unit's Documentation=man:... page (a tool of the test,
        # installed after test_1 proved the packages need nothing undeclared).
        self.root.apt_install("man-db")
        # The tool goes again, with what its own scripts made (timers, caches).
        self.addCleanup(self.root.run, ["apt-get", "purge", "-y", "-q", "man-db"])
        paths = [f"/lib/systemd/system/{u}" for u in UNITS]
        for p in paths:
            self.assertTrue(os.path.exists(self.root.host_path(p)), f"{p} not installed")
        r = self.root.run(["systemd-analyze", "verify", *paths], check=False)
        self.assertEqual(r.returncode, 0, f"systemd-analyze verify:\n{r.stdout}\n{r.stderr}")
        self.assertEqual(r.stderr.strip(), "", "systemd-analyze verify warned")
        for u in UNITS:
            with open(self.root.host_path(f"/lib/systemd/system/{u}")) as f:
                self.assertNotIn("/usr/local", f.read(), u)

    def test_4_layout(self):
        def mode(path):
            st = os.stat(self.root.host_path(path))
            return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid

        for prog in ("bulkhead", "bulkhead-agent", "bulkhead-controller", "bulkhead-report"):
            self.assertTrue(os.access(self.root.host_path(f"/usr/bin/{prog}"), os.X_OK), prog)
        conffiles = self.root.run(["dpkg-query", "-W", "-f", "${Conffiles}\n", *sorted(OURS)])
        conf = {line.split()[0] for line in conffiles.stdout.splitlines() if line.strip()}
        for f in ("/etc/default/bulkhead-agent", "/etc/default/bulkhead-controller",
                  "/etc/bulkhead/policies/guardrails/protected.yaml",
                  "/etc/bulkhead/policies/playbooks/ssh-brute-force.yaml",
                  "/etc/bulkhead/policies/monitoring.yaml"):
            self.assertIn(f, conf, f"{f} is not a conffile")
        with open(self.root.host_path("/etc/passwd")) as f:
            passwd = f.read().splitlines()
        user = [line.split(":") for line in passwd if line.startswith("bulkhead:")]
        self.assertEqual(len(user), 1, "no system user bulkhead")
        uid = int(user[0][2])
        self.assertLess(uid, 1000, "bulkhead is not a system user")
        self.assertEqual(user[0][6], "/usr/sbin/nologin")
        gid = int(user[0][3])
        self.assertEqual(mode("/etc/bulkhead/identity")[0], 0o700)
        self.assertEqual(mode("/var/lib/bulkhead-agent")[0], 0o700)
        self.assertEqual(mode("/etc/bulkhead/controller"), (0o750, 0, gid))
        wants = {"multi-user.target.wants/bulkhead-agent.service",
                 "multi-user.target.wants/bulkhead-controller.service",
                 "sysinit.target.wants/bulkhead-restore.service"}
        for w in wants:
            link = self.root.host_path(f"/etc/systemd/system/{w}")
            self.assertTrue(os.path.islink(link), f"{w}: unit not enabled")

    def test_5_upgrade_keeps_edited_conffile(self):
        default = self.root.host_path("/etc/default/bulkhead-agent")
        with open(default, "a") as f:
            f.write("CONTROLLER=10.77.0.1:7443\n")
        with open(default) as f:
            edited = f.read()
        inside = self.root.copy_in(self.next_debs, "/tmp/debs-next")
        self.root.apt_install("-o", "Dpkg::Options::=--force-confdef",
                              "-o", "Dpkg::Options::=--force-confold", *inside)
        versions = self.root.installed()
        want = pkgroot.control_field(self.next_debs[0], "Version")
        for p in OURS:
            self.assertEqual(versions.get(p), want, f"{p} not upgraded")
        with open(default) as f:
            self.assertEqual(f.read(), edited, "the upgrade overwrote a conffile")

    def test_6_purge_leaves_only_what_is_meant_to_stay(self):
        # What the programs write at run time, so purge meets a used system.
        for path, text in (("/var/lib/bulkhead-agent/desired-state.pb", "x"),
                           ("/etc/bulkhead/identity/tls.key", "key"),
                           ("/etc/bulkhead/controller/tls.key", "key"),
                           ("/var/lib/bulkhead/bulkhead.db", "db"),
                           ("/var/lib/bulkhead-audit/audit.key", "k")):
            os.makedirs(os.path.dirname(self.root.host_path(path)), exist_ok=True)
            with open(self.root.host_path(path), "w") as f:
                f.write(text)
        r = self.root.run(["apt-get", "purge", "-y", "-q", *sorted(OURS)])
        self.assertIn("kept /var/lib/bulkhead", r.stdout + r.stderr,
                      "purge did not say what it kept")
        self.assertEqual(set(self.root.installed()) & OURS, set())
        left = self.root.snapshot() - self.baseline
        # Files of the libraries man-db pulled in for test_3 (man-db itself is purged).
        tools = set(self.root.installed()) - self.baseline_packages
        if tools:
            listed = self.root.run(["dpkg", "-L", *sorted(tools)]).stdout.split("\n")
            left -= set(listed)
        unexpected = sorted(p for p in left
                            if not any(p == a or p.startswith(a + "/")
                                       for a in ALLOWED_LEFTOVERS))
        self.assertEqual(unexpected, [], "purge left these behind")
        self.assertTrue(os.path.exists(self.root.host_path("/var/lib/bulkhead/bulkhead.db")),
                        "purge removed the controller's records")


if __name__ == "__main__":
    unittest.main(verbosity=2)
