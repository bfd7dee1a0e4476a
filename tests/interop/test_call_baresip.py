# mypy: disable-error-code="no-untyped-call"
# (firmware/ is the untyped MicroPython subset; its calls are checked by the tests themselves)
"""Audio end to end between our phone (firmware.phone: PhoneApp + CallMedia over the CPython shim)
and a real baresip 1.0 (`mediaenc=srtp-mand`), through a real Kamailio over TLS (MD5 digest users
from db_text), in both call directions.

We send a 1 kHz tone; baresip's `sndfile` module records what it decoded and that recording must
be a 1 kHz tone. baresip plays a 600 Hz tone (`aufile`); we decode it and must hear 600 Hz. Each
SRTP suite we offer is keyed by baresip (it answers all three); baresip's own offer carries only
AES_CM_128_HMAC_SHA1_80, which we accept. Meanwhile a raw AF_PACKET capture on `lo` takes every
UDP datagram to or from our media ports: every one must be SRTP/SRTCP that decrypts with the keys
of its direction (pylibsrtp as the independent oracle), and no datagram may contain the plain
G.711 payload of any frame either side sent (no RTP in the clear on the wire).
"""

from __future__ import annotations

import hmac
import time
from typing import Any, Iterator

import pytest

from firmware.media import g711
from firmware.media.rtp import RtpPacket, parse_rtcp
from firmware.media.srtp import LABEL_RTCP_AUTH, derive_key
from firmware.phone.io_cpython import PhoneIo, PhoneLoop
from firmware.phone.tone import dominant_frequency, sine_pcm
from firmware.sip import ua as sipua
from firmware.sip.sdp import PREFERENCE
from tests.interop.conftest import BARESIP_TONE_HZ, Baresip, UdpCapture, oracle, phone, read_wav
from tests.interop.test_kamailio import Kamailio

TONE_HZ = 1000
TALK_S = 1.2


@pytest.fixture
def alice(kam_md5: Kamailio) -> Iterator[tuple[PhoneIo, PhoneLoop]]:
    p = phone(kam_md5, "alice", "alicepw")
    loop = PhoneLoop(p)
    try:
        p.app.register()
        loop.wait_event(p, sipua.Registered)
        yield p, loop
    finally:
        loop.close()


def talk(p: PhoneIo, loop: PhoneLoop, seconds: float) -> bytes:
    """Send our tone for `seconds` while collecting what we decode."""
    p.app.send_pcm(sine_pcm(TONE_HZ, int(seconds * 1000)))
    heard = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        loop.step(20)
        heard.append(p.app.read_pcm())
    return b"".join(heard)


def srtcp_tag32_verifies(data: bytes, m: Any) -> bool:
    """SRTCP whose last 4 octets are HMAC-SHA1 under the peer's RTCP auth key (RFC 3711 §4.3,
    label 4), truncated to 32 bits, over header || payload || E+index (§3.4)."""
    auth_key = derive_key(m.rx_key, m.rx_salt, LABEL_RTCP_AUTH, 20)
    return len(data) > 16 and bool(data[-8] & 0x80) and hmac.new(
        auth_key, data[:-4], "sha1").digest()[:4] == data[-4:]


