#!/usr/bin/env python3
"""The real detection tools in the lab (Python 3 standard library only): fail2ban 1.0.2, the
CrowdSec 1.4.6 local API and Prometheus Alertmanager 0.25, Debian 12's packages as fetched by
scripts/lab-tools.sh (extracted, never installed), each started inside a lab node with a private
configuration in a directory under lab.tmpdir.

    from bhlab import Lab
    import tools
    with Lab(hosts=1) as lab:
        sshd = tools.Sshd(lab, "h1").start()            # log lines as syslog writes them
        f2b = tools.Fail2ban(lab, "h1", logpath=sshd.log_path, action_conf=conf,
                             action_params={"record": path}, bantime=3).start()
        tools.ssh_fail(lab, "attacker", lab.ip4("h1"))  # one failed login
        f2b.banned()                                    # ["10.77.0.66"]
        cs = tools.CrowdSec(lab, "ctl", port=8080).start()
        cs.cscli("decisions", "add", "--ip", "10.77.0.66", "--duration", "1m")
        tools.http(lab, "h1", "GET", cs.url + "/v1/decisions/stream?startup=true",
                   headers={"X-Api-Key": key})          # -> (status, parsed body)
        rx = tools.WebhookReceiver(lab, "ctl", 9099).start()
        am = tools.Alertmanager(lab, "ctl", webhook_url=rx.url, bearer="s3cret").start()
        am.fire({"alertname": "X"}); rx.wait(1)

The machine's own namespaces can not reach the lab's addresses, so every HTTP request goes
out from a node: tools.http(lab, node, ...) runs this file's `http` command there. Daemons run
only through lab.spawn (the node's net/pid/mount/uts namespaces); the lab kills whatever is
left at teardown, and every stop() here is bounded.

CLI (used by the helpers inside nodes): tools.py http | webhook-receiver | syslog-pipe (see
--help of each).
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, Iterable, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS_PY = os.path.abspath(__file__)
TOOLS_DIR = os.environ.get("BULKHEAD_LAB_TOOLS", "/var/cache/bulkhead/lab-tools")
# the upstream versions the fixtures are written against (scripts/lab-tools.sh fetches them)
VERSIONS = {"fail2ban": "1.0.2", "crowdsec": "1.4.6", "prometheus-alertmanager": "0.25.0"}


# --------------------------------------------------------------------------------------------
# the tool cache
# --------------------------------------------------------------------------------------------

def tool_root(pkg: str) -> str:
    """Directory the package was extracted into (its usr/, etc/ ...)."""
    return os.path.join(TOOLS_DIR, pkg)


def tool_version(pkg: str) -> Optional[str]:
    """Debian version recorded by lab-tools.sh, or None if the package is not fetched."""
    try:
        with open(os.path.join(tool_root(pkg), ".bulkhead-stamp")) as f:
            name, _, version = f.read().strip().partition(" ")
    except OSError:
        return None
    return version if name == pkg else None


def have_tool(pkg: str) -> bool:
    v = tool_version(pkg)
    if not v:
        return False
    upstream = v.split(":", 1)[-1].rsplit("-", 1)[0]
    return upstream == VERSIONS[pkg]


def missing_tools(pkgs: Iterable[str] = tuple(VERSIONS)) -> List[str]:
    return [p for p in pkgs if not have_tool(p)]


class ToolError(RuntimeError):
    pass


def _wait(pred, timeout: float, desc: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {desc}")
        time.sleep(interval)


def _stop_proc(proc: Optional[subprocess.Popen], sig=signal.SIGTERM, timeout: float = 10.0):
    """Signal a process we spawned and wait (bounded); SIGKILL if it does not go."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _private_dir(lab, name: str) -> str:
    d = os.path.join(lab.tmpdir, f"{name}.{secrets.token_hex(3)}")
    os.makedirs(d)
    return d


def _check_started(lab, proc, what: str):
    if proc.poll() is not None:
        raise ToolError(f"{what} exited with {proc.returncode}:\n{lab.log_text(proc)}")


# --------------------------------------------------------------------------------------------
# HTTP from inside a node
# --------------------------------------------------------------------------------------------

