# mypy: disable-error-code="no-untyped-call"
# (firmware/ is the untyped MicroPython subset; its calls are checked by the tests themselves)
"""Two of our phones (firmware.phone over the CPython shim) call each other through a real
Kamailio over TLS, in each SRTP suite, with digest users challenged with SHA-256 (RFC 8760, a
second Kamailio instance) and with MD5. Each side sends its own tone and must hear the other's;
the loopback capture shows only SRTP/SRTCP that decrypts with the keys of its direction and no
plain G.711 payload.
"""

from __future__ import annotations

import time

import pytest

from firmware.media import g711
from firmware.media.rtp import RtpPacket, parse_rtcp
from firmware.phone.io_cpython import PhoneIo, PhoneLoop
from firmware.phone.tone import dominant_frequency, sine_pcm
from firmware.sip import ua as sipua
from firmware.sip.sdp import PREFERENCE
from tests.interop.conftest import UdpCapture, oracle, phone
from tests.interop.test_kamailio import Kamailio

TALK_S = 1.0
ALICE_HZ, CAROL_HZ = 1000, 700


def _call(kam: Kamailio, suite: str | None, carol_calls: bool = False) -> None:
    kw = {"suites": (suite,)} if suite else {}
    a = phone(kam, "alice", "alicepw", **kw)
    c = phone(kam, "carol", "carolpw")
    loop = PhoneLoop(a, c)
    cap = UdpCapture({a.app.media_port, a.app.media_port + 1})
    try:
        a.app.register()
        c.app.register()
        loop.wait_event(a, sipua.Registered)
        loop.wait_event(c, sipua.Registered)
        caller, callee = (c, a) if carol_calls else (a, c)
        t0 = time.monotonic()
        cid = caller.app.call("sip:%s@127.0.0.1" % callee.app.config.user)
        inc = loop.wait_event(callee, sipua.IncomingCall)
        assert inc.call_id == cid and inc.caller == "sip:%s@127.0.0.1" % caller.app.config.user
        assert callee.app.status()["call"]["state"] == "incoming"
        callee.app.answer()
        ans_caller = loop.wait_event(caller, sipua.CallAnswered)
        setup_ms = (time.monotonic() - t0) * 1000
        ans_callee = loop.wait_event(callee, sipua.CallAnswered)
        ans_a, ans_c = (ans_callee, ans_caller) if carol_calls else (ans_caller, ans_callee)
        want = suite or "AEAD_AES_128_GCM"     # two of ours agree on the strongest
        for p in (a, c):
            st = p.app.status()["call"]
            assert st["suite"] == want and st["security"] == "locked" and st["state"] == "connected"
        assert ans_a.media.tx_key == ans_c.media.rx_key
        a.app.send_pcm(sine_pcm(ALICE_HZ, int(TALK_S * 1000)))
        c.app.send_pcm(sine_pcm(CAROL_HZ, int(TALK_S * 1000)))
        heard_a, heard_c = [], []
        end = time.monotonic() + TALK_S
        while time.monotonic() < end:
            loop.step(20)
            heard_a.append(a.app.read_pcm())
            heard_c.append(c.app.read_pcm())
        sa, sc = a.app.status()["call"]["media"], c.app.status()["call"]["media"]
        callee.app.hangup()
        assert loop.wait_event(caller, sipua.CallEnded).by == "remote"
        loop.wait_event(callee, sipua.CallEnded)
        loop.run_for(0.1)
        packets = cap.stop()
        fa, share_a = dominant_frequency(b"".join(heard_c))
        fc, share_c = dominant_frequency(b"".join(heard_a))
        assert abs(fa - ALICE_HZ) <= 25 and share_a > 0.5, (fa, share_a)
        assert abs(fc - CAROL_HZ) <= 25 and share_c > 0.5, (fc, share_c)
        for s in (sa, sc):
            assert s["rtcp_sent"] >= 1 and s["rtcp_received"] >= 1
            assert sum(s["dropped"].values()) == 0 and sum(s["rtcp_dropped"].values()) == 0
        # the wire: everything to and from alice's media ports is SRTP/SRTCP under the right key
        m = ans_a.media
        tx, rx = oracle(want, m.tx_key, m.tx_salt), oracle(want, m.rx_key, m.rx_salt)
        plain = {g711.ulaw_encode(sine_pcm(ALICE_HZ, 20)), b"\xff" * 160}
        n = {"out": 0, "in": 0, "rtcp": 0}
        rtp_port = a.app.media_port
        for sport, dport, data in packets:
            if sport == rtp_port:
                RtpPacket.parse(tx.unprotect(data))
                n["out"] += 1
            elif dport == rtp_port:
                plain.add(RtpPacket.parse(rx.unprotect(data)).payload)
                n["in"] += 1
            else:
                parse_rtcp((tx if sport == rtp_port + 1 else rx).unprotect_rtcp(data))
                n["rtcp"] += 1
        for pl in plain:
            for _, _, data in packets:
                assert pl[:24] not in data and pl[60:84] not in data
        assert n["out"] >= 0.6 * TALK_S * 50 and n["in"] >= 0.6 * TALK_S * 50 and n["rtcp"] >= 2
        print("%s %s, %s called: set-up %.1f ms, wire %r"
              % (kam.algorithm, want, caller.app.config.user, setup_ms, n))
    finally:
        cap.stop()
        loop.close()