def check_wire(packets: list[tuple[int, int, bytes]], p: PhoneIo, media: Any) -> dict[str, int]:
    """Every captured datagram decrypts with its direction's keys; none carries plain G.711."""
    m = media
    ours_rtp, ours_rtcp = p.app.media_port, p.app.media_port + 1
    tx = oracle(m.suite, m.tx_key, m.tx_salt)
    rx = oracle(m.suite, m.rx_key, m.rx_salt)
    tone_payload = g711.ulaw_encode(sine_pcm(TONE_HZ, 20))
    plain_payloads = {tone_payload, b"\xff" * 160}   # our tone frame and µ-law silence
    counts = {"rtp_out": 0, "rtp_in": 0, "rtcp_out": 0, "rtcp_in": 0, "tone_out": 0,
              "peer_plain_rtcp": 0, "peer_srtcp_tag32": 0}
    for sport, dport, data in packets:
        if sport == ours_rtp:
            pkt = RtpPacket.parse(tx.unprotect(data))
            counts["rtp_out"] += 1
            counts["tone_out"] += pkt.payload == tone_payload
        elif dport == ours_rtp:
            pkt = RtpPacket.parse(rx.unprotect(data))
            plain_payloads.add(pkt.payload)
            counts["rtp_in"] += 1
        elif sport == ours_rtcp:
            assert parse_rtcp(tx.unprotect_rtcp(data))[0].packet_type == 200
            counts["rtcp_out"] += 1
        elif dport == ours_rtcp:
            try:
                parse_rtcp(rx.unprotect_rtcp(data))
            except ValueError:
                if m.suite == "AES_CM_128_HMAC_SHA1_32" and srtcp_tag32_verifies(data, m):
                    # baresip 1.0 (libre) shortens the SRTCP tag to 32 bits with this suite too,
                    # where RFC 4568 §6.2 and libsrtp keep 80 bits: we drop these (counted)
                    counts["peer_srtcp_tag32"] += 1
                    continue
                # baresip 1.0 sends two RTCP packets outside SRTCP: an APP "PING" (RFC 3550 §6.7)
                # when the stream starts and BYE + SDES CNAME when it ends. They carry no media;
                # our side drops them as unauthenticated (counted and logged). Anything else
                # unprotected would fail here.
                types = [q.packet_type for q in parse_rtcp(data)]
                assert set(types) <= {202, 203, 204}, types
                counts["peer_plain_rtcp"] += 1
                continue
            counts["rtcp_in"] += 1
    # no RTP in the clear: no captured datagram contains 24 consecutive bytes of any plain payload
    needles = set()
    for pl in plain_payloads:
        for i in range(0, len(pl) - 24, 40):
            needles.add(pl[i:i + 24])
    for _, _, data in packets:
        for needle in needles:
            assert needle not in data, "plain G.711 on the wire"
    return counts


def finish(p: PhoneIo, loop: PhoneLoop, bs: Baresip, cid: str, we_hang_up: bool = True) -> None:
    if we_hang_up:
        p.app.hangup()
    else:
        bs.command("hangup")
    loop.wait_event(p, sipua.CallEnded)
    bs.wait_event("CALL_CLOSED", cid, lambda: loop.step(20))


def check_baresip_heard_our_tone(bs: Baresip, log_from: int, rtcp_ok: bool = True) -> None:
    dec = bs.recordings().get("dec")
    assert dec is not None, "baresip's sndfile wrote no recording"
    deadline = time.monotonic() + 3
    pcm = b""
    while time.monotonic() < deadline:
        try:
            pcm = read_wav(dec)
            if len(pcm) >= 8000:
                break
        except (EOFError, ValueError):
            pass
        time.sleep(0.05)
    f, share = dominant_frequency(pcm)
    assert abs(f - TONE_HZ) <= 25 and share > 0.5, (f, share, len(pcm))
    log = bs.log_text()[log_from:]
    assert "failed to decrypt RTP" not in log
    assert rtcp_ok == ("failed to decrypt RTCP" not in log)