def http(lab, node: str, method: str, url: str, headers: Optional[Dict[str, str]] = None,
         body=None, timeout: float = 10.0):
    """One HTTP request from node `node`. body: None, bytes/str, or anything JSON-serialisable
    (sent as application/json). Returns (status, parsed JSON body or text; None if empty).
    Raises ToolError if the connection itself fails."""
    argv = [sys.executable, TOOLS_PY, "http", method, url, "--timeout", str(timeout)]
    for k, v in (headers or {}).items():
        argv += ["--header", f"{k}: {v}"]
    inp = None
    if body is not None:
        if isinstance(body, bytes):
            inp = body.decode()
        elif isinstance(body, str):
            inp = body
        else:
            inp = json.dumps(body)
            if not any(k.lower() == "content-type" for k in (headers or {})):
                argv += ["--header", "Content-Type: application/json"]
        argv.append("--data-stdin")
    r = lab.run(node, argv, timeout=timeout + 10, input=inp)
    if r.returncode != 0:
        raise ToolError(f"{method} {url} from {node}: {r.stderr.strip() or r.stdout.strip()}")
    out = json.loads(r.stdout)
    text = out["body"]
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return out["status"], parsed


def _cmd_http(a) -> int:
    import urllib.error
    import urllib.request
    data = sys.stdin.buffer.read() if a.data_stdin else None
    hdrs = {}
    for h in a.header:
        k, _, v = h.partition(":")
        hdrs[k.strip()] = v.strip()
    req = urllib.request.Request(a.url, data=data, method=a.method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=a.timeout) as resp:
            status, body, rh = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        status, body, rh = e.code, e.read(), dict(e.headers)
    except (urllib.error.URLError, OSError) as e:
        print(f"http: {a.method} {a.url}: {e}", file=sys.stderr)
        return 1
    json.dump({"status": status, "headers": rh, "body": body.decode(errors="replace")},
              sys.stdout)
    return 0


# --------------------------------------------------------------------------------------------
# a webhook receiver (records every request)
# --------------------------------------------------------------------------------------------

class WebhookReceiver:
    """A tiny stdlib HTTP server in a node that answers 200 to everything and appends each
    request to a JSON-lines file: {"t": epoch, "method", "path", "headers": {...}, "body":
    parsed JSON or text}. requests() reads them; wait(n) waits for the n-th."""

    def __init__(self, lab, node: str, port: int, address: Optional[str] = None,
                 status: int = 200):
        self.lab, self.node, self.port, self.status = lab, node, port, status
        self.address = address or lab.ip4(node)
        self.dir = _private_dir(lab, f"{node}.webhook{port}")
        self.record = os.path.join(self.dir, "requests.jsonl")
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/"

    def start(self, timeout: float = 10.0) -> "WebhookReceiver":
        ready = os.path.join(self.dir, "ready")
        self.proc = self.lab.spawn(self.node, [
            sys.executable, TOOLS_PY, "webhook-receiver", "--listen", self.address,
            "--port", str(self.port), "--record", self.record, "--ready", ready,
            "--status", str(self.status)], label=f"webhook{self.port}")
        _wait(lambda: os.path.exists(ready) or self.proc.poll() is not None, timeout,
              f"webhook receiver on {self.node}:{self.port}")
        _check_started(self.lab, self.proc, "webhook receiver")
        return self

    def requests(self) -> List[dict]:
        try:
            with open(self.record) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                break  # a line being written
        return out

    def wait(self, n: int, timeout: float = 10.0) -> dict:
        """Wait until at least n requests arrived; return the n-th (1-based)."""
        reqs = _wait(lambda: (lambda r: r if len(r) >= n else None)(self.requests()), timeout,
                     f"request #{n} at the webhook receiver {self.url}")
        return reqs[n - 1]

    def stop(self):
        _stop_proc(self.proc)


