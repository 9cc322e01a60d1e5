#!/usr/bin/env python3
"""Three controllers serving one PostgreSQL database at once (`--store ... --replica NAME`), in
the lab. PostgreSQL 15 runs in node ctl from the lab-tools cache (tests/lab/postgres.py).

  Controllers a, b and c listen on three ports of node ctl; h1's agent streams to a, h2's to b,
  h3's to c (each knows all three). Every controller lists every host online. An isolate sent
  to a reaches h3 (streaming to c) and its acknowledgement comes back to a's caller: the call
  answers "enforced" and the attacker's probe fails; release the same way. A session list and
  a dry run of h3 through a are relayed by c and answered. Cross-controller
  and same-controller isolate/release round trips are timed (p50, p99 printed).

  h1 is isolated through b with a 10 s TTL; a (holding the singleton lease) is killed -9: a
  call to a fails clearly; a call given all three (a first) skips a, says so, and b answers;
  h1's agent reconnects to b or c (time printed) and the new singleton holder releases h1 when
  its TTL ends. PostgreSQL is killed and restarted: the controllers listen again and an
  isolate through b reaches h3 on c.
  `bulkhead audit --verify` checks one chain holding rows of all three controllers.

Root only.
"""

import hashlib
import os
import statistics
import subprocess
import sys
import time
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed, wait_until  # noqa: E402
from fleet import CONTROLLER_PORT, Fleet  # noqa: E402
from postgres import LabPostgres  # noqa: E402