@pytest.mark.parametrize("suite", PREFERENCE)
def test_we_call_baresip_audio_both_ways(kam_md5: Kamailio, baresip_bob: Baresip,
                                         suite: str) -> None:
    bs = baresip_bob
    bs.clear_recordings()
    log_from = len(bs.log_text())
    p = phone(kam_md5, "alice", "alicepw", suites=(suite,))
    loop = PhoneLoop(p)
    cap = UdpCapture({p.app.media_port, p.app.media_port + 1})
    try:
        p.app.register()
        loop.wait_event(p, sipua.Registered)
        cid = p.app.call("sip:bob@127.0.0.1")
        ans = loop.wait_event(p, sipua.CallAnswered)
        st = p.app.status()
        assert st["call"]["suite"] == suite and st["call"]["security"] == "locked"
        assert st["call"]["state"] == "connected" and st["call"]["peer"] == "sip:bob@127.0.0.1"
        assert bs.wait_event("CALL_MENC", cid, lambda: loop.step(20))["param"] == "0,audio," + suite
        heard = talk(p, loop, TALK_S)
        if suite == "AES_CM_128_HMAC_SHA1_32":
            # baresip 1.0 (libre) expects a 32-bit SRTCP tag with this suite and so refuses our
            # RFC 4568 §6.2 SRTCP (80-bit tag, as libsrtp makes it); RTP is unaffected
            bs.wait_log("failed to decrypt RTCP packet", 5)
        else:
            # baresip received and authenticated our SRTCP reports
            bs.wait_event("CALL_RTCP", cid, lambda: loop.step(20))
        stats = p.app.status()["call"]["media"]
        finish(p, loop, bs, cid)
        packets = cap.stop()
        f, share = dominant_frequency(heard)
        assert abs(f - BARESIP_TONE_HZ) <= 25 and share > 0.5, (f, share)
        check_baresip_heard_our_tone(bs, log_from, suite != "AES_CM_128_HMAC_SHA1_32")
        wire = check_wire(packets, p, ans.media)
        assert wire["rtp_out"] >= stats["sent"] - 2 and wire["tone_out"] >= 0.6 * TALK_S * 50
        assert wire["rtp_in"] >= 0.6 * TALK_S * 50 and wire["rtcp_out"] >= 1
        assert sum(stats["dropped"].values()) == 0
        print("%s: sent %d received %d, on the wire %r" % (suite, stats["sent"], stats["received"], wire))
    finally:
        cap.stop()
        loop.close()


def test_baresip_calls_us_audio_both_ways(kam_md5: Kamailio, baresip_bob: Baresip,
                                          alice: tuple[PhoneIo, PhoneLoop]) -> None:
    bs = baresip_bob
    p, loop = alice
    bs.clear_recordings()
    log_from = len(bs.log_text())
    cap = UdpCapture({p.app.media_port, p.app.media_port + 1})
    try:
        bs.command("dial", "sip:alice@127.0.0.1")
        inc = loop.wait_event(p, sipua.IncomingCall)
        st = p.app.status()["call"]
        assert st["state"] == "incoming" and st["peer"].startswith("sip:bob@127.0.0.1")
        assert st["security"] == "unlocked" and st["why"] == "media keys not negotiated yet"
        assert p.app.answer() == inc.call_id
        ans = loop.wait_event(p, sipua.CallAnswered)
        # baresip offers only AES_CM_128_HMAC_SHA1_80 (see the module docstring)
        assert ans.media.suite == "AES_CM_128_HMAC_SHA1_80"
        assert p.app.status()["call"]["security"] == "locked"
        bs.wait_event("CALL_ESTABLISHED", inc.call_id, lambda: loop.step(20))
        heard = talk(p, loop, TALK_S)
        bs.wait_event("CALL_RTCP", inc.call_id, lambda: loop.step(20))
        finish(p, loop, bs, inc.call_id, we_hang_up=False)
        assert p.app.last_call["by"] == "remote"
        packets = cap.stop()
        f, share = dominant_frequency(heard)
        assert abs(f - BARESIP_TONE_HZ) <= 25 and share > 0.5, (f, share)
        check_baresip_heard_our_tone(bs, log_from)
        wire = check_wire(packets, p, ans.media)
        assert wire["rtp_out"] > 0.6 * TALK_S * 50 and wire["rtp_in"] > 0.6 * TALK_S * 50
    finally:
        cap.stop()


def test_we_refuse_baresip_offer_without_a_suite_we_allow(kam_md5: Kamailio, baresip_bob: Baresip) -> None:
    """A phone restricted to AEAD_AES_128_GCM answers baresip's AES_CM_80-only offer 488 (fails
    closed) and stays registered."""
    bs = baresip_bob
    p = phone(kam_md5, "alice", "alicepw", suites=("AEAD_AES_128_GCM",))
    loop = PhoneLoop(p)
    try:
        p.app.register()
        loop.wait_event(p, sipua.Registered)
        bs.command("dial", "sip:alice@127.0.0.1")
        inc = loop.wait_event(p, sipua.IncomingCall)
        p.app.answer()
        end = loop.wait_event(p, sipua.CallEnded)
        assert end.status == 488 and end.call_id == inc.call_id
        bs.wait_event("CALL_CLOSED", inc.call_id, lambda: loop.step(20))
        assert p.app.status()["registered"] and p.app.status()["call"] is None
    finally:
        loop.close()
