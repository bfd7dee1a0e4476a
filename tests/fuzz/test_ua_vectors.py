"""Stateful UA inputs found by fuzz_ua.py, byte for byte (tests/fuzz/vectors/ua-*.bin, replayed by
ua_session.py: a real Kamailio exchange with one field changed by the fuzzer). The UA documents no
exception from receive(): bad input from the network is reported (MessageRejected, or the
registration/call fails with the reason), never raised into the console loop."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ua_session  # noqa: E402
from firmware.sip import ua as sipua  # noqa: E402


def _replay(name):
    with open(os.path.join(HERE, "vectors", name), "rb") as f:
        data = f.read()
    events = []
    ua_session.replay(data, lambda op, e: events.append((op, e)), strict=False)
    return events


def test_invite_407_with_a_bad_auth_scheme_ends_the_call():
    # Kamailio's 407 to our INVITE with "Digest" changed to "Diges|": SipParseError escaped receive()
    events = _replay("ua-invite-407-bad-scheme.bin")
    op, last = events[-1]
    assert op == b"r" and isinstance(last, sipua.CallEnded), events
    assert last.status == 407


def test_register_401_with_an_unsupported_qop_fails_the_registration():
    # Kamailio's 401 to REGISTER with qop="a{th": digest.authorization's ValueError escaped receive()
    events = _replay("ua-register-401-qop.bin")
    op, last = events[-1]
    assert op == b"r" and isinstance(last, sipua.RegistrationFailed), events
    assert last.status == 401 and "no supported digest challenge" in last.reason
