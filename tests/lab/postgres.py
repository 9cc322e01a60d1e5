"""A throw-away PostgreSQL 15 server inside a lab node, for the controller's --store
postgresql://... tests: Debian 12's postgresql-15 extracted by scripts/lab-tools.sh (never
installed), its cluster in the lab's temporary directory, listening on a unix socket only (no
TCP at all), run as nobody (PostgreSQL refuses root). Never the machine's own cluster.

    pg = LabPostgres(lab, "ctl")      # initdb + start, in node ctl
    url = pg.url()                    # postgresql://bulkhead@/postgres?host=...
    pg.kill9(); pg.start()            # a crash and a restart: the same data, the same socket
"""

import os
import pwd
import shutil
import signal
import subprocess
import time
from typing import Optional

from bhlab import Lab, wait_until
from tools import tool_root

BIN_DIR = os.environ.get("BULKHEAD_PG_BIN") or os.path.join(
    tool_root("postgresql-15"), "usr", "lib", "postgresql", "15", "bin")
PORT = 5432  # names the socket file only: listen_addresses is empty


class LabPostgres:
    def __init__(self, lab: Lab, node: str, database: str = "postgres"):
        for b in ("initdb", "postgres"):
            if not os.access(os.path.join(BIN_DIR, b), os.X_OK):
                raise FileNotFoundError(f"{BIN_DIR}/{b} missing: run scripts/lab-tools.sh")
        self.lab = lab
        self.node = node
        self.database = database
        self.dir = os.path.join(lab.tmpdir, f"postgres-{node}")
        self.data = os.path.join(self.dir, "data")
        self.proc: Optional[subprocess.Popen] = None
        nobody = pwd.getpwnam("nobody")
        os.makedirs(self.dir, mode=0o700)
        os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
        # the lab's temporary directory must be passable for nobody to reach the socket dir
        os.chmod(lab.tmpdir, os.stat(lab.tmpdir).st_mode | 0o011)
        r = lab.run(node, self._as_nobody(
            os.path.join(BIN_DIR, "initdb"), "-D", self.data, "-U", "bulkhead", "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync"), timeout=120,
            env={"LC_ALL": "C", "TZ": "UTC", "PATH": "/usr/bin:/bin"})
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed ({r.returncode}): {r.stdout}\n{r.stderr}")
        self.start()

    @staticmethod
    def _as_nobody(*argv: str):
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]

    def start(self, timeout: float = 30.0):
        self.proc = self.lab.spawn(self.node, self._as_nobody(
            os.path.join(BIN_DIR, "postgres"), "-D", self.data, "-k", self.dir,
            "-c", "listen_addresses=", "-c", f"port={PORT}", "-c", "jit=off",
            "-c", "recovery_init_sync_method=syncfs", "-c", "max_connections=100",
            "-c", "shared_buffers=32MB"), label="postgres",
            env={"LC_ALL": "C", "TZ": "UTC", "PATH": "/usr/bin:/bin"})
        sock = os.path.join(self.dir, f".s.PGSQL.{PORT}")
        since = int(time.time()) - 1
        wait_until(lambda: self.proc.poll() is not None or self._ready(sock, since), timeout,
                   interval=0.1, desc="postgres accepting connections")
        if self.proc.poll() is not None:
            raise RuntimeError("postgres exited at start:\n" + self.lab.log_text(self.proc))

    def _ready(self, sock: str, since: int) -> bool:
        if not os.path.exists(sock):
            return False
        # postmaster.pid: line 3 the start time (epoch seconds), line 8 "ready" once it accepts
        # connections; a crashed server's file says "ready" too, with its older start time
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                lines = f.read().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and int(lines[2]) >= since and lines[7].strip() == "ready"

    def url(self) -> str:
        from urllib.parse import quote
        return f"postgresql://bulkhead@/{self.database}?host={quote(self.dir, safe='')}&port={PORT}"

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0):
        """SIGINT: fast shutdown (rolls back open transactions, checkpoints)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)

    def kill9(self):
        """A crash: the postmaster and every backend killed at once (crash recovery at the next
        start)."""
        if not self.proc or self.proc.poll() is not None:
            return
        # the node has its own pid namespace: nobody's postgres processes there are this server's
        self.lab.run(self.node, ["pkill", "-KILL", "-u", "nobody", "-x", "postgres"], timeout=10)
        self.proc.wait(timeout=15)
        wait_until(lambda: self.lab.run(self.node, ["pgrep", "-u", "nobody", "-x", "postgres"],
                                        timeout=10).returncode == 1,
                   10, interval=0.1, desc="every postgres process gone")

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
