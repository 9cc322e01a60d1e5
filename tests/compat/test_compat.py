#!/usr/bin/env python3
"""Mixed releases in the lab: the previous release (tests/compat/previous-release, built by
scripts/build-previous-release.sh; it speaks protocol 1.0 and sends no version) against this
one (protocol 1.1), both ways, with real containment:

  1. this controller, a previous-release agent on h1 and this release's agent on h2: both come
     online, `hosts` shows each agent's version, and h1 is isolated (the attacker's new
     connections fail) and released (they work again);
  2. the previous release's controller and command line (with its own policies and a database
     of its own) and this release's agent on h2: it comes online and is isolated and released
     the same way.

Root only. BULKHEAD_PREVIOUS_BUILD_DIR is the previous release's build tree; its source tree
(../src) holds its policies. A missing build fails the test: it is never skipped.
"""

import os
import subprocess
import sys
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed, wait_until  # noqa: E402
from fleet import Fleet  # noqa: E402

IS_ROOT = os.geteuid() == 0
BACKDOOR = 2222
PREVIOUS_VERSION = "0.1.0"   # what the previous release's agent reports (its project version)


def previous_build_dir() -> str:
    d = os.environ.get("BULKHEAD_PREVIOUS_BUILD_DIR", "")
    if not d or not os.access(os.path.join(d, "agent", "bulkhead-agent"), os.X_OK):
        raise FileNotFoundError(
            f"the previous release is not built in {d!r}: run scripts/build-previous-release.sh")
    return d


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class CompatTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        prev = previous_build_dir()
        cls.previous = {"bulkhead": os.path.join(prev, "cli", "bulkhead"),
                        "bulkhead-agent": os.path.join(prev, "agent", "bulkhead-agent"),
                        "bulkhead-controller": os.path.join(prev, "controller",
                                                            "bulkhead-controller")}
        cls.previous_policies = os.path.join(prev, "..", "src", "policies")
        cls.lab = Lab(hosts=2)
        cls.addClassCleanup(cls.lab.close)
        cls.fleet = Fleet(cls.lab, heartbeat_interval="500ms", heartbeat_timeout="2s")
        for h in ("h1", "h2"):
            cls.lab.tcp_server(h, BACKDOOR)
        out = subprocess.run([cls.fleet.bin("bulkhead-agent"), "--version"], check=True,
                             capture_output=True, text=True, timeout=10).stdout
        cls.this_version = out.split()[1]   # "bulkhead-agent 0.2.0 (git ...)"

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def attacker_connects(self, host: str) -> bool:
        return self.lab.tcp_probe("attacker", self.lab.ip4(host), BACKDOOR, timeout=1.0)

    def isolate_and_release(self, host: str):
        """Isolates `host` through the fleet's CLI, checks the attacker is cut off, releases it
        and checks the attacker gets through again."""
        self.assertTrue(self.attacker_connects(host), f"{host} reachable before isolation")
        rc, doc, err = self.fleet.cli("isolate", host, "--reason", "mixed releases")
        self.assertEqual(rc, 0, f"isolate {host}: {err} {doc}")
        self.assertFalse(self.attacker_connects(host), f"{host} isolated: attacker cut off")
        self.assertTrue(self.fleet.hosts()[host].get("isolated"), "hosts says isolated")
        rc, doc, err = self.fleet.cli("release", host, "--reason", "mixed releases")
        self.assertEqual(rc, 0, f"release {host}: {err} {doc}")
        wait_until(lambda: self.attacker_connects(host), 10, interval=0.2,
                   desc=f"{host} reachable after release")
        self.assertFalse(self.fleet.hosts()[host].get("isolated"), "hosts says open")

    def stop_all(self):
        """Every agent and the controller killed and waited for: the next test starts its own
        controller on the same port."""
        for h in list(self.fleet.agents):
            self.fleet.kill_agent(h)
        self.fleet.kill_controller()

    def test_1_previous_agent_with_this_controller(self):
        self.addCleanup(self.stop_all)
        self.fleet.programs = {}
        self.fleet.start_controller()
        self.fleet.programs = {"bulkhead-agent": self.previous["bulkhead-agent"]}
        self.fleet.start_agent("h1", {"role": "web"})
        self.fleet.programs = {}
        self.fleet.start_agent("h2", {"role": "web"})
        self.fleet.wait_online(["h1", "h2"], timeout=20)
        hosts = self.fleet.hosts()
        self.assertEqual(hosts["h1"]["agent_version"], PREVIOUS_VERSION)
        self.assertEqual(hosts["h2"]["agent_version"], self.this_version)
        self.assertNotEqual(PREVIOUS_VERSION, self.this_version)
        self.isolate_and_release("h1")
        self.assertIsNone(self.fleet.controller.poll(), "this controller kept running")

    def test_2_this_agent_with_previous_controller(self):
        self.fleet.programs = {"bulkhead": self.previous["bulkhead"],
                               "bulkhead-controller": self.previous["bulkhead-controller"]}
        self.fleet.policy_dir = self.previous_policies
        self.fleet.data_dir = os.path.join(self.lab.tmpdir, "previous-controller-data")
        self.addCleanup(self.stop_all)
        self.fleet.start_controller()
        self.fleet.start_agent("h2", {"role": "web"})
        self.fleet.wait_online(["h2"], timeout=20)
        self.assertEqual(self.fleet.hosts()["h2"]["agent_version"], self.this_version)
        self.isolate_and_release("h2")
        self.assertIsNone(self.fleet.controller.poll(), "the previous controller kept running")


if __name__ == "__main__":
    unittest.main(verbosity=2)
