#!/usr/bin/env python3
"""A hostile host and a newcomer's controller, in the lab with real agents. Root only.

HostileAgentTest: h2's host carries the controller's IPv4 address (10.77.0.1/32 on a veth
interface of its own), so its real agent reports that address as its own; the agent dials the controller
over IPv6. Isolating h1 and h2 together (by name or by selector) must isolate the honest h1 and
fail h2 alone, with the reason.

WildcardListenTest: the README's controller command line, `--listen 0.0.0.0:7443` without
`--advertise`: the controller takes its addresses from its certificate (`pki init
--controller-ip`), so isolation works and its own addresses can never be blocked.
"""

import os
import shutil
import sys
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed, read_json, wait_until  # noqa: E402
from fleet import CONTROLLER_PORT, REPO, Fleet  # noqa: E402

IS_ROOT = os.geteuid() == 0
LABELS = {"h1": {"role": "web"}, "h2": {"role": "web"}}
BACKDOOR = 2222


class _LabCase(unittest.TestCase):
    fleet: Fleet
    lab: Lab

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def cli(self, *args, expect=0):
        rc, doc, err = self.fleet.cli(*args, timeout=60)
        self.assertEqual(rc, expect, f"{args}: {err} {doc}")
        return doc, err

    def outcome(self, doc, host):
        for o in doc["outcomes"]:
            if o["host_id"] == host:
                return o
        self.fail(f"no outcome for {host} in {doc}")

    def state(self, stream):
        return (read_json(stream.report_path) or {}).get("state")

    def wait_dead(self, stream, timeout=3.0):
        return wait_until(lambda: self.state(stream) == "dead", timeout, desc="stream dead")


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class HostileAgentTest(_LabCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=2)
        cls.addClassCleanup(cls.lab.close)
        cls.policy_dir = os.path.join(cls.lab.tmpdir, "policies")
        shutil.copytree(os.path.join(REPO, "policies"), cls.policy_dir)
        cls.fleet = Fleet(cls.lab, heartbeat_interval="500ms", heartbeat_timeout="3s",
                          policy_dir=cls.policy_dir)
        cls.fleet.start_controller()
        # h2 claims the controller's IPv4 address, on a veth pair of its own (not a loopback
        # interface, so the agent reports it). It must not answer ARP for it on the lab's
        # bridge (that would steal the other agents' channel), hence arp_ignore/arp_announce.
        for argv in (["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1"],
                     ["sysctl", "-qw", "net.ipv4.conf.all.arp_announce=2"],
                     ["ip", "link", "add", "claim0", "type", "veth", "peer", "name", "claim1"],
                     ["ip", "addr", "add", f"{cls.lab.ip4('ctl')}/32", "dev", "claim0"],
                     ["ip", "link", "set", "claim1", "up"],
                     ["ip", "link", "set", "claim0", "up"]):
            cls.lab.run("h2", argv, check=True)
        cls.fleet.start_agent("h1", LABELS["h1"])
        cls.start_liar()
        cls.fleet.wait_online(LABELS, timeout=20)
        for h in LABELS:
            cls.lab.tcp_server(h, BACKDOOR)

    @classmethod
    def start_liar(cls):
        argv = cls.fleet.agent_argv("h2", LABELS["h2"])
        argv[argv.index("--controller") + 1] = f"[{cls.lab.ip6('ctl')}]:{CONTROLLER_PORT}"
        cls.fleet.agents["h2"] = cls.lab.spawn("h2", argv, label="agent-h2")

    def tearDown(self):
        super().tearDown()
        for h in LABELS:
            self.fleet.cli("release", h, "--reason", "test cleanup", timeout=30)

    def liar_generation(self):
        st, _ = self.cli("status", "h2")
        return int(st["host"].get("desired_generation", 0))

    def check_honest_isolated_liar_failed(self, doc, streams, liar_generation):
        h1, h2 = self.outcome(doc, "h1"), self.outcome(doc, "h2")
        self.assertEqual(h1["state"], "enforced", doc)
        self.assertEqual(h2["state"], "failed", doc)
        self.assertIn(f"controller's address {self.lab.ip4('ctl')}", h2["error"])
        self.assertIn("left open", h2["error"])
        self.wait_dead(streams["h1"])
        # h2 was left as it was: open, its desired state untouched.
        self.assertNotEqual(self.state(streams["h2"]), "dead")
        self.assertTrue(self.lab.tcp_probe("attacker", self.lab.ip4("h2"), BACKDOOR))
        st, _ = self.cli("status", "h2")
        self.assertFalse(st["host"].get("isolated", False), st)
        self.assertEqual(int(st["host"].get("desired_generation", 0)), liar_generation, st)

    def test_the_liars_addresses_are_what_its_real_agent_reports(self):
        hosts = self.fleet.hosts()
        self.assertIn(f"{self.lab.ip4('ctl')}/32", hosts["h2"]["addresses"])
        self.assertNotIn(f"{self.lab.ip4('ctl')}/32", hosts["h1"]["addresses"])

    def test_isolate_by_name_isolates_the_honest_host_and_fails_the_liar_alone(self):
        streams = {h: self.lab.tcp_stream("attacker", self.lab.ip4(h), BACKDOOR) for h in LABELS}
        before = self.liar_generation()
        doc, _ = self.cli("isolate", "h1", "h2", "--reason", "INC-70", expect=1)
        self.check_honest_isolated_liar_failed(doc, streams, before)
        for s in streams.values():
            s.terminate()

    def test_isolate_by_selector_isolates_the_honest_host_and_fails_the_liar_alone(self):
        streams = {h: self.lab.tcp_stream("attacker", self.lab.ip4(h), BACKDOOR) for h in LABELS}
        before = self.liar_generation()
        doc, _ = self.cli("isolate", "--selector", "role=web", "--reason", "INC-71", expect=1)
        self.check_honest_isolated_liar_failed(doc, streams, before)
        for s in streams.values():
            s.terminate()


