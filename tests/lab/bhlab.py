#!/usr/bin/env python3
"""bulkhead network-namespace lab (Python 3 standard library only).

Builds a throw-away lab of Linux namespaces joined by a bridge, with no route to the outside
world, for integration tests and the README demo:

    <p>lab        network namespace holding bridge br0 (and nothing else)
    <p>ctl        controller        10.77.0.1   fd77::1
    <p>h1..hN     hosts             10.77.0.11  fd77::11 ...
    <p>jump       responders' jump  10.77.0.40  fd77::40
    <p>service    business service  10.77.0.50  fd77::50
    <p>attacker   attacker          10.77.0.66  fd77::66

<p> is a unique prefix `bh-<6 hex>-`. Every node has its own network, PID, mount and UTS
namespace, held by a small "holder" process that is PID 1 inside the node (it reaps orphans).
Inside each node /proc shows only that node's processes, /run is a private tmpfs and the
hostname is the node's name. Everything started with Lab.run/Lab.spawn enters all four
namespaces, so it sees and can kill only that node's processes.

Library use (tests add tests/lab to sys.path):

    from bhlab import Lab, wait_until
    with Lab(hosts=3) as lab:
        srv = lab.spawn("h1", ["python3", lab.TCPSTREAM, "serve", "7000"])
        r = lab.run("attacker", ["python3", lab.TCPSTREAM, "probe", lab.ip4("h1"), "7000"])

CLI (root): bhlab.py up [--hosts N] | down PREFIX | exec PREFIX NODE -- ARGV... |
            list | cleanup [--all]
"""

from __future__ import annotations

import atexit
import ctypes
import ipaddress
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
TCPSTREAM = os.path.join(HERE, "tcpstream.py")
STATE_DIR = "/run/bulkhead-lab"
NETNS_DIR = "/run/netns"
PREFIX_RE = re.compile(r"^bh-[0-9a-f]{6}-$")
NS_NAME_RE = re.compile(r"^(bh-[0-9a-f]{6}-)[a-z0-9]+$")
HOLDER_MARK = "bhlab-holder"

NET4 = ipaddress.ip_network("10.77.0.0/16")
NET6 = ipaddress.ip_network("fd77::/16")
PREFIXLEN4 = 16
PREFIXLEN6 = 64

ROLE_ADDR = {"ctl": 1, "jump": 40, "service": 50, "attacker": 66}
MAX_HOSTS = 500

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

# Serialises the window in which this thread's pid_for_children points into a node.
_spawn_lock = threading.Lock()


class LabError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

def case_failed(case) -> bool:
    """Whether the unittest.TestCase `case` has failed or errored so far; for its tearDown,
    which keeps and prints the lab's logs then. (Python 3.11's unittest resets
    `case._outcome.success` before tearDown runs, so the result's lists are read instead.)"""
    result = getattr(getattr(case, "_outcome", None), "result", None)
    if result is None:
        return False
    return any(test is case for test, _ in list(result.failures) + list(result.errors))


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05,
               desc: str = "condition"):
    """Poll predicate until it returns something truthy; return that value.

    Raises TimeoutError (mentioning desc) if it has not happened within timeout seconds.
    Exceptions raised by predicate propagate."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {desc}")
        time.sleep(interval)


def require_root():
    if os.geteuid() != 0:
        raise LabError("bhlab must run as root (it creates network namespaces)")


def _start_time(pid: int) -> Optional[int]:
    """Start time (clock ticks since boot) of pid, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def _alive(pid: Optional[int], start: Optional[int]) -> bool:
    if not pid:
        return False
    st = _start_time(pid)
    if st is None:
        return False
    if start is not None and st != start:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2:data.rindex(b")") + 3] != b"Z"
    except OSError:
        return False


