#!/usr/bin/env python3
"""Notifications in the lab: a real controller and agent; a webhook (HMAC-signed JSON), a
Slack-compatible webhook and email over SMTP (STARTTLS and AUTH, aiosmtpd from Debian's
package: scripts/lab-tools.sh) as channels, their receivers in the lab's service node.

The webhook receivers are down when the host is isolated: the deliveries wait, retried with
backoff; the controller is killed (SIGKILL) and started again, the receivers come up, and
each event arrives once per channel, signed, with the audit rows saying so. The email arrived
over TLS, authenticated. `notify channels` shows the queues, `notify test` reaches a channel
now and names why when it cannot. Root only.
"""

import email
import email.policy
import glob
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import time
import unittest

LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab")
sys.path.insert(0, os.path.abspath(LAB_DIR))

from bhlab import Lab, case_failed, wait_until  # noqa: E402
from fleet import REPO, Fleet  # noqa: E402
from tools import TOOLS_DIR  # noqa: E402

IS_ROOT = os.geteuid() == 0
SINKS = os.path.join(os.path.abspath(LAB_DIR), "notify_sinks.py")
HTTP_PORT = 8088
SMTP_PORT = 8025
SECRET = "lab-hmac-secret"
SMTP_USER, SMTP_PASSWORD = "bulkhead", "lab-smtp-password"


def smtp_pythonpath():
    """aiosmtpd and its python3-public, as scripts/lab-tools.sh extracted them; None if not."""
    paths = [os.path.join(TOOLS_DIR, p, "usr", "lib", "python3", "dist-packages")
             for p in ("python3-aiosmtpd", "python3-public")]
    return ":".join(paths) if all(os.path.isdir(p) for p in paths) else None


