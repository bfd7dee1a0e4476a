"""Record real SIP traffic as fuzz seeds: our UA core (alice, randomness from the same counter as
ua_session.py) registers at a real Kamailio over TLS, calls a real baresip (bob, auto-answer) and
hangs up, is called by baresip and answers, baresip hangs up, alice unregisters. Every call into
the UA is recorded with its timing, so ua_session.py replays the session into the same transactions
and dialogs. Writes tests/fuzz/corpus/{ua,sip_message,sdp,sdes}/kb-*. Needs root, kamailio and
baresip (as tests/interop):   PYTHONPATH=. .venv/bin/python tests/fuzz/capture_sip.py
"""
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runner  # noqa: E402

from firmware import compat  # noqa: E402
from firmware.sip import ua as sipua  # noqa: E402
from firmware.sip.io_cpython import Runner, TlsFlow, now_ms  # noqa: E402
from firmware.sip.message import StreamFramer, parse_message  # noqa: E402
from firmware.sip.sdp import LocalMedia  # noqa: E402
from host_tools.siplab import Baresip, Kamailio, make_pki  # noqa: E402
from tests.unit.firmware.tpm_replay_scenario import counter_random  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ua_session  # noqa: E402


class Recorder:
    def __init__(self, ua):
        self.records = []
        self.received = []
        self.sent = []
        self.last = None
        self.depth = 0
        for op, name in (("r", "receive"), ("t", "handle_timer"), ("R", "register"),
                         ("u", "unregister"), ("l", "connection_lost")):
            self._wrap(ua, op, name)
        orig_send = ua.data_to_send

        def data_to_send():
            out = orig_send()
            self.sent.extend(out)
            return out

        ua.data_to_send = data_to_send

    def _wrap(self, ua, op, name):
        orig = getattr(ua, name)

        def call(*args):
            if self.depth == 0:    # unregister() calls register(): record the outer call only
                now = args[-1] if op != "R" else args[0]
                body = bytes(args[0]) if op == "r" else b""
                if op == "r":
                    self.received.append(body)
                self.add(op, now, body)
            self.depth += 1
            try:
                return orig(*args)
            finally:
                self.depth -= 1

        setattr(ua, name, call)

    def add(self, op, now, body=b""):
        dt = 0 if self.last is None else now - self.last
        self.last = now
        self.records.append(ua_session.encode(op.encode(), dt, body))


def main():
    d = Path(tempfile.mkdtemp(prefix="fuzzcap-"))
    make_pki(d)
    kam = Kamailio(d, "MD5")
    bs = None
    r = Runner()
    try:
        bs = Baresip(d / "bs", "bob", "bobpw", kam)
        compat.random_bytes = counter_random()
        cfg = sipua.UaConfig(ua_session.USER, ua_session.DOMAIN, ua_session.PASSWORD, "TLS")
        alice = sipua.UserAgent(cfg, now_ms())
        rec = Recorder(alice)
        r.add("alice", alice, TlsFlow("127.0.0.1", kam.tls_port, kam.ca))
        alice.register(now_ms())
        r.wait_for("alice", sipua.Registered)
        now = now_ms()
        rec.add("c", now, b"sip:bob@127.0.0.1")
        alice.call("sip:bob@127.0.0.1", LocalMedia("127.0.0.1", 40000), now)
        ans = r.wait_for("alice", sipua.CallAnswered, timeout_s=10)
        time.sleep(0.3)
        now = now_ms()
        rec.add("h", now)
        alice.hangup(ans.call_id, now)
        r.wait_for("alice", sipua.CallEnded, timeout_s=10)
        bs.command("dial", "sip:alice@127.0.0.1")
        inc = r.wait_for("alice", sipua.IncomingCall, timeout_s=10)
        now = now_ms()
        rec.add("a", now)
        alice.answer(inc.call_id, LocalMedia("127.0.0.1", 40000), now)
        r.wait_for("alice", sipua.CallAnswered)
        time.sleep(0.5)
        bs.command("hangup")
        r.wait_for("alice", sipua.CallEnded, timeout_s=10)
        alice.unregister(now_ms())
        r.wait_for("alice", sipua.Unregistered)
    finally:
        r.close()
        if bs is not None:
            bs.stop()
        kam.stop()
        shutil.rmtree(d, ignore_errors=True)
    # the first record's dt is relative to ua_session.START; the fuzz clock starts there too
    write("ua", b"".join(rec.records))
    framer = StreamFramer()
    messages = [raw for kind, raw in framer.feed(b"".join(rec.received)) if kind == "message"]
    messages += [m for m in rec.sent if m.strip()]
    for raw in messages:
        write("sip_message", raw)
        msg = parse_message(raw, True)
        if msg.get("Content-Type") == "application/sdp" and msg.body:
            write("sdp", msg.body)
            for line in msg.body.decode().split("\r\n"):
                if line.startswith("a=crypto:"):
                    write("sdes", line[len("a=crypto:"):].encode())
    print("%d records, %d messages" % (len(rec.records), len(messages)))


def write(target, data):
    d = os.path.join(runner.CORPUS, target)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "kb-" + hashlib.sha1(data).hexdigest()[:12])
    with open(path, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
