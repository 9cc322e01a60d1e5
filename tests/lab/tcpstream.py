#!/usr/bin/env python3
"""TCP traffic helper for the bulkhead lab (Python 3 standard library only). IPv4 and IPv6.

  tcpstream.py serve PORT [--bind ADDR] [--report FILE]
      Listen (dual-stack on :: by default), echo everything back, one thread per connection.
      --report: JSON {"state": "listening", "accepted": n, "open": n, "bytes": n, "peers": [...]}
      written when listening and on every change.

  tcpstream.py stream HOST PORT [--interval-ms 5] [--report FILE] [--reconnect]
                     [--user-timeout-ms 1000] [--echo-timeout-ms 1000] [--connect-timeout 2]
                     [--duration SECONDS]
      Connect, then every interval write a 16-byte message and read its echo (bounded by
      --echo-timeout-ms). TCP_USER_TIMEOUT makes unacknowledged writes fail fast. Records every
      failure and the first error with a wall-clock timestamp in the JSON report (rewritten
      atomically about every 50 ms and at exit). Runs until killed (SIGTERM/SIGINT: final
      report, exit 0) or --duration. Without --reconnect it exits 1 after the first error;
      with it, it reconnects and keeps counting.

      report: {"state": connecting|streaming|dead|stopped|done, "host", "port", "pid",
               "started", "connected_at", "connects", "writes", "echoes", "failures",
               "first_error": {"time", "op", "error", "echoes_before"} | null,
               "errors": [last 20 of the same], "last_ok", "max_gap_ms", "updated"}

  tcpstream.py probe HOST PORT [--timeout 1] [--echo]
      Exit 0 if a new TCP connection succeeds (and, with --echo, a message comes back),
      1 otherwise (reason on stderr).
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time

MSG_LEN = 16


def write_json(path, obj):
    if not path:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def family_of(host):
    try:
        socket.inet_pton(socket.AF_INET6, host)
        return socket.AF_INET6
    except OSError:
        pass
    try:
        socket.inet_pton(socket.AF_INET, host)
        return socket.AF_INET
    except OSError:
        pass
    return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]


def connect(host, port, timeout, user_timeout_ms=None):
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if user_timeout_ms:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(user_timeout_ms))
        s.settimeout(timeout)
        s.connect((host, port))
        return s
    except BaseException:
        s.close()
        raise


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by peer (EOF)")
        buf += chunk
    return buf


def errstr(e):
    if isinstance(e, socket.timeout):
        return "TimeoutError: timed out"
    return f"{type(e).__name__}: {e}"


# ---- serve ---------------------------------------------------------------------------------

def serve(a):
    if a.bind:
        fam = family_of(a.bind)
        ls = socket.socket(fam, socket.SOCK_STREAM)
        addr = a.bind
    else:
        try:
            ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            addr = "::"
        except OSError:
            ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            addr = "0.0.0.0"
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, a.port))
    ls.listen(512)
    lock = threading.Lock()
    st = {"state": "listening", "pid": os.getpid(), "port": a.port, "accepted": 0, "open": 0,
          "bytes": 0, "peers": []}

    def report():
        with lock:
            write_json(a.report, st)

    def handle(c, peer):
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
                with lock:
                    st["bytes"] += len(d)
        except OSError:
            pass
        finally:
            c.close()
            with lock:
                st["open"] -= 1
            report()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    report()
    print(f"listening on [{addr}]:{a.port}", flush=True)
    while True:
        c, peer = ls.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with lock:
            st["accepted"] += 1
            st["open"] += 1
            st["peers"] = (st["peers"] + [f"{peer[0]}:{peer[1]}"])[-50:]
        report()
        threading.Thread(target=handle, args=(c, peer), daemon=True).start()


# ---- stream --------------------------------------------------------------------------------

def stream(a):
    st = {"state": "connecting", "host": a.host, "port": a.port, "pid": os.getpid(),
          "started": time.time(), "connected_at": None, "connects": 0, "writes": 0,
          "echoes": 0, "failures": 0, "first_error": None, "errors": [], "last_ok": None,
          "max_gap_ms": 0.0, "updated": None}
    last_write = [0.0]

    def report(force=False):
        now = time.monotonic()
        if force or now - last_write[0] >= 0.05:
            last_write[0] = now
            st["updated"] = time.time()
            write_json(a.report, st)

    stop = {"sig": None}

    def on_sig(signum, _):
        stop["sig"] = signum

    signal.signal(signal.SIGTERM, on_sig)
    signal.signal(signal.SIGINT, on_sig)

    def fail(op, e):
        err = {"time": time.time(), "op": op, "error": errstr(e), "echoes_before": st["echoes"]}
        st["failures"] += 1
        if st["first_error"] is None:
            st["first_error"] = err
        st["errors"] = (st["errors"] + [err])[-20:]
        report(force=True)
        if a.report is None:
            print(f"{op}: {err['error']}", file=sys.stderr, flush=True)

    interval = a.interval_ms / 1000.0
    end = time.monotonic() + a.duration if a.duration else None
    seq = 0
    report(force=True)
    while stop["sig"] is None and (end is None or time.monotonic() < end):
        try:
            s = connect(a.host, a.port, a.connect_timeout, a.user_timeout_ms)
        except OSError as e:
            fail("connect", e)
            if not a.reconnect:
                st["state"] = "dead"
                report(force=True)
                return 1
            time.sleep(max(interval, 0.05))
            continue
        st["connects"] += 1
        st["connected_at"] = time.time()
        st["state"] = "streaming"
        report(force=True)
        s.settimeout(a.echo_timeout_ms / 1000.0)
        prev_ok = time.monotonic()
        nxt = time.monotonic()
        try:
            while stop["sig"] is None and (end is None or time.monotonic() < end):
                seq += 1
                msg = (b"%015d\n" % seq)[-MSG_LEN:]
                op = "send"
                s.sendall(msg)
                st["writes"] += 1
                op = "recv"
                got = recv_exact(s, MSG_LEN)
                if got != msg:
                    raise ValueError(f"echo mismatch: sent {msg!r} got {got!r}")
                now = time.monotonic()
                st["echoes"] += 1
                st["last_ok"] = time.time()
                st["max_gap_ms"] = max(st["max_gap_ms"], (now - prev_ok) * 1000.0)
                prev_ok = now
                report()
                nxt += interval
                delay = nxt - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    nxt = time.monotonic()
        except (OSError, ValueError) as e:
            s.close()
            fail(op, e)
            if not a.reconnect:
                st["state"] = "dead"
                report(force=True)
                return 1
            st["state"] = "connecting"
            continue
        s.close()
    st["state"] = "stopped" if stop["sig"] is not None else "done"
    report(force=True)
    return 0


# ---- probe ---------------------------------------------------------------------------------

def probe(a):
    try:
        s = connect(a.host, a.port, a.timeout, user_timeout_ms=int(a.timeout * 1000))
        if a.echo:
            s.settimeout(a.timeout)
            s.sendall(b"probe-0000000000\n"[-MSG_LEN:])
            recv_exact(s, MSG_LEN)
        s.close()
    except (OSError, ValueError) as e:
        print(f"probe {a.host} {a.port}: {errstr(e)}", file=sys.stderr)
        return 1
    print(f"probe {a.host} {a.port}: ok")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tcpstream.py")
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("serve")
    p.add_argument("port", type=int)
    p.add_argument("--bind")
    p.add_argument("--report")
    p = sub.add_parser("stream")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--interval-ms", type=float, default=5.0)
    p.add_argument("--report")
    p.add_argument("--reconnect", action="store_true")
    p.add_argument("--user-timeout-ms", type=int, default=1000)
    p.add_argument("--echo-timeout-ms", type=int, default=1000)
    p.add_argument("--connect-timeout", type=float, default=2.0)
    p.add_argument("--duration", type=float)
    p = sub.add_parser("probe")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--echo", action="store_true")
    a = ap.parse_args(argv)
    return {"serve": serve, "stream": stream, "probe": probe}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
