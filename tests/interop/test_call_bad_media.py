# mypy: disable-error-code="no-untyped-call"
# (firmware/ is the untyped MicroPython subset; its calls are checked by the tests themselves)
"""Bad media sent INTO a live call: our phone talks to a real baresip through a real Kamailio over
TLS; meanwhile a test socket sends malformed RTP, SRTP with forged tags, SRTP and SRTCP from
nobody with a key, and replays of baresip's real packets (taken off the wire with the loopback
capture) to our media ports. Every one is dropped, counted under its reason and logged; the call
(state, suite, padlock, audio) and the registration are the same afterwards, and baresip never
sees the call end. Both SRTP engines: libsrtp (the default on CPython) and the pure one (the
MicroPython path).
"""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from firmware.media.rtp import RtpPacket
from firmware.phone.io_cpython import PhoneIo, PhoneLoop
from firmware.phone.tone import dominant_frequency
from firmware.sip import ua as sipua
from tests.interop.conftest import BARESIP_TONE_HZ, Baresip, UdpCapture, phone
from tests.interop.test_kamailio import Kamailio


def _listen(loop: PhoneLoop, p: PhoneIo, seconds: float) -> bytes:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        loop.step(20)
        out.append(p.app.read_pcm())
    return b"".join(out)


@pytest.mark.parametrize("engine", ["auto", "pure"])
def test_bad_media_dropped_counted_logged_call_and_registration_intact(
        kam_md5: Kamailio, baresip_bob: Baresip, engine: str) -> None:
    bs = baresip_bob
    p = phone(kam_md5, "alice", "alicepw", suites=("AES_CM_128_HMAC_SHA1_80",), engine=engine)
    loop = PhoneLoop(p)
    cap = UdpCapture({p.app.media_port})
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.1", 0))
    aport = attacker.getsockname()[1]
    try:
        p.app.register()
        loop.wait_event(p, sipua.Registered)
        cid = p.app.call("sip:bob@127.0.0.1")
        loop.wait_event(p, sipua.CallAnswered)
        bs.wait_event("CALL_ESTABLISHED", cid, lambda: loop.step(20))
        _listen(loop, p, 0.5)
        before = p.app.status()
        assert before["registered"] and before["call"]["security"] == "locked"
        assert before["call"]["media"]["engine"] == ("pure" if engine == "pure" else "libsrtp")
        d0 = dict(before["call"]["media"]["dropped"])
        r0 = dict(before["call"]["media"]["rtcp_dropped"])
        real = [data for sport, dport, data in cap.packets if dport == p.app.media_port]
        assert len(real) >= 10
        target = ("127.0.0.1", p.app.media_port)
        rtcp_target = ("127.0.0.1", p.app.media_port + 1)

        malformed = [b"", b"\x80", b"\x40" + bytes(40), b"\x8f\x00" + bytes(30),
                     b"\x90\x00" + bytes(10) + b"\x00\x00\xff\xff" + bytes(20),
                     RtpPacket(0, 1, 2, 3, b"").serialize()]     # header only: no room for a tag
        forged = []
        for data in real[-3:]:
            # baresip's real packet moved 40 sequence numbers ahead: the tag no longer verifies
            f = bytearray(data)
            seq = (struct.unpack_from("!H", f, 2)[0] + 40) & 0xFFFF
            struct.pack_into("!H", f, 2, seq)
            forged.append(bytes(f))
        flipped = bytearray(real[-1])
        flipped[-1] ^= 0x80
        struct.pack_into("!H", flipped, 2, (struct.unpack_from("!H", flipped, 2)[0] + 41) & 0xFFFF)
        forged.append(bytes(flipped))
        # plain RTP with a 10-byte "tag" from someone without the key, on the call's SSRC
        ssrc = struct.unpack_from("!I", real[-1], 8)[0]
        ahead = (struct.unpack_from("!H", real[-1], 2)[0] + 100) & 0xFFFF
        forged.append(RtpPacket(0, ahead, 1234, ssrc, b"\xff" * 160).serialize() + os.urandom(10))
        replayed = real[-8:-3]       # already received and played: replays
        srtcp_forged = [b"\x80\xc8\x00\x06" + os.urandom(24) + b"\x80\x00\x00\x07" + os.urandom(10)]

        for data in malformed + forged + replayed:
            attacker.sendto(data, target)
        for data in srtcp_forged:
            attacker.sendto(data, rtcp_target)
        after_audio = _listen(loop, p, 0.8)

        after = p.app.status()
        d1 = after["call"]["media"]["dropped"]
        r1 = after["call"]["media"]["rtcp_dropped"]
        # the empty datagram is dropped too: it cannot even be an RTP header
        assert d1["parse"] - d0["parse"] == len(malformed), d1
        assert d1["auth"] - d0["auth"] == len(forged), d1
        assert d1["replay"] - d0["replay"] == len(replayed), d1
        assert r1["auth"] - r0["auth"] == len(srtcp_forged), r1
        # the call and the registration are untouched; audio goes on
        assert after["registered"] and after["call"]["call_id"] == cid
        for key in ("state", "suite", "security", "peer", "direction"):
            assert after["call"][key] == before["call"][key]
        assert after["call"]["media"]["received"] >= before["call"]["media"]["received"] + 20
        f, share = dominant_frequency(after_audio)
        assert abs(f - BARESIP_TONE_HZ) <= 25 and share > 0.5
        # and each drop was logged with where it came from and why
        ours = [ln for ln in p.app.log_lines if "from 127.0.0.1:%d " % aport in ln]
        assert any("(parse, " in ln and "less than 12 bytes" in ln for ln in ours)
        assert any("(auth, " in ln and "authentication tag mismatch" in ln for ln in ours)
        assert any("(replay, " in ln and "replay" in ln for ln in ours)
        assert any("dropped SRTCP packet" in ln and "(auth, " in ln for ln in ours)
        assert len(ours) == len(malformed) + len(forged) + len(replayed) + len(srtcp_forged)
        print("\n".join(ours[:4]))
        # baresip still has the call
        bs.pending.extend(bs.events())
        assert not [e for e in bs.pending if e.get("type") == "CALL_CLOSED" and e.get("id") == cid]
        p.app.hangup()
        assert loop.wait_event(p, sipua.CallEnded).by == "local"
        bs.wait_event("CALL_CLOSED", cid, lambda: loop.step(20))
        assert p.app.status()["registered"]
    finally:
        attacker.close()
        cap.stop()
        loop.close()