def _ns_ino(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _own_net_ino() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def _machine_net_inos() -> set:
    """Inodes of network namespaces that belong to the machine: ours and init's."""
    s = {_own_net_ino()}
    i = _ns_ino("/proc/1/ns/net")
    if i:
        s.add(i)
    return s


def _pids_in_netns(ino: int) -> List[int]:
    if ino in _machine_net_inos():
        raise LabError("refusing to look for processes in the machine's own network namespace")
    me = os.getpid()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        if pid == me:
            continue
        if _ns_ino(f"/proc/{pid}/ns/net") == ino:
            out.append(pid)
    return out


def _kill(pid: int, sig: int = signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _ip(args: Sequence[str], timeout: float = 20.0, batch: Optional[Sequence[str]] = None):
    """Run `ip ARGS` (optionally with a batch on stdin); raise LabError on failure."""
    argv = ["ip"] + list(args)
    inp = None
    if batch is not None:
        argv += ["-b", "-"]
        inp = "".join(line + "\n" for line in batch)
    r = subprocess.run(argv, input=inp, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}"
                       + (f"\nbatch:\n{inp}" if inp else ""))
    return r


def read_json(path: str):
    """Parsed JSON file, or None if it does not exist (yet) or is incomplete."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _communicate(p: subprocess.Popen, input: Optional[str], timeout: float):
    """Like Popen.communicate, but returns once the process itself has exited (plus a short
    grace for the pipes), even if a background child it left behind still holds them open.
    Raises subprocess.TimeoutExpired if the process runs longer than timeout."""
    bufs = {}

    def reader(name, f):
        chunks = []
        bufs[name] = chunks
        fd = f.fileno()
        try:
            while True:
                chunk = os.read(fd, 65536)  # returns what is there, unlike a text read(n)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:
            pass
        finally:
            f.close()

    def text(name):
        if name not in bufs:
            return None
        return b"".join(bufs[name]).decode(errors="replace")

    threads = []
    for name in ("stdout", "stderr"):
        f = getattr(p, name)
        if f is not None:
            t = threading.Thread(target=reader, args=(name, f), daemon=True)
            t.start()
            threads.append(t)
    if p.stdin is not None:
        try:
            if input:
                p.stdin.write(input.encode())
            p.stdin.close()
        except (BrokenPipeError, OSError):
            pass
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise subprocess.TimeoutExpired(p.args, timeout, text("stdout"),
                                        text("stderr")) from None
    for t in threads:
        t.join(0.5)
    return text("stdout"), text("stderr")


def list_netns() -> List[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _write_json_atomic(path: str, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# the holder: PID 1 of each node
# --------------------------------------------------------------------------------------------

HOLDER = os.path.join(HERE, "holder.py")


def _set_pdeathsig_kill():
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# --------------------------------------------------------------------------------------------
# the lab
# --------------------------------------------------------------------------------------------

@dataclass
class Node:
    name: str
    role: str              # ctl | host | jump | service | attacker
    ns: str                # network namespace name (ip netns)
    ip4: str
    ip6: str
    holder_pid: int = 0
    holder_start: Optional[int] = None
    net_ino: Optional[int] = None
    _unshare: Optional[subprocess.Popen] = field(default=None, repr=False)

    @property
    def ns_path(self) -> str:
        return os.path.join(NETNS_DIR, self.ns)

    def to_json(self):
        return {"name": self.name, "role": self.role, "ns": self.ns, "ip4": self.ip4,
                "ip6": self.ip6, "holder_pid": self.holder_pid,
                "holder_start": self.holder_start, "net_ino": self.net_ino}


def _host_addr(i: int):
    if i <= 29:
        return f"10.77.0.{10 + i}", f"fd77::{10 + i}"
    a, b = 1 + (i - 30) // 250, 1 + (i - 30) % 250
    return f"10.77.{a}.{b}", f"fd77::{a}:{b}"


_live_labs: List["Lab"] = []
_live_lock = threading.Lock()
_handlers_installed = False


def _teardown_all():
    with _live_lock:
        labs = list(_live_labs)
    for lab in labs:
        # a forked child (e.g. multiprocessing) must not tear down its parent's lab
        if not lab.persistent and lab.creator_pid == os.getpid():
            try:
                lab.close(failed=True)
            except Exception as e:  # keep going: tear down the others too
                print(f"bhlab: teardown of {lab.prefix} failed: {e}", file=sys.stderr)


def _signal_handler(signum, frame):
    _teardown_all()
    prev = _prev_handlers.get(signum, signal.SIG_DFL)
    if callable(prev):
        prev(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


_prev_handlers: Dict[int, object] = {}


def _install_handlers():
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_teardown_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        prev = signal.getsignal(s)
        if prev is signal.SIG_IGN:
            continue
        _prev_handlers[s] = prev
        signal.signal(s, _signal_handler)


class Lab:
    """A network-namespace lab. Use as a context manager, or call close() yourself.

    hosts:       number of hosts h1..hN (default 3)
    prefix:      namespace prefix, `bh-<6 hex>-` (random by default)
    persistent:  survive the creating process (for `bhlab.py up`); no signal/atexit teardown
    tmpdir:      directory for logs (default: a new /tmp/<prefix>XXXX); kept when the lab
                 is closed after a failure (or with BHLAB_KEEP=1), removed otherwise.
    """

    TCPSTREAM = TCPSTREAM

    def __init__(self, hosts: int = 3, prefix: Optional[str] = None, persistent: bool = False,
                 tmpdir: Optional[str] = None, _attach: Optional[dict] = None):
        require_root()
        self.persistent = persistent
        self.failed = False
        self.closed = False
        self._procs: List[subprocess.Popen] = []
        self._lock = threading.RLock()
        self._seq = 0
        self.nodes: Dict[str, Node] = {}
        if _attach is not None:
            self._from_state(_attach)
            return
        if not 1 <= hosts <= MAX_HOSTS:
            raise LabError(f"hosts must be 1..{MAX_HOSTS}")
        self.prefix = prefix or f"bh-{secrets.token_hex(3)}-"
        if not PREFIX_RE.match(self.prefix):
            raise LabError(f"bad prefix {self.prefix!r}: must look like bh-1a2b3c-")
        self.lab_ns = self.prefix + "lab"
        self.tmpdir = tmpdir or tempfile.mkdtemp(prefix=self.prefix)
        os.makedirs(self.tmpdir, exist_ok=True)
        self.state_path = os.path.join(STATE_DIR, self.prefix + ".json")
        self.creator_pid = os.getpid()
        self.creator_start = _start_time(self.creator_pid)
        order = [("ctl", "ctl")] + [(f"h{i}", "host") for i in range(1, hosts + 1)] + \
                [("jump", "jump"), ("service", "service"), ("attacker", "attacker")]
        for name, role in order:
            if role == "host":
                a4, a6 = _host_addr(int(name[1:]))
            else:
                a4, a6 = f"10.77.0.{ROLE_ADDR[role]}", f"fd77::{ROLE_ADDR[role]}"
            assert ipaddress.ip_address(a4) in NET4 and ipaddress.ip_address(a6) in NET6
            self.nodes[name] = Node(name=name, role=role, ns=self.prefix + name, ip4=a4, ip6=a6)
        with _live_lock:
            _live_labs.append(self)
        if not persistent:
            _install_handlers()
        try:
            self._build()
        except BaseException:
            self.close(failed=True)
            raise

    # ---- construction ----------------------------------------------------------------------

    def _save_state(self):
        _write_json_atomic(self.state_path, {
            "prefix": self.prefix, "creator_pid": self.creator_pid,
            "creator_start": self.creator_start, "persistent": self.persistent,
            "tmpdir": self.tmpdir, "lab_ns": self.lab_ns, "created": time.time(),
            "nodes": {n.name: n.to_json() for n in self.nodes.values()}})

    def _build(self):
        existing = set(list_netns())
        for ns in [self.lab_ns] + [n.ns for n in self.nodes.values()]:
            if ns in existing:
                raise LabError(f"network namespace {ns} already exists")
        self._save_state()  # before anything exists, so `cleanup` can always find it
        _ip([], batch=[f"netns add {ns}" for ns in [self.lab_ns] +
                       [n.ns for n in self.nodes.values()]])
        machine = _machine_net_inos()
        for ns in [self.lab_ns] + [n.ns for n in self.nodes.values()]:
            ino = _ns_ino(os.path.join(NETNS_DIR, ns))
            if ino is None or ino in machine:
                raise LabError(f"namespace {ns} is missing or is the machine's own")
        for n in self.nodes.values():
            n.net_ino = _ns_ino(n.ns_path)
        lab = [
            "link set lo up",
            "link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0",
            "link set br0 up",
        ]
        for n in self.nodes.values():
            lab += [f"link add {n.name} type veth peer name eth0 netns {n.ns}",
                    f"link set {n.name} master br0",
                    f"link set {n.name} up"]
        _ip(["-n", self.lab_ns], batch=lab)
        # holders: one per node, started in parallel
        for n in self.nodes.values():
            self._start_holder(n)
        for n in self.nodes.values():
            self._await_holder(n)
        self._save_state()
        for n in self.nodes.values():
            _ip(["-n", n.ns], batch=[
                "link set lo up",
                f"addr add {n.ip4}/{PREFIXLEN4} dev eth0",
                f"addr add {n.ip6}/{PREFIXLEN6} dev eth0 nodad",
                "link set eth0 up"])

    def _start_holder(self, n: Node):
        argv = ["ip", "netns", "exec", n.ns, "unshare", "--pid", "--mount", "--uts", "--fork",
                "--mount-proc", "--propagation", "private", "--kill-child=SIGKILL",
                sys.executable, HOLDER, HOLDER_MARK, n.name]
        pre = None
        if not self.persistent and threading.current_thread() is threading.main_thread():
            pre = _set_pdeathsig_kill  # harness killed -9 -> unshare dies -> node dies
        errlog = open(os.path.join(self.tmpdir, f"{n.name}.holder.log"), "ab")
        try:
            n._unshare = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=errlog, preexec_fn=pre,
                                          start_new_session=self.persistent)
        finally:
            errlog.close()

    def _await_holder(self, n: Node, timeout: float = 15.0):
        p = n._unshare
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LabError(f"holder of {n.name} not ready after {timeout}s")
            r, _, _ = select.select([p.stdout], [], [], left)
            if r:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
        p.stdout.close()
        line = buf.decode(errors="replace").strip()
        if line != "ready":
            raise LabError(f"holder of {n.name} failed: {line or 'exited'}; "
                           f"see {self.tmpdir}/{n.name}.holder.log")
        kids = self._children(p.pid)
        if len(kids) != 1:
            raise LabError(f"holder of {n.name}: expected one child of unshare, found {kids}")
        n.holder_pid = kids[0]
        n.holder_start = _start_time(n.holder_pid)
        self._check_node(n)

    @staticmethod
    def _children(pid: int) -> List[int]:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            out = []
            for d in os.listdir("/proc"):
                if d.isdigit():
                    try:
                        with open(f"/proc/{d}/stat", "rb") as f:
                            data = f.read()
                        if int(data[data.rindex(b")") + 2:].split()[1]) == pid:
                            out.append(int(d))
                    except (OSError, ValueError):
                        pass
            return out

    def _from_state(self, st: dict):
        self.prefix = st["prefix"]
        self.lab_ns = st["lab_ns"]
        self.tmpdir = st["tmpdir"]
        self.persistent = st.get("persistent", False)
        self.state_path = os.path.join(STATE_DIR, self.prefix + ".json")
        self.creator_pid = st.get("creator_pid")
        self.creator_start = st.get("creator_start")
        for name, d in st["nodes"].items():
            self.nodes[name] = Node(name=name, role=d["role"], ns=d["ns"], ip4=d["ip4"],
                                    ip6=d["ip6"], holder_pid=d.get("holder_pid") or 0,
                                    holder_start=d.get("holder_start"),
                                    net_ino=d.get("net_ino"))

    @classmethod
    def attach(cls, prefix: str) -> "Lab":
        """Attach to a lab made by another process (e.g. `bhlab.py up`)."""
        if not PREFIX_RE.match(prefix):
            raise LabError(f"bad prefix {prefix!r}")
        path = os.path.join(STATE_DIR, prefix + ".json")
        try:
            with open(path) as f:
                st = json.load(f)
        except FileNotFoundError:
            raise LabError(f"no lab {prefix} (no {path})") from None
        return cls(_attach=st)

    # ---- access ----------------------------------------------------------------------------

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise LabError(f"no node {name!r} in lab {self.prefix}; "
                           f"nodes: {', '.join(self.nodes)}") from None

    @property
    def hosts(self) -> List[Node]:
        return [n for n in self.nodes.values() if n.role == "host"]

    def ip4(self, name: str) -> str:
        return self.node(name).ip4

    def ip6(self, name: str) -> str:
        return self.node(name).ip6

    def ns_path(self, name: str) -> str:
        """Path of the node's network namespace (/run/netns/<prefix><name>)."""
        return self.node(name).ns_path

    def holder_pid(self, name: str) -> int:
        return self.node(name).holder_pid

    def nsenter_argv(self, name: str) -> List[str]:
        """argv prefix that runs a command in the node from a shell (nsenter forks)."""
        n = self._check_node(self.node(name))
        return ["nsenter", f"--target={n.holder_pid}", "--net", "--pid", "--mount", "--uts",
                "--"]

    def node_alive(self, name: str) -> bool:
        n = self.node(name)
        return _alive(n.holder_pid, n.holder_start)

    def _check_node(self, n: Node) -> Node:
        """Refuse unless the holder is alive and sits in the node's own namespaces."""
        if self.closed:
            raise LabError(f"lab {self.prefix} is closed")
        if not _alive(n.holder_pid, n.holder_start):
            raise LabError(f"node {n.name} of lab {self.prefix} is not running "
                           f"(holder {n.holder_pid} gone)")
        hp = n.holder_pid
        net = _ns_ino(f"/proc/{hp}/ns/net")
        if net is None or net in _machine_net_inos():
            raise LabError(f"refusing: node {n.name} would run in the machine's own "
                           "network namespace")
        if n.net_ino is not None and net != n.net_ino:
            raise LabError(f"refusing: holder {hp} of {n.name} is not in namespace {n.ns}")
        if _ns_ino(f"/proc/{hp}/ns/pid") == _ns_ino("/proc/self/ns/pid") or \
                _ns_ino(f"/proc/{hp}/ns/mnt") == _ns_ino("/proc/self/ns/mnt"):
            raise LabError(f"refusing: node {n.name} shares the harness's pid/mount namespace")
        return n

    # ---- running things in nodes -----------------------------------------------------------

    def _popen(self, name: str, argv: Sequence[str], cwd: Optional[str] = None,
               **kw) -> subprocess.Popen:
        if isinstance(argv, str):
            raise TypeError("argv must be a list; use lab.sh() for a shell string")
        n = self._check_node(self.node(name))
        hp = n.holder_pid
        fds = []
        try:
            for nstype, f in ((CLONE_NEWNET, "net"), (CLONE_NEWUTS, "uts"),
                              (CLONE_NEWNS, "mnt")):
                fds.append((os.open(f"/proc/{hp}/ns/{f}", os.O_RDONLY | os.O_CLOEXEC), nstype))
            pidfd = os.open(f"/proc/{hp}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            fds.append((pidfd, 0))
            ownpid = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            fds.append((ownpid, 0))
            # the harness may have moved since; re-check the opened fd is not ours
            if os.fstat(fds[0][0]).st_ino in _machine_net_inos():
                raise LabError("refusing: would run in the machine's own network namespace")
            wd = cwd or (os.getcwd() if os.path.isdir(os.getcwd()) else "/")
            enter = [(fd, t) for fd, t in fds[:3]]

            def pre():
                for fd, t in enter:
                    if _libc.setns(fd, t) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                try:
                    os.chdir(wd)
                except OSError:
                    os.chdir("/")

            with _spawn_lock:
                if _libc.setns(pidfd, CLONE_NEWPID) != 0:
                    e = ctypes.get_errno()
                    raise LabError(f"setns(pid) into {n.name}: {os.strerror(e)}")
                try:
                    p = subprocess.Popen(list(argv), preexec_fn=pre, **kw)
                finally:
                    if _libc.setns(ownpid, CLONE_NEWPID) != 0:
                        e = ctypes.get_errno()
                        # cannot happen (own active ns), but never continue half-switched
                        os.write(2, f"bhlab: cannot restore pid ns: {os.strerror(e)}\n".encode())
                        os._exit(70)
        finally:
            for fd, _ in fds:
                os.close(fd)
        p.node = name
        p.argv = list(argv)
        return p

    def run(self, name: str, argv: Sequence[str], timeout: float = 30.0, check: bool = False,
            input: Optional[str] = None, env: Optional[dict] = None, cwd: Optional[str] = None,
            capture: bool = True) -> subprocess.CompletedProcess:
        """Run argv in node `name`, wait (bounded) and return a CompletedProcess (text).

        Returns when the process exits, even if it left a background child holding the pipes
        (that child keeps running in the node until teardown; its later output is lost).
        On timeout the process is killed and subprocess.TimeoutExpired is raised."""
        kw = dict(stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL, env=env)
        if capture:
            kw.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p = self._popen(name, argv, cwd=cwd, **kw)
        try:
            out, err = _communicate(p, input, timeout)
        except BaseException:
            p.kill()
            p.wait()
            raise
        r = subprocess.CompletedProcess(list(argv), p.returncode, out, err)
        if check and r.returncode != 0:
            raise subprocess.CalledProcessError(r.returncode, f"[{name}] {' '.join(argv)}",
                                                out, err)
        return r

    def sh(self, name: str, script: str, **kw) -> subprocess.CompletedProcess:
        """run(name, ["sh", "-c", script], **kw)"""
        return self.run(name, ["sh", "-c", script], **kw)

    def spawn(self, name: str, argv: Sequence[str], stdout=None, stderr=None,
              stdin=subprocess.DEVNULL, env: Optional[dict] = None, cwd: Optional[str] = None,
              label: Optional[str] = None, **kw) -> subprocess.Popen:
        """Start argv in node `name` in the background; returns a subprocess.Popen.

        .pid is the real process (as seen from the machine), so .kill()/.terminate()/
        .send_signal()/.wait() act on it directly. Extra attributes: .node, .argv, .log_path.
        Unless stdout is given, stdout+stderr go to <tmpdir>/<node>.<label>.<n>.log.
        Tracked: killed at teardown if still running."""
        log_path = None
        f = None
        if stdout is None:
            seq = self._next_seq()
            lab_ = re.sub(r"[^A-Za-z0-9_.-]", "_", label or os.path.basename(argv[0]))
            log_path = os.path.join(self.tmpdir, f"{name}.{lab_}.{seq}.log")
            f = open(log_path, "ab")
            stdout = f
            if stderr is None:
                stderr = subprocess.STDOUT
        try:
            p = self._popen(name, argv, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr,
                            env=env, **kw)
        finally:
            if f:
                f.close()
        p.log_path = log_path
        with self._lock:
            self._procs = [q for q in self._procs if q.poll() is None]
            self._procs.append(p)
        return p

    # ---- TCP traffic (tcpstream.py) --------------------------------------------------------

    def tcp_server(self, name: str, port: int, timeout: float = 10.0) -> subprocess.Popen:
        """Start an echo server (dual-stack) in node `name`; returns once it listens.
        .report_path holds its JSON report (accepted/open connections, peers)."""
        rp = os.path.join(self.tmpdir, f"{name}.serve.{port}.{self._next_seq()}.json")
        p = self.spawn(name, [sys.executable, TCPSTREAM, "serve", str(port), "--report", rp],
                       label=f"serve{port}")
        p.report_path = rp
        wait_until(lambda: read_json(rp) or p.poll() is not None, timeout,
                   desc=f"tcp server on {name}:{port}")
        if p.poll() is not None:
            raise LabError(f"tcp server on {name}:{port} exited: {self.log_text(p)}")
        return p

    def tcp_stream(self, name: str, host: str, port: int, interval_ms: float = 5,
                   reconnect: bool = False, wait_connected: float = 10.0,
                   extra: Sequence[str] = ()) -> subprocess.Popen:
        """Start a stream from node `name` to host:port; returns once connected and echoing
        (unless wait_connected=0). Read progress with read_json(p.report_path); stop it with
        p.terminate() (it writes a final report) and p.wait()."""
        rp = os.path.join(self.tmpdir, f"{name}.stream.{self._next_seq()}.json")
        argv = [sys.executable, TCPSTREAM, "stream", host, str(port), "--interval-ms",
                str(interval_ms), "--report", rp] + (["--reconnect"] if reconnect else []) + \
            list(extra)
        p = self.spawn(name, argv, label="stream")
        p.report_path = rp
        if wait_connected:
            def ok():
                r = read_json(rp)
                if r and r.get("state") == "dead":
                    raise LabError(f"stream {name} -> {host}:{port} failed: {r['first_error']}")
                return r and r.get("echoes", 0) > 0
            wait_until(ok, wait_connected, desc=f"stream {name} -> {host}:{port}")
        return p

    def tcp_probe(self, name: str, host: str, port: int, timeout: float = 1.0,
                  echo: bool = False) -> bool:
        """True if a new TCP connection from node `name` to host:port succeeds."""
        argv = [sys.executable, TCPSTREAM, "probe", host, str(port), "--timeout", str(timeout)]
        r = self.run(name, argv + (["--echo"] if echo else []), timeout=timeout + 10)
        return r.returncode == 0

    def _next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def log_text(self, proc_or_path, tail: int = 20000) -> str:
        path = getattr(proc_or_path, "log_path", proc_or_path)
        if not path:
            return ""
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - tail))
                return f.read().decode(errors="replace")
        except OSError as e:
            return f"<{e}>"

    def dump_logs(self, tail: int = 4000) -> str:
        """Tail of every log file in the lab's tmpdir (for failure messages)."""
        out = []
        try:
            names = sorted(os.listdir(self.tmpdir))
        except OSError:
            return ""
        for fn in names:
            if fn.endswith(".log"):
                out.append(f"===== {fn} =====\n{self.log_text(os.path.join(self.tmpdir, fn), tail)}")
        return "\n".join(out)

    def mark_failed(self):
        """Keep the tmpdir (logs) at close and print its path."""
        self.failed = True

    # ---- teardown --------------------------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.close(failed=et is not None)
        return False

    def close(self, failed: bool = False):
        """Kill everything started in the nodes and delete every namespace. Idempotent."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        failed = failed or self.failed
        errors = []
        # 1. processes we spawned
        for p in self._procs:
            if p.poll() is None:
                _kill(p.pid)
        # 2. holders (killing PID 1 of a pid namespace kills everything in it)
        for n in self.nodes.values():
            if _alive(n.holder_pid, n.holder_start):
                _kill(n.holder_pid)
        for p in self._procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                errors.append(f"process {p.pid} {p.argv} did not die")
        for n in self.nodes.values():
            if n._unshare is not None:
                if n._unshare.poll() is None:
                    try:
                        n._unshare.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        _kill(n._unshare.pid)
                        n._unshare.wait(timeout=5)
                if n._unshare.stdout and not n._unshare.stdout.closed:
                    n._unshare.stdout.close()
            elif n.holder_pid:
                try:
                    wait_until(lambda: not _alive(n.holder_pid, n.holder_start), 5,
                               desc=f"holder of {n.name} to die")
                except TimeoutError as e:
                    errors.append(str(e))
        # 3. anything else still inside our namespaces (e.g. entered by hand)
        ours = [self.lab_ns] + [n.ns for n in self.nodes.values()]
        existing = [ns for ns in ours if ns in set(list_netns())]
        for ns in existing:
            ino = _ns_ino(os.path.join(NETNS_DIR, ns))
            if ino is None or ino in _machine_net_inos():
                continue
            for pid in _pids_in_netns(ino):
                _kill(pid)
        # 4. namespaces (veths and the bridge go with them); nodes first, lab last
        for ns in [x for x in existing if x != self.lab_ns] + \
                  [x for x in existing if x == self.lab_ns]:
            r = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True,
                               timeout=20)
            if r.returncode != 0 and os.path.exists(os.path.join(NETNS_DIR, ns)):
                errors.append(f"ip netns del {ns}: {r.stderr.strip()}")
        try:
            os.unlink(self.state_path)
        except FileNotFoundError:
            pass
        with _live_lock:
            if self in _live_labs:
                _live_labs.remove(self)
        if failed or errors or os.environ.get("BHLAB_KEEP"):
            print(f"bhlab: lab {self.prefix} logs kept in {self.tmpdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        if errors:
            raise LabError("teardown incomplete: " + "; ".join(errors))

    teardown = close


# --------------------------------------------------------------------------------------------
# leftovers of crashed runs
# --------------------------------------------------------------------------------------------

def _read_state(prefix: str) -> Optional[dict]:
    try:
        with open(os.path.join(STATE_DIR, prefix + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def list_labs() -> Dict[str, dict]:
    """prefix -> {"namespaces": [...], "state": dict|None, "creator_alive": bool}"""
    labs: Dict[str, dict] = {}
    for ns in list_netns():
        m = NS_NAME_RE.match(ns)
        if m:
            labs.setdefault(m.group(1), {"namespaces": []})["namespaces"].append(ns)
    try:
        for fn in os.listdir(STATE_DIR):
            if fn.endswith(".json") and PREFIX_RE.match(fn[:-5]):
                labs.setdefault(fn[:-5], {"namespaces": []})
    except FileNotFoundError:
        pass
    for prefix, d in labs.items():
        st = _read_state(prefix)
        d["state"] = st
        d["creator_alive"] = bool(st) and _alive(st.get("creator_pid"), st.get("creator_start"))
    return labs


def cleanup(include_persistent: bool = False, verbose: bool = True) -> List[str]:
    """Remove labs whose creator is dead (and, with include_persistent, labs made by `up`).
    Never touches a lab whose creating process is still alive. Returns removed prefixes."""
    require_root()
    removed = []
    for prefix, d in sorted(list_labs().items()):
        st = d["state"]
        if d["creator_alive"]:
            if verbose:
                print(f"keep {prefix}: creator pid {st['creator_pid']} alive")
            continue
        if st and st.get("persistent") and not include_persistent:
            if verbose:
                print(f"keep {prefix}: made by `up` (use `down {prefix}` or cleanup --all)")
            continue
        for n in (st or {}).get("nodes", {}).values():
            if _alive(n.get("holder_pid"), n.get("holder_start")):
                _kill(n["holder_pid"])
        for ns in d["namespaces"]:
            ino = _ns_ino(os.path.join(NETNS_DIR, ns))
            if ino and ino not in _machine_net_inos():
                for pid in _pids_in_netns(ino):
                    _kill(pid)
        for ns in sorted(d["namespaces"], key=lambda s: s.endswith("-lab")):
            r = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True,
                               timeout=20)
            if r.returncode != 0 and verbose:
                print(f"ip netns del {ns}: {r.stderr.strip()}", file=sys.stderr)
        try:
            os.unlink(os.path.join(STATE_DIR, prefix + ".json"))
        except FileNotFoundError:
            pass
        removed.append(prefix)
        if verbose:
            print(f"removed {prefix} ({len(d['namespaces'])} namespaces)"
                  + (f"; logs in {st['tmpdir']}" if st and os.path.isdir(st.get('tmpdir', ''))
                     else ""))
    return removed


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def _print_lab(lab: Lab):
    print(f"lab {lab.prefix}  (logs: {lab.tmpdir})")
    for n in lab.nodes.values():
        print(f"  {n.name:<9} {n.ns:<20} {n.ip4:<12} {n.ip6:<10} holder pid {n.holder_pid}")
    print(f"run in a node:  {sys.argv[0]} exec {lab.prefix} h1 -- ip addr")
    print(f"tear down:      {sys.argv[0]} down {lab.prefix}")


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="bhlab.py", description="bulkhead network-namespace lab")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up", help="build a lab that stays up until `down`")
    p.add_argument("--hosts", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print the lab's state as JSON")
    p = sub.add_parser("down", help="tear down a lab made by `up`")
    p.add_argument("prefix")
    p = sub.add_parser("exec", help="run a command in a node: exec PREFIX NODE -- ARGV...")
    p.add_argument("prefix")
    p.add_argument("node")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    sub.add_parser("list", help="list labs on this machine")
    p = sub.add_parser("cleanup", help="remove leftovers of crashed runs")
    p.add_argument("--all", action="store_true", help="also labs made by `up`")
    a = ap.parse_args(argv)
    try:
        require_root()
        if a.cmd == "up":
            lab = Lab(hosts=a.hosts, persistent=True)
            if a.json:
                with open(lab.state_path) as f:
                    print(f.read())
            else:
                _print_lab(lab)
            return 0
        if a.cmd == "down":
            Lab.attach(a.prefix).close()
            print(f"removed {a.prefix}")
            return 0
        if a.cmd == "exec":
            cmd = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
            if not cmd:
                cmd = [os.environ.get("SHELL", "/bin/sh")]
            lab = Lab.attach(a.prefix)
            p = lab._popen(a.node, cmd, stdin=None, stdout=None, stderr=None)
            while True:
                try:
                    return p.wait() if p.returncode is None else p.returncode
                except KeyboardInterrupt:
                    continue
        if a.cmd == "list":
            for prefix, d in sorted(list_labs().items()):
                st = d["state"] or {}
                kind = "up" if st.get("persistent") else \
                    ("live" if d["creator_alive"] else "LEFTOVER")
                print(f"{prefix}  {kind:<8} {len(d['namespaces'])} namespaces  "
                      f"creator {st.get('creator_pid', '?')}  logs {st.get('tmpdir', '?')}")
            return 0
        if a.cmd == "cleanup":
            cleanup(include_persistent=a.all)
            return 0
    except (LabError, subprocess.SubprocessError, OSError) as e:
        print(f"bhlab: {e}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