class _WildcardFleet(Fleet):
    """The controller as the README starts it: every address, no --advertise."""

    def controller_argv(self, extra=()):
        return [self.bin("bulkhead-controller"), "--listen", f"0.0.0.0:{CONTROLLER_PORT}",
                "--identity", os.path.join(self.pki, "controller"),
                "--data-dir", self.data_dir, "--policy-dir", self.policy_dir,
                "--heartbeat-interval", self.heartbeat_interval,
                "--heartbeat-timeout", self.heartbeat_timeout, "--log-level", self.log_level,
                *extra]


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class WildcardListenTest(_LabCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=1)
        cls.addClassCleanup(cls.lab.close)
        cls.fleet = _WildcardFleet(cls.lab, heartbeat_interval="500ms", heartbeat_timeout="3s")
        cls.fleet.start_controller()
        cls.fleet.start_agent("h1", {"role": "web"})
        cls.fleet.wait_online(["h1"], timeout=20)
        cls.lab.tcp_server("h1", BACKDOOR)

    def test_isolation_keeps_the_controller_reachable_from_its_certificate(self):
        stream = self.lab.tcp_stream("attacker", self.lab.ip4("h1"), BACKDOOR)
        doc, _ = self.cli("isolate", "h1", "--reason", "INC-72")
        self.assertEqual(self.outcome(doc, "h1")["state"], "enforced", doc)
        self.wait_dead(stream)
        st, _ = self.cli("status", "h1")
        pinned = {e["ip"] for e in st["desired"]["controller_endpoints"]}
        self.assertEqual(pinned, {self.lab.ip4("ctl"), self.lab.ip6("ctl")})
        # The channel survives the isolation: the release reaches the agent and is enforced.
        doc, _ = self.cli("release", "h1", "--reason", "INC-72 done")
        self.assertEqual(self.outcome(doc, "h1")["state"], "enforced", doc)

    def test_the_controllers_addresses_can_never_be_blocked(self):
        for cidr in (f"{self.lab.ip4('ctl')}/32", f"{self.lab.ip6('ctl')}/128", "10.77.0.0/24"):
            _, err = self.cli("block", cidr, "--all", "--reason", "INC-73", expect=2)
            self.assertIn("controller's address", err)
        doc, _ = self.cli("blocks")
        self.assertEqual(doc.get("entries", []), [])
        self.assertTrue(self.fleet.hosts()["h1"]["online"])


if __name__ == "__main__":
    unittest.main()
