"""The SIP user agent as a stateful target (firmware/sip/ua.py UserAgent over TLS framing): one
input is a session, a sequence of records
    op (1 byte) | dt (u16, ms the clock advances first) | length (u16) | data
with ops  r: receive(data)   t: handle_timer   R: register   u: unregister   c: call(data as URI)
          a: answer the ringing call   h: hang up the first live call   l: connection lost.
Randomness (tags, branches, Call-IDs, SDES keys) comes from a counter, so a session recorded from
a UA with the same counter (tests/fuzz/capture_sip.py, real Kamailio + baresip traffic) replays
into the same transactions and dialogs. UserAgent.receive and handle_timer document no exception
(bad input is answered 400/488 or dropped, and reported as a MessageRejected event)."""
import struct

import _common  # noqa: F401
import atheris
import runner

with atheris.instrument_imports(include=["firmware"]):
    from firmware import compat
    from firmware.sip import ua as sipua
    from firmware.sip.message import SipParseError
    from firmware.sip.sdp import LocalMedia

from tests.unit.firmware.tpm_replay_scenario import counter_random

USER, DOMAIN, PASSWORD = "alice", "127.0.0.1", "alicepw"   # as in tests/data/sip/kamailio
START = 1000000
MAX_OPS = 64


def new_ua():
    compat.random_bytes = counter_random()
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


def one_input(data):
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
        while ua.next_event() is not None:
            pass
        ua.status()
        ua.get_timer()


if __name__ == "__main__":
    runner.main("ua", one_input, ())
