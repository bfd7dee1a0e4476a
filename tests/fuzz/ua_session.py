"""Replay of a UA session for fuzz_ua.py and its regression vectors (no atheris here): records
    op (1 byte) | dt (u16, ms the clock advances first) | length (u16) | data
with ops  r: receive(data)   t: handle_timer   R: register   u: unregister   c: call(data as URI)
          a: answer the ringing call   h: hang up the first live call   l: connection lost.
Randomness comes from a counter, so a recorded session (capture_sip.py) replays into the same
transactions and dialogs."""
import struct

from firmware import compat
from firmware.sip import ua as sipua
from firmware.sip.message import SipParseError
from firmware.sip.sdp import LocalMedia
from tests.unit.firmware.tpm_replay_scenario import counter_random

USER, DOMAIN, PASSWORD = "alice", "127.0.0.1", "alicepw"   # as in tests/data/sip/kamailio
START = 1000000
MAX_OPS = 64


def new_ua():
    """A UA for a replay; the caller has put counter randomness in place (see replay)."""
    cfg = sipua.UaConfig(USER, DOMAIN, PASSWORD, "TLS", local_host="127.0.0.1", local_port=5061)
    return sipua.UserAgent(cfg, START)


def records(data):
    pos = 0
    while pos + 5 <= len(data):
        op = data[pos:pos + 1]
        dt, n = struct.unpack_from(">HH", data, pos + 1)
        body = data[pos + 5:pos + 5 + n]
        pos += 5 + n
        yield op, dt, body


def encode(op, dt, body=b""):
    return op + struct.pack(">HH", min(dt, 0xFFFF), len(body)) + body


def replay(data, on_event=None, strict=True):
    """Run the session; with `strict`, an "internal error" MessageRejected (the UA's backstop for
    a bug reached by remote input, ua.py) is raised as AssertionError so the fuzzer sees the bug.
    The counter replaces compat.random_bytes only for the replay: left in place it made every later
    TPM session nonce and salt in the same process a predictable counter."""
    saved = compat.random_bytes
    compat.random_bytes = counter_random()
    try:
        return _replay(data, on_event, strict)
    finally:
        compat.random_bytes = saved


def _replay(data, on_event, strict):
    ua = new_ua()
    now = START
    for i, (op, dt, body) in enumerate(records(data)):
        if i >= MAX_OPS:
            break
        now += dt
        if op == b"r":
            ua.receive(body, now)
        elif op == b"t":
            ua.handle_timer(now)
        elif op == b"R":
            ua.register(now)
        elif op == b"u":
            ua.unregister(now)
        elif op == b"c":
            target = body.decode("utf-8", "replace") or "sip:bob@127.0.0.1"
            try:
                ua.call(target, LocalMedia("127.0.0.1", 40000), now)
            except SipParseError:
                pass    # the console refuses such a URI before it reaches the UA
        elif op == b"a":
            for c in list(ua.calls.values()):
                if c.state == "incoming":
                    ua.answer(c.call_id, LocalMedia("127.0.0.1", 40000), now)
                    break
        elif op == b"h":
            for c in list(ua.calls.values()):
                if c.state not in ("ended", "cancelling"):
                    ua.hangup(c.call_id, now)
                    break
        elif op == b"l":
            ua.connection_lost(now)
        ua.data_to_send()
        while True:
            e = ua.next_event()
            if e is None:
                break
            if on_event is not None:
                on_event(op, e)
            if strict and isinstance(e, sipua.MessageRejected) and e.reason.startswith("internal error"):
                raise AssertionError("UA bug reached by remote input: %s" % e.reason)
        ua.status()
        ua.get_timer()
    return ua