def private(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


@unittest.skipUnless(IS_ROOT, "the lab needs root")
class NotificationsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pythonpath = smtp_pythonpath()
        if cls.pythonpath is None:
            raise unittest.SkipTest(f"aiosmtpd is not in {TOOLS_DIR} (scripts/lab-tools.sh)")
        cls.lab = Lab(hosts=1)
        cls.addClassCleanup(cls.lab.close)
        tmp = cls.lab.tmpdir
        cls.service = cls.lab.ip4("service")
        # The SMTP server's certificate, for the lab's service address; the channel trusts it.
        cls.smtp_cert, cls.smtp_key = os.path.join(tmp, "smtp.crt"), os.path.join(tmp, "smtp.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj",
                        "/CN=lab smtp", "-addext", f"subjectAltName=IP:{cls.service}",
                        "-keyout", cls.smtp_key, "-out", cls.smtp_cert],
                       check=True, capture_output=True, timeout=30)
        policies = os.path.join(tmp, "policies")
        shutil.copytree(os.path.join(REPO, "policies"), policies)
        channels = os.path.join(policies, "notifications")
        os.makedirs(channels)
        secret = private(os.path.join(tmp, "hook.key"), SECRET + "\n")
        password = private(os.path.join(tmp, "smtp.pass"), SMTP_PASSWORD + "\n")
        base = f"http://{cls.service}:{HTTP_PORT}"
        with open(os.path.join(channels, "siem.yaml"), "w") as f:
            f.write(f"name: siem\ntype: webhook\nurl: {base}/hook\nsecret_file: {secret}\n"
                    "allow_insecure: true\n")
        with open(os.path.join(channels, "soc.yaml"), "w") as f:
            f.write(f"name: soc\ntype: slack\nurl: {base}/slack\nkinds: [isolate, release]\n"
                    "allow_insecure: true\n")
        with open(os.path.join(channels, "mail.yaml"), "w") as f:
            f.write(f"name: mail\ntype: email\nsmtp: smtp://{cls.service}:{SMTP_PORT}\n"
                    f"ca_file: {cls.smtp_cert}\nusername: {SMTP_USER}\n"
                    f"password_file: {password}\nfrom: bulkhead@lab.example\n"
                    "to: [soc@lab.example]\nmin_severity: warning\n")
        cls.fleet = Fleet(cls.lab, policy_dir=policies)
        cls.fleet.start_controller()
        cls.fleet.start_agent("h1")
        cls.fleet.wait_online(["h1"], timeout=20)
        cls.http_log = os.path.join(tmp, "http-sink.jsonl")
        cls.mail_dir = os.path.join(tmp, "mail")

    def tearDown(self):
        if case_failed(self):
            self.lab.mark_failed()
            print(self.lab.dump_logs(), file=sys.stderr)

    def ok(self, *args, timeout=60):
        rc, doc, err = self.fleet.cli(*args, timeout=timeout)
        self.assertEqual(rc, 0, f"{args}: {err} {doc}")
        return doc

    def start_sink(self, kind: str):
        argv = [sys.executable, SINKS, kind]
        env = None
        if kind == "http":
            argv += [str(HTTP_PORT), "--out", self.http_log]
        else:
            argv += [str(SMTP_PORT), "--out", self.mail_dir, "--cert", self.smtp_cert, "--key",
                     self.smtp_key, "--user", SMTP_USER, "--password", SMTP_PASSWORD]
            env = dict(os.environ, PYTHONPATH=self.pythonpath)
        port = HTTP_PORT if kind == "http" else SMTP_PORT
        p = self.lab.spawn("service", argv, env=env, label=f"{kind}-sink")
        wait_until(lambda: p.poll() is not None or
                   self.lab.tcp_probe("jump", self.service, port),
                   15, interval=0.1, desc=f"{kind} sink listening")
        self.assertIsNone(p.poll(), self.lab.log_text(p))
        return p

    def posts(self, path: str):
        if not os.path.exists(self.http_log):
            return []
        with open(self.http_log, encoding="utf-8") as f:
            return [r for r in map(json.loads, f) if r["path"] == path]

    def mails(self):
        out = []
        for p in sorted(glob.glob(os.path.join(self.mail_dir, "*.json"))):
            with open(p, encoding="utf-8") as f:
                out.append(json.load(f))
        return out

    def notify_rows(self):
        rows = self.ok("audit", "--limit", "500")["records"]
        return [r for r in rows if r["action"] == "notify"]

    def test_events_reach_every_channel_once_signed_across_a_restart(self):
        self.start_sink("smtp")
        self.ok("isolate", "h1", "--reason", "webshell found")
        # Email is up: it arrives. The webhooks are down: they wait, retried.
        mails = wait_until(self.mails, 30, interval=0.2, desc="the isolate email")
        wait_until(lambda: any(c["name"] == "siem" and int(c.get("pending", 0)) >= 1
                               for c in self.ok("notify", "channels")["channels"]),
                   20, interval=0.3, desc="the webhook's delivery pending")
        self.assertEqual(self.posts("/hook"), [])

        # The controller dies with deliveries queued; the receivers come up; it starts again.
        self.fleet.kill_controller()
        self.start_sink("http")
        self.fleet.start_controller()
        hooks = wait_until(lambda: self.posts("/hook"), 60, interval=0.2,
                           desc="the webhook delivered after the restart")
        slack = wait_until(lambda: self.posts("/slack"), 60, interval=0.2,
                           desc="the slack message delivered after the restart")

        # The webhook: the event, signed (t=UNIX,v1=HMAC-SHA256(secret, "UNIX.BODY")).
        hook = hooks[0]
        event = json.loads(hook["body"])
        self.assertEqual((event["schema"], event["kind"], event["severity"], event["target"],
                          event["reason"], event["outcome"], event["actor"]),
                         ("bulkhead-notification/1", "isolate", "warning", "h1",
                          "webshell found", "ok", "admin"), event)
        headers = {k.lower(): v for k, v in hook["headers"].items()}
        self.assertEqual(headers["x-bulkhead-event"], "isolate")
        self.assertEqual(headers["x-bulkhead-delivery"], event["id"])
        fields = dict(p.split("=", 1) for p in headers["x-bulkhead-signature"].split(","))
        want = hmac.new(SECRET.encode(), f"{fields['t']}.{hook['body']}".encode(),
                        hashlib.sha256).hexdigest()
        self.assertEqual(fields["v1"], want, "the signature does not check")
        self.assertLess(abs(int(fields["t"]) - time.time()), 120)
        # Slack: one text message.
        text = json.loads(slack[0]["body"])["text"]
        self.assertIn("isolate h1", text)
        self.assertIn("webshell found", text)
        # The email: over TLS, authenticated, with the event's fields.
        self.assertEqual(len(mails), 1, mails)
        mail = mails[0]
        self.assertTrue(mail["tls"], mail)
        self.assertEqual(mail["login"], SMTP_USER)
        self.assertEqual(mail["rcpt_tos"], ["soc@lab.example"])
        msg = email.message_from_string(mail["data"], policy=email.policy.default)
        self.assertIn("[warning] isolate: isolate h1", msg["Subject"])
        body = msg.get_content()
        self.assertIn("webshell found", body)
        self.assertIn(f"audit row: {event['audit_id']}", body)

        # Once per channel, each audited.
        time.sleep(3)   # a duplicate would have come by now (retries are 2 s apart at first)
        self.assertEqual([json.loads(h["body"])["id"] for h in self.posts("/hook")],
                         [event["id"]])
        self.assertEqual(len(self.posts("/slack")), 1)
        self.assertEqual(len(self.mails()), 1)
        delivered = sorted((r["target"], r["outcome"]) for r in self.notify_rows()
                           if r["reason"] == event["id"])
        self.assertEqual(delivered, [("mail", "ok"), ("siem", "ok"), ("soc", "ok")])
        channels = {c["name"]: c for c in self.ok("notify", "channels")["channels"]}
        self.assertEqual(int(channels["siem"].get("pending", 0)), 0, channels)
        self.assertEqual(channels["soc"]["kinds"], ["isolate", "release"], channels)
        self.assertEqual(channels["siem"]["destination"], f"http://{self.service}:{HTTP_PORT}")

        # A test reaches the channel now; an unknown one is named.
        tested = self.ok("notify", "test", "siem")
        self.assertEqual(tested["channel"]["name"], "siem")
        wait_until(lambda: any(json.loads(h["body"])["kind"] == "test"
                               for h in self.posts("/hook")), 10, desc="the test event")
        rc, _, err = self.fleet.cli("notify", "test", "pager")
        self.assertNotEqual(rc, 0)
        self.assertIn('unknown notification channel "pager"', err)

        # The isolated host's agent dies: the channels hear that it went offline (the email
        # too: a warning); slack wants isolate and release only.
        self.fleet.kill_agent("h1")
        offline = wait_until(
            lambda: [e for e in (json.loads(h["body"]) for h in self.posts("/hook"))
                     if e["kind"] == "host-offline"], 30, interval=0.2,
            desc="the host-offline event")
        self.assertEqual((offline[0]["target"], offline[0]["severity"], offline[0]["actor"]),
                         ("h1", "warning", "controller"), offline)
        self.assertIn("isolated host offline", offline[0]["detail"])
        wait_until(lambda: len(self.mails()) == 2, 30, interval=0.2, desc="the offline email")
        self.fleet.start_agent("h1")
        self.fleet.wait_online(["h1"], timeout=20)

        # The release reaches the channels that want it (the email wants warning and above).
        self.ok("release", "h1", "--reason", "rebuilt")
        wait_until(lambda: len(self.posts("/slack")) == 2, 30, interval=0.2,
                   desc="the release on slack")
        self.assertEqual(len(self.mails()), 2)


if __name__ == "__main__":
    unittest.main()