IS_ROOT = os.geteuid() == 0
APP_PORT = 7000
PORTS = {"a": CONTROLLER_PORT, "b": 7444, "c": 7445}
HOME = {"h1": "a", "h2": "b", "h3": "c"}  # the controller each agent dials first
TTL_S = 10
ROUNDS = 10


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class ReplicasTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(hosts=3)
        cls.addClassCleanup(cls.lab.close)
        cls.fleet = Fleet(cls.lab)
        cls.pg = LabPostgres(cls.lab, "ctl")
        cls.addClassCleanup(cls.pg.close)
        cls.key = os.path.join(cls.lab.tmpdir, "shared-audit.key")
        subprocess.run(["sh", "-c", f"umask 077; openssl rand -hex 32 > {cls.key}"], check=True,
                       timeout=10)
        cls.controllers = {}

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def addr(self, name):
        return f"{self.lab.ip4('ctl')}:{PORTS[name]}"

    def cli_at(self, name, *args, timeout=60):
        """The CLI against controller `name`, or against several: "a,b,c" (--controller's list,
        the first that connects takes the call)."""
        saved = self.fleet.controller_addr
        self.fleet.controller_addr = ",".join(self.addr(n) for n in name.split(","))
        try:
            return self.fleet.cli(*args, timeout=timeout)
        finally:
            self.fleet.controller_addr = saved

    def ok_at(self, name, *args):
        rc, doc, err = self.cli_at(name, *args, timeout=120)
        self.assertEqual(rc, 0, f"{name}: {args}: {err} {doc}")
        return doc

    def start_replica(self, name):
        port = PORTS[name]
        argv = self.fleet.other_controller_argv(
            port, os.path.join(self.lab.tmpdir, f"controller-{name}"),
            ["--store", self.pg.url(), "--audit-key", self.key, "--replica", name,
             # Evidence where every controller serves it (README: one shared directory).
             "--evidence-dir", os.path.join(self.lab.tmpdir, "evidence")],
            advertise_port=True)
        p = self.lab.spawn("ctl", argv, label=f"controller-{name}")
        wait_until(lambda: p.poll() is not None or
                   self.lab.tcp_probe("jump", self.lab.ip4("ctl"), port), 20, interval=0.1,
                   desc=f"controller {name} listening")
        self.assertIsNone(p.poll(), self.lab.log_text(p))
        self.controllers[name] = p
        return p

    def start_agent(self, host):
        first = HOME[host]
        order = [first] + [n for n in PORTS if n != first]
        argv = self.fleet.agent_argv(host)
        argv[argv.index("--controller") + 1] = self.addr(first)
        for n in order[1:]:
            argv += ["--controller", self.addr(n)]
        self.fleet.agents[host] = self.lab.spawn(host, argv, label=f"agent-{host}")

    def reachable(self, host):
        return self.lab.tcp_probe("attacker", self.lab.ip4(host), APP_PORT, timeout=0.5)

    def outcome(self, doc, host):
        [o] = [o for o in doc["outcomes"] if o["host_id"] == host]
        return o

    def online_at(self, name, hosts):
        rc, doc, _ = self.cli_at(name, "hosts", timeout=20)
        if rc != 0:
            return False
        seen = {h["host_id"]: h["online"] for h in doc.get("hosts", [])}
        return all(seen.get(h) for h in hosts)

    def round_trips(self, via, host):
        """ROUNDS isolate+release calls of `host` through controller `via`: each call's wall
        time (the CLI's whole run: connect, call, enforced and acknowledged)."""
        times = []
        for i in range(ROUNDS):
            for verb in ("isolate", "release"):
                t0 = time.monotonic()
                doc = self.ok_at(via, verb, host, "--reason", f"timing {i}")
                times.append((time.monotonic() - t0) * 1000)
                self.assertEqual(self.outcome(doc, host)["state"], "enforced", doc)
        times.sort()
        return times

    def test_three_controllers_serve_at_once_through_a_kill_and_a_database_restart(self):
        lab = self.lab
        for name in PORTS:
            self.start_replica(name)
        for host in HOME:
            lab.tcp_server(host, APP_PORT)
            self.start_agent(host)
        for name in PORTS:
            wait_until(lambda name=name: self.online_at(name, HOME), 30, interval=0.3,
                       desc=f"every host online as controller {name} sees it")

        # A call taken by a reaches h3 through c; the answer comes back to a's caller.
        doc = self.ok_at("a", "isolate", "h3", "--reason", "INC-20")
        self.assertEqual(self.outcome(doc, "h3")["state"], "enforced", doc)
        self.assertFalse(self.reachable("h3"), "h3 reachable after an enforced isolate")
        doc = self.ok_at("a", "release", "h3", "--reason", "INC-20 contained")
        self.assertEqual(self.outcome(doc, "h3")["state"], "enforced", doc)
        wait_until(lambda: self.reachable("h3"), 10, interval=0.1, desc="h3 released")
        # A host's status through another controller: its desired state, online.
        status = self.ok_at("b", "status", "h3")
        self.assertTrue(status["host"]["online"], status)
        # One-shot commands and dry runs are relayed: c sends them on h3's stream and relays
        # the agent's answer back to a.
        doc = self.ok_at("a", "sessions", "h3")
        self.assertIn("sessions", doc["list_sessions"], doc)
        saved = self.fleet.controller_addr
        self.fleet.controller_addr = self.addr("a")
        try:
            rc, out, err = self.fleet.cli("isolate", "h3", "--dry-run", "--reason", "INC-20",
                                          json_out=False)
        finally:
            self.fleet.controller_addr = saved
        self.assertEqual(rc, 0, err)
        self.assertIn("table inet bulkhead", out)
        self.assertTrue(self.reachable("h3"), "a dry run changed h3")

        # A capture asked of a: c sends it on h3's stream, h3 uploads the bundle to c, a relays
        # the progress and downloads the stored bundle; b serves it too.
        bundle = os.path.join(lab.tmpdir, "h3-through-a.tar.gz")
        doc = self.ok_at("a", "capture", "h3", "--reason", "INC-20", "--output", bundle)
        record = doc["record"]
        self.assertEqual(record["host_id"], "h3", doc)
        self.assertTrue(record.get("signature_ok"), doc)
        with open(bundle, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), record["evidence_id"],
                             "the downloaded bytes are the evidence id")
        verified = self.ok_at("b", "evidence", "verify", record["evidence_id"])
        self.assertTrue(verified["ok"], verified)

        remote = self.round_trips("a", "h3")
        local = self.round_trips("c", "h3")

        def p(ts, q):
            return ts[min(len(ts) - 1, int(q * len(ts)))]

        # h1 isolated through b for TTL_S; a (the singleton holder: it started first) dies.
        self.assertIn("runs the singletons", lab.log_text(self.controllers["a"]))
        doc = self.ok_at("b", "isolate", "h1", "--reason", "INC-21", "--ttl", f"{TTL_S}s")
        self.assertEqual(self.outcome(doc, "h1")["state"], "enforced", doc)
        isolated_at = time.monotonic()
        self.assertFalse(self.reachable("h1"))
        self.controllers["a"].kill()
        self.controllers["a"].wait(timeout=15)
        killed_at = time.monotonic()
        # A call to the dead controller alone fails clearly. Given every controller, dead one
        # first, the CLI says it skips it and the next one answers.
        rc, _, err = self.cli_at("a", "hosts", timeout=30)
        self.assertNotEqual(rc, 0)
        self.assertTrue(err.strip(), "a failed call says why")
        rc, doc, err = self.cli_at("a,b,c", "isolate", "h2", "--reason", "INC-22", timeout=60)
        self.assertEqual(rc, 0, f"{err} {doc}")
        self.assertIn(f"controller {self.addr('a')} did not connect", err)
        self.assertIn(f"trying {self.addr('b')}", err)
        self.assertEqual(self.outcome(doc, "h2")["state"], "enforced", doc)
        self.assertFalse(self.reachable("h2"))

        def reconnected():
            return any("host h1 connected" in lab.log_text(self.controllers[n]) for n in "bc")
        wait_until(reconnected, 30, interval=0.05, desc="h1 reconnected to b or c")
        failover_s = time.monotonic() - killed_at
        wait_until(lambda: any("runs the singletons" in lab.log_text(self.controllers[n])
                               for n in "bc"), 20, interval=0.1, desc="a new singleton holder")
        lease_s = time.monotonic() - killed_at
        self.assertFalse(self.reachable("h1"), "h1 released before its TTL")
        wait_until(lambda: self.reachable("h1"), TTL_S + 20, interval=0.2,
                   desc="h1 released at its TTL by the new singleton holder")
        released_after_s = time.monotonic() - isolated_at
        self.assertGreaterEqual(released_after_s, TTL_S - 1)

        # The agent lifts an expired isolation by itself; the controllers' own release (the
        # singleton's sweep, now on b or c) is its audit row. Awaited before PostgreSQL
        # restarts below, which would take the lock away and delay the sweep.
        def ttl_rows():
            rc, doc, _ = self.cli_at("c", "audit", "--limit", "500", timeout=20)
            if rc != 0:
                return []
            return [r for r in doc["records"]
                    if r["action"] == "release" and r["reason"] == "ttl expired"]
        wait_until(ttl_rows, 15, interval=0.2, desc="the TTL release in the audit trail")
        ttl_row_after_s = time.monotonic() - isolated_at

        # PostgreSQL restarts under the controllers: they listen again, and a change through b
        # reaches h3 on c.
        self.pg.kill9()
        self.pg.start()
        wait_until(lambda: all(lab.log_text(self.controllers[n]).count("replicas: listening")
                               >= 2 for n in "bc"), 30, interval=0.2,
                   desc="b and c listening again")
        doc = self.ok_at("b", "isolate", "h3", "--reason", "INC-23")
        self.assertEqual(self.outcome(doc, "h3")["state"], "enforced", doc)
        self.assertFalse(self.reachable("h3"))

        # One chain, rows of all three controllers, nothing acknowledged lost.
        rc, doc, err = self.cli_at("c", "audit", "--verify")
        self.assertEqual(rc, 0, f"{err} {doc}")
        records = self.ok_at("c", "audit", "--limit", "500")["records"]
        starts = [r for r in records if r["action"] == "controller-start"]
        self.assertEqual(len(starts), 3, starts)
        isolates = [r for r in records if r["action"] == "isolate" and r["outcome"] == "ok"]
        # INC-20 (and its dry run), the timed ones, INC-21, INC-22, INC-23.
        self.assertEqual(len(isolates), 2 * ROUNDS + 5, [r["reason"] for r in isolates])
        ttl = [r for r in records if r["action"] == "release" and r["reason"] == "ttl expired"]
        self.assertEqual(len(ttl), 1, ttl)
        print(f"\nisolate/release round trips through the CLI ({2 * ROUNDS} calls each): "
              f"call to a, agent on c: p50 {statistics.median(remote):.1f} ms, "
              f"p99 {p(remote, 0.99):.1f} ms (min {remote[0]:.1f}, max {remote[-1]:.1f}); "
              f"call to c, agent on c: p50 {statistics.median(local):.1f} ms, "
              f"p99 {p(local, 0.99):.1f} ms (min {local[0]:.1f}, max {local[-1]:.1f}); "
              f"ratio of medians {statistics.median(remote) / statistics.median(local):.2f}\n"
              f"a killed -9 -> h1 reconnected in {failover_s:.2f} s, singleton lease moved in "
              f"{lease_s:.2f} s; TTL {TTL_S} s: h1 reachable after {released_after_s:.1f} s, "
              f"the controllers' release audited after {ttl_row_after_s:.1f} s")


if __name__ == "__main__":
    unittest.main(verbosity=2)