@pytest.mark.parametrize("suite", PREFERENCE)
def test_two_phones_each_suite_sha256_digest(kam_sha256: Kamailio, suite: str) -> None:
    _call(kam_sha256, suite)


def test_two_phones_md5_digest_strongest_suite(kam_md5: Kamailio) -> None:
    _call(kam_md5, None)


@pytest.mark.parametrize("suite", PREFERENCE)
def test_two_phones_other_direction_each_suite(kam_md5: Kamailio, suite: str) -> None:
    """carol calls alice (alice's phone only allows `suite`): the answerer's choice, too."""
    _call(kam_md5, suite, carol_calls=True)


def test_phone_reconnects_after_losing_its_flow_and_receives_calls(kam_md5: Kamailio) -> None:
    """The TLS connection to the registrar breaks (here: our socket is shut down under the phone,
    as a NAT or server reset would leave it): the shim notices, opens a new verified flow after
    the backoff, registers again, and the next call reaches the phone over the new flow."""
    import socket as _socket

    a = phone(kam_md5, "alice", "alicepw")
    c = phone(kam_md5, "carol", "carolpw", auto_answer=True)
    loop = PhoneLoop(a, c)
    try:
        a.app.register()
        c.app.register()
        loop.wait_event(a, sipua.Registered)
        loop.wait_event(c, sipua.Registered)
        old_port = c.app.config.local_port
        c.flow.sock.shutdown(_socket.SHUT_RDWR)
        loop.run_until(lambda: not c.app.status()["registered"], 5, "carol notices the loss")
        assert any("connection lost" in ln for ln in c.app.log_lines)
        loop.wait_event(c, sipua.Registered, timeout_s=5)
        assert c.reconnects == 1 and c.app.config.local_port != old_port
        assert c.app.status()["tls_verified"]
        cid = a.app.call("sip:carol@127.0.0.1")
        assert loop.wait_event(a, sipua.CallAnswered).call_id == cid
        assert c.app.status()["call"]["security"] == "locked"
        a.app.hangup()
        loop.wait_event(c, sipua.CallEnded)
    finally:
        loop.close()


def test_console_lines_drive_the_phone_through_the_same_loop(kam_md5: Kamailio) -> None:
    """The device runs one select() for the console and the phone: lines read by a reader
    callback (here from a socketpair standing in for the serial port) call PhoneApp.call/hangup,
    and the status the console prints shows the call locked."""
    import json
    import socket as _socket

    a = phone(kam_md5, "alice", "alicepw")
    c = phone(kam_md5, "carol", "carolpw", auto_answer=True)
    loop = PhoneLoop(a, c)
    user_end, console_end = _socket.socketpair()
    printed: list[str] = []

    def on_line(now: int) -> None:
        for line in console_end.recv(4096).decode().splitlines():
            cmd, _, arg = line.partition(" ")
            if cmd == "call":
                a.app.call(arg, now)
            elif cmd == "hangup":
                a.app.hangup(now)
            elif cmd == "status":
                printed.append(json.dumps(a.app.status()))

    loop.add_reader(console_end, on_line)
    try:
        a.app.register()
        c.app.register()
        loop.wait_event(a, sipua.Registered)
        loop.wait_event(c, sipua.Registered)
        user_end.sendall(b"call sip:carol@127.0.0.1\n")
        loop.wait_event(a, sipua.CallAnswered)
        user_end.sendall(b"status\n")
        loop.run_until(lambda: bool(printed), 5, "status printed")
        st = json.loads(printed[0])
        assert st["call"]["state"] == "connected" and st["call"]["security"] == "locked"
        assert st["call"]["peer"] == "sip:carol@127.0.0.1" and st["registered"]
        user_end.sendall(b"hangup\n")
        assert loop.wait_event(c, sipua.CallEnded).by == "remote"
    finally:
        user_end.close()
        console_end.close()
        loop.close()