def _cmd_webhook_receiver(a) -> int:
    import http.server
    import threading
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            rec = {"t": time.time(), "method": self.command, "path": self.path,
                   "headers": {k: v for k, v in self.headers.items()}, "body": body}
            with lock, open(a.record, "a") as f:
                f.write(json.dumps(rec) + "\n")
            self.send_response(a.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = do_GET = _handle

        def log_message(self, fmt, *args):
            sys.stderr.write("webhook-receiver: " + (fmt % args) + "\n")

    class Server(http.server.ThreadingHTTPServer):
        address_family = __import__("socket").AF_INET6 if ":" in a.listen else \
            __import__("socket").AF_INET

    srv = Server((a.listen, a.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(a.ready, "w") as f:
        f.write(str(os.getpid()))
    srv.serve_forever()
    return 0


# --------------------------------------------------------------------------------------------
# sshd with a syslog-style log file, and a failing ssh login
# --------------------------------------------------------------------------------------------

class Sshd:
    """A real OpenSSH sshd in a node whose log lines land in a file as syslog would write them
    (`<host> sshd[<pid>]: Invalid user x from 10.77.0.66 port 40000`), so fail2ban's stock
    sshd filter matches. (`sshd -E FILE`/`-e` writes bare messages, which that filter's
    optional-hostname prefix misreads: the first word is taken for a host name.) Nodes have no
    syslog socket of their own (/dev is the machine's), hence a pipe through `syslog-pipe`.
    Key authentication only; every login attempt from the lab fails unless you add keys."""

    def __init__(self, lab, node: str, port: int = 22, extra_config: str = ""):
        self.lab, self.node, self.port = lab, node, port
        self.dir = _private_dir(lab, f"{node}.sshd")
        self.log_path = os.path.join(self.dir, "auth.log")
        self.extra_config = extra_config
        self.proc = None

    def start(self, timeout: float = 15.0) -> "Sshd":
        key = os.path.join(self.dir, "host_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True,
                       capture_output=True, timeout=30)
        conf = os.path.join(self.dir, "sshd_config")
        with open(conf, "w") as f:
            f.write(f"Port {self.port}\nListenAddress 0.0.0.0\nListenAddress ::\n"
                    f"HostKey {key}\nPidFile none\nUsePAM no\nPubkeyAuthentication yes\n"
                    "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                    f"AuthorizedKeysFile {self.dir}/%u.authorized\nStrictModes no\n"
                    "PermitRootLogin no\nLogLevel INFO\n" + self.extra_config)
        open(self.log_path, "a").close()
        self.proc = self.lab.spawn(self.node, [
            sys.executable, TOOLS_PY, "syslog-pipe", "--host", self.node, "--ident", "sshd",
            "--out", self.log_path, "--", "/usr/sbin/sshd", "-D", "-e", "-f", conf],
            label="sshd")
        _wait(lambda: self.proc.poll() is not None or "Server listening" in self.log(),
              timeout, f"sshd in {self.node}")
        _check_started(self.lab, self.proc, "sshd")
        return self

    def log(self) -> str:
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        _stop_proc(self.proc)


def ssh_fail(lab, node: str, host: str, user: str = "nosuchuser", port: int = 22,
             timeout: float = 15.0) -> subprocess.CompletedProcess:
    """One failed ssh login from `node` (a real ssh client, BatchMode, no key offered):
    sshd logs `Invalid user <user> from <addr>` for an unknown user. Returns the
    CompletedProcess (exit 255, "Permission denied")."""
    return lab.run(node, [
        "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
        "-o", "PubkeyAuthentication=no", "-o", "IdentitiesOnly=yes", "-o",
        "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
        "-p", str(port), f"{user}@{host}", "true"], timeout=timeout)


def _cmd_syslog_pipe(a) -> int:
    """Run argv with stdout+stderr on a pipe; append each line to --out as
    `<host> <ident>[<pid>]: <line>` (no date: fail2ban reads it with datepattern {NONE})."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    def die_with_parent():  # PR_SET_PDEATHSIG: the daemon goes if this pipe is killed -9
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    p = subprocess.Popen(a.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, preexec_fn=die_with_parent)

    def term(signum, frame):
        if p.poll() is None:
            p.send_signal(signum)
    signal.signal(signal.SIGTERM, term)
    signal.signal(signal.SIGINT, term)
    with open(a.out, "ab", buffering=0) as out:
        for raw in iter(p.stdout.readline, b""):
            line = raw.rstrip(b"\r\n")
            out.write(f"{a.host} {a.ident}[{p.pid}]: ".encode() + line + b"\n")
    return p.wait()


# --------------------------------------------------------------------------------------------
# fail2ban 1.0.2
# --------------------------------------------------------------------------------------------

def recording_action(flush: bool = False) -> str:
    """A fail2ban action file that only records what fail2ban asked for, one line per call,
    in the file given as the action parameter `record`: `ban <ip> <restored>`, `unban <ip>`
    (and `flush` with flush=True: an action that defines actionflush gets one flush call
    instead of an unban per address when the jail stops or on `unban --all`)."""
    return ("[Definition]\nactionstart =\nactionstop =\nactioncheck =\n"
            'actionban = echo "ban <ip> <restored>" >> <record>\n'
            'actionunban = echo "unban <ip>" >> <record>\n'
            + ("actionflush = echo flush >> <record>\n" if flush else "")
            + "\n[Init]\nrecord = /dev/null\ntimeout = 10\n")


RECORDING_ACTION = recording_action()


class Fail2ban:
    """fail2ban-server in a node, one jail watching `logpath`, with a private config dir:

      DIR/fail2ban.conf            socket, pid, dbfile (sqlite, for restored bans), log file
      DIR/jail.conf                [DEFAULT] + the one jail (backend polling, datepattern ...)
      DIR/filter.d/                the package's filters (stock sshd.conf)
      DIR/action.d/<banaction>.conf  the caller's action file (copied)

    The jail's action is `<banaction>[k=v,...]` with action_params. Tags the action may use:
    <ip> <name> <bantime> <failures> <time> <bancount> <restored> <matches> <F-USER>.
    restart() keeps DIR (and the db): bans still running are replayed with <restored>=1."""

    def __init__(self, lab, node: str, logpath: str, action_conf: str,
                 banaction: str = "bulkhead", action_params: Optional[Dict[str, str]] = None,
                 jail: str = "sshd", filter: str = "sshd", maxretry: int = 3,
                 findtime: int = 60, bantime: int = 3, datepattern: str = "{NONE}",
                 ignoreip: Sequence[str] = ("127.0.0.1/8", "::1"), loglevel: str = "INFO",
                 extra_jail: str = "", dir: Optional[str] = None):
        self.lab, self.node, self.jail = lab, node, jail
        self.root = tool_root("fail2ban")
        self.dir = dir or _private_dir(lab, f"{node}.fail2ban")
        self.sock = os.path.join(self.dir, "fail2ban.sock")
        self.pidfile = os.path.join(self.dir, "fail2ban.pid")
        self.dbfile = os.path.join(self.dir, "fail2ban.sqlite3")
        self.logfile = os.path.join(self.dir, "fail2ban.log")
        self.proc = None
        self.startup_seconds = None
        os.makedirs(os.path.join(self.dir, "action.d"), exist_ok=True)
        if not os.path.isdir(os.path.join(self.dir, "filter.d")):
            shutil.copytree(os.path.join(self.root, "etc/fail2ban/filter.d"),
                            os.path.join(self.dir, "filter.d"))
        shutil.copy(action_conf, os.path.join(self.dir, "action.d", f"{banaction}.conf"))
        params = ",".join(f'{k}="{v}"' for k, v in (action_params or {}).items())
        action = f"{banaction}[{params}]" if params else banaction
        with open(os.path.join(self.dir, "fail2ban.conf"), "w") as f:
            f.write(f"[Definition]\nloglevel = {loglevel}\nlogtarget = {self.logfile}\n"
                    f"syslogsocket = auto\nallowipv6 = auto\nsocket = {self.sock}\n"
                    f"pidfile = {self.pidfile}\n"
                    f"dbfile = {self.dbfile}\ndbpurgeage = 1d\ndbmaxmatches = 10\n"
                    "[Thread]\n")
        with open(os.path.join(self.dir, "jail.conf"), "w") as f:
            f.write(f"[DEFAULT]\nignoreself = true\n"
                    f"ignoreip = {' '.join(ignoreip)}\n\n"
                    f"[{jail}]\nenabled = true\nfilter = {filter}\nbackend = polling\n"
                    f"logpath = {logpath}\ndatepattern = {datepattern}\n"
                    f"maxretry = {maxretry}\nfindtime = {findtime}\nbantime = {bantime}\n"
                    f"action = {action}\n{extra_jail}\n")

    def _env(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.path.join(self.root, "usr/lib/python3/dist-packages")
        env.pop("PYTHONHOME", None)
        return env

    def _bin(self, name: str) -> List[str]:
        # the package's scripts say #!/usr/bin/python3 (Debian's, which has what they import)
        return ["/usr/bin/python3", os.path.join(self.root, "usr/bin", name)]

    def start(self, timeout: float = 20.0) -> "Fail2ban":
        t0 = time.monotonic()
        self.proc = self.lab.spawn(self.node, self._bin("fail2ban-server") + [
            "-c", self.dir, "-s", self.sock, "-p", self.pidfile, "-x", "-f"],
            env=self._env(), label="fail2ban")

        def up():
            _check_started(self.lab, self.proc, "fail2ban-server")
            r = self.client("status", self.jail, check=False, timeout=10)
            return r.returncode == 0
        _wait(up, timeout, f"fail2ban jail {self.jail} in {self.node}", interval=0.1)
        self.startup_seconds = time.monotonic() - t0
        return self

    def client(self, *args: str, check: bool = True,
               timeout: float = 15.0) -> subprocess.CompletedProcess:
        """fail2ban-client -c DIR -s SOCK ARGS... in the node."""
        r = self.lab.run(self.node, self._bin("fail2ban-client") + [
            "-c", self.dir, "-s", self.sock] + list(args), env=self._env(), timeout=timeout)
        if check and r.returncode != 0:
            raise ToolError(f"fail2ban-client {' '.join(args)}: exit {r.returncode}: "
                            f"{r.stderr.strip()} {r.stdout.strip()}")
        return r

    def banned(self, jail: Optional[str] = None) -> List[str]:
        """Addresses the jail bans now (`get JAIL banip`)."""
        return self.client("get", jail or self.jail, "banip").stdout.split()

    def ban(self, jail: Optional[str], ip: str):
        """`set JAIL banip IP` (bans even addresses in ignoreip)."""
        self.client("set", jail or self.jail, "banip", ip)

    def unban(self, jail: Optional[str], ip: str):
        self.client("set", jail or self.jail, "unbanip", ip)

    def log(self) -> str:
        return self.lab.log_text(self.logfile)

    def stop(self, timeout: float = 15.0):
        """`fail2ban-client stop` (the jail's actions run actionstop / unban), then wait for
        the server; killed if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.client("stop", check=False, timeout=timeout)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_proc(self.proc)

    def restart(self, timeout: float = 20.0) -> "Fail2ban":
        self.stop()
        return self.start(timeout)


# --------------------------------------------------------------------------------------------
# CrowdSec 1.4.6, local API only
# --------------------------------------------------------------------------------------------

class CrowdSec:
    """`crowdsec -c DIR/config.yaml -no-cs`: the local API only, listening on the node's lab
    address, with a private sqlite db, no central API (no api.server.online_client section at
    all), no hub (the agent, which needs one, is off), no console, no prometheus endpoint.
    A machine account (for cscli and for alerts) is registered at start.

    cscli(...) runs the package's cscli in the node with this config; decisions_list()
    flattens `cscli decisions list -o json` (which lists alerts, each with its decisions).
    add_simulated_decision(): see its docstring."""

    def __init__(self, lab, node: str = "ctl", port: int = 8080, address: Optional[str] = None,
                 trusted_ips: Optional[Sequence[str]] = None, dir: Optional[str] = None):
        self.lab, self.node, self.port = lab, node, port
        self.address = address or lab.ip4(node)
        self.root = tool_root("crowdsec")
        self.dir = dir or _private_dir(lab, f"{node}.crowdsec")
        self.config = os.path.join(self.dir, "config.yaml")
        self.machine = "bulkhead-lab"
        self.password = secrets.token_hex(16)
        self.proc = None
        self.startup_seconds = None
        d = self.dir
        os.makedirs(os.path.join(d, "data"), exist_ok=True)
        trusted = list(trusted_ips or ["127.0.0.1", "::1", self.address])
        with open(self.config, "w") as f:
            f.write(f"""# private LAPI-only configuration (tests/lab/tools.py)
common:
  daemonize: false
  log_media: stdout
  log_level: info
  working_dir: .
config_paths:
  config_dir: {d}/
  data_dir: {d}/data/
  simulation_path: {d}/simulation.yaml
  hub_dir: {d}/hub/
  index_path: {d}/hub/.index.json
  notification_dir: {d}/notifications/
  plugin_dir: {self.root}/usr/lib/crowdsec/plugins/
cscli:
  output: human
  color: no
db_config:
  log_level: info
  type: sqlite
  db_path: {d}/data/crowdsec.db
  use_wal: false
  flush:
    max_items: 5000
    max_age: 7d
api:
  client:
    insecure_skip_verify: false
    credentials_path: {d}/local_api_credentials.yaml
  server:
    log_level: info
    listen_uri: {self._hostport()}
    profiles_path: {d}/profiles.yaml
    console_path: {d}/console.yaml
    trusted_ips: [{", ".join(json.dumps(t) for t in trusted)}]
prometheus:
  enabled: false
""")
        with open(os.path.join(d, "profiles.yaml"), "w") as f:
            f.write("name: default_ip_remediation\nfilters:\n"
                    " - Alert.Remediation == true && Alert.GetScope() == \"Ip\"\n"
                    "decisions:\n - type: ban\n   duration: 4h\non_success: break\n")
        with open(os.path.join(d, "simulation.yaml"), "w") as f:
            f.write("simulation: off\n")
        with open(os.path.join(d, "console.yaml"), "w") as f:
            f.write("share_manual_decisions: false\nshare_custom: false\n"
                    "share_tainted: false\n")

    def _hostport(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else \
            f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self._hostport()}"

    def start(self, timeout: float = 30.0) -> "CrowdSec":
        t0 = time.monotonic()
        self.proc = self.lab.spawn(self.node, [
            os.path.join(self.root, "usr/bin/crowdsec"), "-c", self.config, "-no-cs"],
            label="crowdsec")

        def listening():
            _check_started(self.lab, self.proc, "crowdsec")
            return "CrowdSec Local API listening" in self.log()
        _wait(listening, timeout, f"crowdsec LAPI in {self.node}", interval=0.05)
        self.startup_seconds = time.monotonic() - t0
        if not os.path.exists(os.path.join(self.dir, "local_api_credentials.yaml")):
            self.cscli("machines", "add", self.machine, "--password", self.password, "-f",
                       os.path.join(self.dir, "local_api_credentials.yaml"), "--url", self.url)
        return self

    def log(self) -> str:
        return self.lab.log_text(self.proc) if self.proc else ""

    def cscli(self, *args: str, json_out: bool = False, check: bool = True,
              timeout: float = 30.0):
        """cscli -c CONFIG ARGS... in the node. json_out: add `-o json`, return parsed."""
        argv = [os.path.join(self.root, "usr/bin/cscli"), "-c", self.config] + list(args)
        if json_out:
            argv += ["-o", "json"]
        r = self.lab.run(self.node, argv, timeout=timeout)
        if check and r.returncode != 0:
            raise ToolError(f"cscli {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        if json_out:
            return json.loads(r.stdout) if r.stdout.strip() else None
        return r

    def add_bouncer(self, name: str, key: Optional[str] = None) -> str:
        """`cscli bouncers add NAME -k KEY`; returns the key (random if not given)."""
        key = key or secrets.token_hex(16)
        self.cscli("bouncers", "add", name, "-k", key)
        return key

    def add_decision(self, ip: Optional[str] = None, range: Optional[str] = None,
                     duration: str = "1m", type: str = "ban", reason: Optional[str] = None):
        args = ["decisions", "add", "--duration", duration, "--type", type]
        args += ["--ip", ip] if ip else ["--range", range]
        if reason:
            args += ["--reason", reason]
        self.cscli(*args)

    def delete_decisions(self, ip: Optional[str] = None, range: Optional[str] = None,
                         id: Optional[int] = None, all: bool = False):
        args = ["decisions", "delete"]
        if ip:
            args += ["--ip", ip]
        if range:
            args += ["--range", range]
        if id is not None:
            args += ["--id", str(id)]
        if all:
            args.append("--all")
        self.cscli(*args)

    def decisions_list(self) -> List[dict]:
        """Active decisions (simulated ones included, marked), flattened from the alerts."""
        alerts = self.cscli("decisions", "list", json_out=True) or []
        return [dict(d, alert_id=a.get("id")) for a in alerts for d in a.get("decisions") or []]

    def machine_token(self, from_node: Optional[str] = None) -> str:
        st, body = http(self.lab, from_node or self.node, "POST",
                        self.url + "/v1/watchers/login",
                        body={"machine_id": self.machine, "password": self.password,
                              "scenarios": []})
        if st != 200:
            raise ToolError(f"watchers/login: {st} {body}")
        return body["token"]

    def add_simulated_decision(self, ip: str, duration: str = "1m",
                               scenario: str = "bulkhead/lab-simulated", type: str = "ban"):
        """Push an alert with a simulated decision through POST /v1/alerts as the machine,
        exactly what the agent does for a scenario that simulation.yaml puts in simulation
        mode. (cscli can not: `cscli decisions add` has no simulation flag, and `cscli
        simulation enable SCENARIO` needs the hub index, which this LAPI-only setup has
        none of; simulation only ever applies to the agent's own scenarios.) In 1.4.6 the
        decision is stored with simulated=true, listed by `cscli decisions list`, and left
        out of /v1/decisions and /v1/decisions/stream. Returns the alert ids."""
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        alert = {"capacity": 0, "events": [], "events_count": 1, "leakspeed": "0",
                 "message": f"simulated {type} on {ip} (bulkhead lab)", "scenario": scenario,
                 "scenario_hash": "", "scenario_version": "", "simulated": True,
                 "source": {"scope": "Ip", "value": ip, "ip": ip},
                 "start_at": now, "stop_at": now,
                 "decisions": [{"duration": duration, "origin": "crowdsec",
                                "scenario": scenario, "scope": "Ip", "type": type,
                                "value": ip, "simulated": True}]}
        st, body = http(self.lab, self.node, "POST", self.url + "/v1/alerts",
                        headers={"Authorization": "Bearer " + self.machine_token()},
                        body=[alert])
        if st != 201:
            raise ToolError(f"POST /v1/alerts: {st} {body}")
        return body

    def stop(self):
        _stop_proc(self.proc)


# --------------------------------------------------------------------------------------------
# Prometheus Alertmanager 0.25
# --------------------------------------------------------------------------------------------

class Alertmanager:
    """prometheus-alertmanager in a node, one route to a webhook receiver URL, clustering off.

    Debian's build reads its default notification template from the fixed path
    /usr/share/prometheus/alertmanager/default.tmpl and refuses to notify without it. The
    daemon therefore runs in a mount namespace of its own (unshare --mount, inside the node)
    where a read-only overlay adds the package's usr/share to /usr/share; nothing changes for
    the node's other processes or the machine.

    fire(labels, annotations) and resolve(labels) POST /api/v2/alerts from the node."""

    def __init__(self, lab, node: str, webhook_url: str, port: int = 9093,
                 address: Optional[str] = None, bearer: Optional[str] = None,
                 group_by: Sequence[str] = ("alertname",), group_wait: str = "0s",
                 group_interval: str = "1s", repeat_interval: str = "1h",
                 send_resolved: bool = True, dir: Optional[str] = None,
                 ca_file: Optional[str] = None):
        self.lab, self.node, self.port = lab, node, port
        self.address = address or lab.ip4(node)
        self.root = tool_root("prometheus-alertmanager")
        self.dir = dir or _private_dir(lab, f"{node}.alertmanager")
        self.config = os.path.join(self.dir, "alertmanager.yml")
        self.proc = None
        self.startup_seconds = None
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        hc = ""
        if bearer is not None or ca_file is not None:
            hc = "        http_config:\n"
        if bearer is not None:
            hc += (f"          authorization:\n"
                   f"            type: Bearer\n            credentials: {json.dumps(bearer)}\n")
        if ca_file is not None:  # an https:// webhook_url whose certificate this CA signed
            hc += f"          tls_config:\n            ca_file: {json.dumps(ca_file)}\n"
        with open(self.config, "w") as f:
            f.write(f"""route:
  receiver: hook
  group_by: {json.dumps(list(group_by))}
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: {repeat_interval}
receivers:
  - name: hook
    webhook_configs:
      - url: {json.dumps(webhook_url)}
        send_resolved: {str(send_resolved).lower()}
""" + hc)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def start(self, timeout: float = 30.0) -> "Alertmanager":
        share = os.path.join(self.root, "usr/share")
        binary = os.path.join(self.root, "usr/bin/prometheus-alertmanager")
        script = ('mount -t overlay bhlab-alertmanager -o "ro,lowerdir=$1:/usr/share" '
                  '/usr/share && shift && exec "$@"')
        t0 = time.monotonic()
        self.proc = self.lab.spawn(self.node, [
            "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", share,
            binary, f"--config.file={self.config}", f"--storage.path={self.dir}/data",
            f"--web.listen-address={self.address}:{self.port}", "--cluster.listen-address=",
            "--log.level=info"], label="alertmanager")

        def ready():
            _check_started(self.lab, self.proc, "alertmanager")
            if "Listening on" not in self.log():
                return False
            try:
                return http(self.lab, self.node, "GET", self.url + "/-/ready", timeout=2)[0] == 200
            except ToolError:
                return False
        _wait(ready, timeout, f"alertmanager in {self.node}", interval=0.05)
        self.startup_seconds = time.monotonic() - t0
        return self

    def log(self) -> str:
        return self.lab.log_text(self.proc) if self.proc else ""

    @staticmethod
    def now() -> str:
        return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")

    def post_alerts(self, alerts: List[dict]):
        st, body = http(self.lab, self.node, "POST", self.url + "/api/v2/alerts", body=alerts)
        if st != 200:
            raise ToolError(f"POST /api/v2/alerts: {st} {body}")

    def fire(self, labels: Dict[str, str], annotations: Optional[Dict[str, str]] = None,
             generator_url: str = ""):
        """A firing alert (no endsAt: Alertmanager resolves it itself after resolve_timeout,
        5 min, unless fired again)."""
        a = {"labels": labels, "annotations": annotations or {}}
        if generator_url:
            a["generatorURL"] = generator_url
        self.post_alerts([a])

    def resolve(self, labels: Dict[str, str], annotations: Optional[Dict[str, str]] = None):
        """The same alert with endsAt = now: resolved; the webhook gets status "resolved" at
        the group's next flush (within group_interval)."""
        self.post_alerts([{"labels": labels, "annotations": annotations or {},
                           "endsAt": self.now()}])

    def alerts(self) -> list:
        return http(self.lab, self.node, "GET", self.url + "/api/v2/alerts")[1]

    def stop(self):
        _stop_proc(self.proc)


# --------------------------------------------------------------------------------------------
# CLI (runs inside nodes)
# --------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="tools.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("http", help="one HTTP request; prints {status, headers, body} as JSON")
    p.add_argument("method")
    p.add_argument("url")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--data-stdin", action="store_true")
    p.add_argument("--timeout", type=float, default=10.0)
    p = sub.add_parser("webhook-receiver", help="record every request as a JSON line")
    p.add_argument("--listen", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--status", type=int, default=200)
    p = sub.add_parser("syslog-pipe", help="run ARGV, append its output as syslog lines")
    p.add_argument("--host", required=True)
    p.add_argument("--ident", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("argv", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    if a.cmd == "http":
        return _cmd_http(a)
    if a.cmd == "webhook-receiver":
        return _cmd_webhook_receiver(a)
    if a.cmd == "syslog-pipe":
        a.argv = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
        if not a.argv:
            ap.error("syslog-pipe needs a command after --")
        return _cmd_syslog_pipe(a)
    return 2


if __name__ == "__main__":
    sys.exit(main())
