#!/usr/bin/env python3
"""bhlab holder: PID 1 of a lab node (see bhlab.py).

Runs as `python3 holder.py bhlab-holder <hostname>` inside
`ip netns exec <ns> unshare --pid --mount --uts --fork --mount-proc --propagation private`.
Disables IPv6 DAD in the node's network namespace, sets the hostname, mounts a private tmpfs
on /run (in the node's own mount namespace only), prints "ready", then reaps orphans until
killed (killing it kills every process of the node).
"""
import ctypes
import os
import signal
import socket
import sys


def main():
    name = sys.argv[2]
    for c in ("all", "default", "eth0"):
        try:
            with open(f"/proc/sys/net/ipv6/conf/{c}/accept_dad", "w") as f:
                f.write("0")
        except OSError:
            pass
    socket.sethostname(name)
    libc = ctypes.CDLL(None, use_errno=True)
    ms_nosuid, ms_nodev = 2, 4
    if libc.mount(b"tmpfs", b"/run", b"tmpfs", ms_nosuid | ms_nodev, b"mode=0755") != 0:
        print(f"error mount /run: {os.strerror(ctypes.get_errno())}", flush=True)
        sys.exit(1)
    for d in ("/run/sshd", "/run/lock"):
        os.makedirs(d, 0o755, exist_ok=True)
    sigs = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    print("ready", flush=True)
    fd = os.open("/dev/null", os.O_RDWR)
    os.dup2(fd, 0)
    os.dup2(fd, 1)
    while True:
        while True:  # reap every orphan re-parented to us
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        si = signal.sigwaitinfo(sigs)
        if si.si_signo != signal.SIGCHLD:
            sys.exit(0)


if __name__ == "__main__":
    main()
