"""A bulkhead fleet inside a Lab: PKI, a controller in `ctl`, agents in the hosts, and the CLI
run from the responders' `jump` node. Shared by the integration tests and the demo.

    with Lab(hosts=3) as lab:
        fleet = Fleet(lab, build_dir)
        fleet.start_controller()
        for h in lab.hosts: fleet.start_agent(h.name, labels={"role": "web"})
        fleet.wait_online(["h1", "h2", "h3"])
        rc, doc, err = fleet.cli("hosts")
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Dict, Iterable, List, Optional, Tuple

import json_contract
from bhlab import Lab, wait_until

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CONTROLLER_PORT = 7443


def build_dir_from_env() -> str:
    return os.path.abspath(os.environ.get("BULKHEAD_BUILD_DIR", os.path.join(REPO, "build")))


class Fleet:
    def __init__(self, lab: Lab, build_dir: Optional[str] = None,
                 heartbeat_interval: str = "500ms", heartbeat_timeout: str = "2s",
                 policy_dir: Optional[str] = None, log_level: str = "debug"):
        self.lab = lab
        self.build_dir = build_dir or build_dir_from_env()
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.log_level = log_level
        self.policy_dir = policy_dir or os.path.join(REPO, "policies")
        self.pki = os.path.join(lab.tmpdir, "pki")
        self.data_dir = os.path.join(lab.tmpdir, "controller-data")
        self.controller = None
        self.agents: Dict[str, subprocess.Popen] = {}
        # Programs run from elsewhere than the build dir, by name (the compatibility test runs
        # the previous release's): {"bulkhead-agent": "/path/to/bulkhead-agent"}.
        self.programs: Dict[str, str] = {}
        # Words before the CLI's own (the package test runs the packaged CLI with
        # ["chroot", ROOT]).
        self.cli_prefix: List[str] = []
        self.controller_addr = f"{lab.ip4('ctl')}:{CONTROLLER_PORT}"
        for b in ("bulkhead", "bulkhead-controller", "bulkhead-agent"):
            if not os.access(self.bin(b), os.X_OK):
                raise FileNotFoundError(f"{self.bin(b)} is not built (BULKHEAD_BUILD_DIR?)")
        self._make_pki()

    # ---- binaries and identities -------------------------------------------------------------

    def bin(self, name: str) -> str:
        if name in self.programs:
            return self.programs[name]
        sub = {"bulkhead": "cli", "bulkhead-controller": "controller",
               "bulkhead-agent": "agent", "bulkhead-report": "agent"}.get(name, "bench")
        return os.path.join(self.build_dir, sub, name)

    def _make_pki(self):
        subprocess.run([self.bin("bulkhead"), "pki", "init", "--dir", self.pki,
                        "--controller-ip", self.lab.ip4("ctl"),
                        "--controller-ip", self.lab.ip6("ctl")],
                       check=True, capture_output=True, text=True, timeout=30)
        for h in self.lab.hosts:
            self.issue_agent(h.name)

    def issue_agent(self, host_id: str, pki: Optional[str] = None) -> str:
        pki = pki or self.pki
        subprocess.run([self.bin("bulkhead"), "pki", "issue", "agent", "--host-id", host_id,
                        "--dir", pki], check=True, capture_output=True, text=True, timeout=30)
        return os.path.join(pki, "agents", host_id)

    def agent_identity(self, host: str) -> str:
        return os.path.join(self.pki, "agents", host)

    @property
    def admin_identity(self) -> str:
        return os.path.join(self.pki, "operators", "admin")

    # ---- controller --------------------------------------------------------------------------

    def controller_argv(self, extra: Iterable[str] = ()) -> List[str]:
        return [self.bin("bulkhead-controller"), "--listen", f"[::]:{CONTROLLER_PORT}",
                "--advertise", f"{self.lab.ip4('ctl')}:{CONTROLLER_PORT}",
                "--advertise", f"[{self.lab.ip6('ctl')}]:{CONTROLLER_PORT}",
                "--identity", os.path.join(self.pki, "controller"),
                "--data-dir", self.data_dir, "--policy-dir", self.policy_dir,
                "--heartbeat-interval", self.heartbeat_interval,
                "--heartbeat-timeout", self.heartbeat_timeout, "--log-level", self.log_level,
                *extra]

    def other_controller_argv(self, port: int, data_dir: str, extra: Iterable[str] = (),
                              advertise_port: bool = False) -> List[str]:
        """controller_argv of another controller in node ctl (the same identity): listening on
        `port` with its own `data_dir`; with advertise_port, --advertise names `port` too."""
        argv = self.controller_argv(extra)
        argv[argv.index("--listen") + 1] = f"[::]:{port}"
        argv[argv.index("--data-dir") + 1] = data_dir
        if advertise_port:
            for i, a in enumerate(argv[:-1]):
                if a == "--advertise":
                    argv[i + 1] = f"{argv[i + 1].rsplit(':', 1)[0]}:{port}"
        return argv

    def start_controller(self, extra: Iterable[str] = (), timeout: float = 15.0):
        self.controller = self.lab.spawn("ctl", self.controller_argv(extra), label="controller")
        wait_until(lambda: self.controller.poll() is not None or
                   self.lab.tcp_probe("jump", self.lab.ip4("ctl"), CONTROLLER_PORT),
                   timeout, interval=0.1, desc="controller listening")
        if self.controller.poll() is not None:
            raise RuntimeError("controller exited at start:\n" +
                               self.lab.log_text(self.controller))
        return self.controller

    def kill_controller(self, sig: int = signal.SIGKILL):
        if self.controller and self.controller.poll() is None:
            self.controller.send_signal(sig)
            self.controller.wait(timeout=15)

    # ---- agents ------------------------------------------------------------------------------

    def agent_state_dir(self, host: str) -> str:
        return os.path.join(self.lab.tmpdir, f"agent-{host}")

    def agent_argv(self, host: str, labels: Optional[Dict[str, str]] = None,
                   identity: Optional[str] = None, extra: Iterable[str] = ()) -> List[str]:
        argv = [self.bin("bulkhead-agent"), "--controller", self.controller_addr,
                "--identity", identity or self.agent_identity(host),
                "--state-dir", self.agent_state_dir(host), "--log-level", self.log_level]
        for k, v in sorted((labels or {}).items()):
            argv += ["--label", f"{k}={v}"]
        return argv + list(extra)

    def start_agent(self, host: str, labels: Optional[Dict[str, str]] = None,
                    identity: Optional[str] = None, extra: Iterable[str] = ()):
        p = self.lab.spawn(host, self.agent_argv(host, labels, identity, extra),
                           label=f"agent-{host}")
        self.agents[host] = p
        return p

    def kill_agent(self, host: str, sig: int = signal.SIGKILL):
        p = self.agents.get(host)
        if p and p.poll() is None:
            p.send_signal(sig)
            p.wait(timeout=15)

    # ---- the operator's CLI ------------------------------------------------------------------

    def cli(self, *args: str, identity: Optional[str] = None, json_out: bool = True,
            node: str = "jump", timeout: float = 60.0) -> Tuple[int, object, str]:
        """Runs `bulkhead` in `node`. Returns (exit code, parsed JSON or stdout, stderr)."""
        argv = [*self.cli_prefix, self.bin("bulkhead"), "--controller", self.controller_addr,
                "--identity", identity or self.admin_identity]
        if json_out:
            argv.append("--json")
        r = self.lab.run(node, argv + list(args), timeout=timeout)
        out: object = r.stdout
        if json_out and r.stdout.strip():
            # The --json contract: one JSON document, valid against the command's schema.
            try:
                out = json.loads(r.stdout)
            except json.JSONDecodeError as e:
                raise AssertionError(f"bulkhead {' '.join(args)} --json printed no JSON ({e}): "
                                     f"{r.stdout[:500]!r}") from None
            # This build's schemas; another release's CLI answers to its own.
            broken = [] if "bulkhead" in self.programs else json_contract.problems(args, out)
            if broken:
                raise AssertionError(f"bulkhead {' '.join(args)} --json breaks its schema: "
                                     + "; ".join(broken[:5]) + f"\n{r.stdout[:2000]}")
        return r.returncode, out, r.stderr

    def hosts(self) -> Dict[str, dict]:
        rc, doc, err = self.cli("hosts", timeout=20)
        if rc != 0 or not isinstance(doc, dict):
            raise RuntimeError(f"bulkhead hosts failed ({rc}): {err}")
        return {h["host_id"]: h for h in doc.get("hosts", [])}

    def wait_online(self, hosts: Iterable[str], timeout: float = 20.0, online: bool = True):
        want = set(hosts)

        def check():
            hs = self.hosts()
            return all(h in hs and hs[h]["online"] == online for h in want)
        return wait_until(check, timeout, interval=0.2,
                          desc=f"{sorted(want)} {'online' if online else 'offline'}")
