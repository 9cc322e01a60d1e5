#!/usr/bin/env python3
"""Receivers for the controller's notifications, run inside a lab node by the tests.

  notify_sinks.py http PORT --out FILE
      An HTTP server (IPv4, every address) that answers 200 to every POST and appends one JSON
      line per request to FILE: {"path", "headers": {name: value}, "body"}.

  notify_sinks.py smtp PORT --out DIR --cert CERT --key KEY --user USER --password PASS
      An SMTP server (aiosmtpd, from python3-aiosmtpd: scripts/lab-tools.sh) that requires
      STARTTLS before anything, and AUTH (PLAIN or LOGIN) with USER and PASS, and writes each
      message to DIR/<n>.json: {"mail_from", "rcpt_tos", "data", "tls": true, "login": USER}.

Both print "listening" once ready and run until killed.
"""
import argparse
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_http(port: int, out: str) -> None:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode("utf-8", "replace")
            record = {"path": self.path, "headers": dict(self.headers.items()), "body": body}
            with lock, open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print("listening", flush=True)
    server.serve_forever()


def serve_smtp(port: int, out: str, cert: str, key: str, user: str, password: str) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    os.makedirs(out, exist_ok=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    count = [0]

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and
              auth_data.password.decode() == password)
        return AuthResult(success=ok, auth_data=auth_data.login.decode() if ok else None)

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            count[0] += 1
            record = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                      "data": envelope.content.decode("utf-8", "replace"),
                      "tls": session.ssl is not None,
                      "login": session.auth_data if session.authenticated else None}
            path = os.path.join(out, f"{count[0]}.json")
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                json.dump(record, f)
            os.replace(path + ".tmp", path)
            return "250 OK"

    controller = Controller(Handler(), hostname="0.0.0.0", port=port, tls_context=context,
                            require_starttls=True, authenticator=authenticator,
                            auth_require_tls=True, auth_required=True)
    controller.start()
    print("listening", flush=True)
    while True:
        time.sleep(3600)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["http", "smtp"])
    ap.add_argument("port", type=int)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--user")
    ap.add_argument("--password")
    a = ap.parse_args()
    if a.kind == "http":
        serve_http(a.port, a.out)
    else:
        serve_smtp(a.port, a.out, a.cert, a.key, a.user, a.password)
    return 0


if __name__ == "__main__":
    sys.exit(main())
