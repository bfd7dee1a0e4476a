# firmware.phone.call.CallMedia: two real media cores, wired back to back with crossed keys (as
# SDES offer/answer gives them), exchange a tone in each suite and codec; bad packets injected into
# the live stream are dropped, counted and logged while the audio goes on. Time is an explicit
# `now`. Runs under pytest and MicroPython (engine="pure" there; "auto" picks libsrtp on CPython).
from firmware.media.rtp import RtpPacket, parse_rtcp
from firmware.media.srtp import SrtpSession
from firmware.phone.call import FRAME_BYTES, CallMedia
from firmware.phone.tone import dominant_frequency, sine_pcm
from firmware.sip.sdp import MediaParams
from tests.unit.firmware.check import raises

KA = bytes(range(16))
KB = bytes(range(100, 116))
SALT14_A, SALT14_B = bytes(range(20, 34)), bytes(range(50, 64))


def _params(suite, pt, port, tx, rx):
    salt_len = 12 if suite == "AEAD_AES_128_GCM" else 14
    return MediaParams("127.0.0.1", port, pt, 101, suite, tx[0], tx[1][:salt_len], rx[0],
                       rx[1][:salt_len])


def _pair(suite="AES_CM_128_HMAC_SHA1_80", pt=0, engine="pure", logs=None):
    a_keys, b_keys = (KA, SALT14_A), (KB, SALT14_B)
    log_a = (lambda line: logs.append(("a", line))) if logs is not None else None
    a = CallMedia(_params(suite, pt, 30002, a_keys, b_keys), 0, log=log_a, engine=engine,
                  rtcp_interval_ms=1000, jitter_delay_ms=40, name="a")
    b = CallMedia(_params(suite, pt, 30000, b_keys, a_keys), 0, engine=engine,
                  rtcp_interval_ms=1000, jitter_delay_ms=40, name="b")
    return a, b


def _run(a, b, start, end, wire=None, tamper=None):
    """Advance both cores from start to end ms in 10 ms steps, delivering each datagram at once."""
    now = start
    while now <= end:
        for src, dst in ((a, b), (b, a)):
            src.handle_timer(now)
            for kind, data, addr in src.datagrams_to_send():
                if wire is not None:
                    wire.append((src.name, kind, data))
                if tamper is not None:
                    data = tamper(src, kind, data)
                    if data is None:
                        continue
                dst.receive(data, ("127.0.0.1", 5000), now, kind == "rtcp")
        now += 10
    return now


def _tone_through(suite, pt, engine):
    a, b = _pair(suite, pt, engine)
    a.send_pcm(sine_pcm(1000, 400))
    b.send_pcm(sine_pcm(600, 400))
    wire = []
    _run(a, b, 0, 500, wire)
    heard_b = b.read_pcm()
    heard_a = a.read_pcm()
    # 20 ms pacing: 26 packets in 0..500 ms each way (one at t=0)
    assert a.sent_packets == b.sent_packets == 26
    assert len(heard_b) >= 20 * FRAME_BYTES and len(heard_a) >= 20 * FRAME_BYTES
    f_b, share_b = dominant_frequency(heard_b[:20 * FRAME_BYTES], step=50, max_samples=800)
    f_a, share_a = dominant_frequency(heard_a[:20 * FRAME_BYTES], step=50, max_samples=800)
    assert f_b == 1000 and share_b > 0.5, (f_b, share_b)
    assert f_a == 600 and share_a > 0.5, (f_a, share_a)
    assert a.dropped["auth"] == a.dropped["parse"] == a.dropped["replay"] == 0
    # what went over the "wire" is SRTP: the first RTP packet decrypts with a's key only
    first = [d for n, k, d in wire if n == "a" and k == "rtp"][0]
    oracle = SrtpSession(suite, KA, SALT14_A[:len(a.params.tx_salt)], "pure")
    pkt = RtpPacket.parse(oracle.unprotect(first))
    assert pkt.payload_type == pt and pkt.marker and pkt.ssrc == a.ssrc and len(pkt.payload) == 160
    return a, b


def test_tone_each_suite_pcmu_both_ways():
    for suite in ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM"):
        _tone_through(suite, 0, "pure")


def test_tone_pcma_default_engine():
    a, b = _tone_through("AES_CM_128_HMAC_SHA1_80", 8, "auto")
    assert a.stats()["codec"] == "PCMA"


def test_srtcp_reports_flow_both_ways():
    a, b = _pair()
    wire = []
    _run(a, b, 0, 2600, wire)
    assert a.rtcp_sent >= 2 and b.rtcp_received == a.rtcp_sent
    # b's receiver report about a's stream: nothing lost, highest sequence close to what a sent
    rep = a.remote_report
    assert rep is not None and rep.ssrc == a.ssrc and rep.packets_lost == 0
    # the SRTCP on the wire is a compound SR + SDES(CNAME) under a's key
    srtcp = [d for n, k, d in wire if n == "a" and k == "rtcp"][0]
    oracle = SrtpSession("AES_CM_128_HMAC_SHA1_80", KA, SALT14_A, "pure")
    pkts = parse_rtcp(oracle.unprotect_rtcp(srtcp))
    assert [p.packet_type for p in pkts] == [200, 202]
    assert pkts[0].ssrc == a.ssrc and a.cname.encode() in pkts[1].body
    a.close(2700)
    out = a.datagrams_to_send()
    assert len(out) == 1 and out[0][0] == "rtcp"
    assert [p.packet_type for p in parse_rtcp(oracle.unprotect_rtcp(out[0][1]))] == [200, 202, 203]
    assert a.get_timer() is None


def test_forged_replayed_malformed_dropped_counted_logged_call_goes_on():
    logs = []
    a, b = _pair("AES_CM_128_HMAC_SHA1_80", 0, "pure", logs)
    a.send_pcm(sine_pcm(1000, 1000))
    b.send_pcm(sine_pcm(600, 1000))
    captured = []
    held = []

    def tamper(src, kind, data):
        if src is b and kind == "rtp":
            captured.append(data)
            if len(captured) == 10:
                held.append(data)       # lost on the way: the forger gets to use it first
                return None
        return data

    now = _run(a, b, 0, 300, tamper=tamper)
    played_before = a.played_frames
    assert played_before > 5
    # replay: a packet a already accepted
    a.receive(captured[3], ("10.9.9.9", 4000), now)
    # forged: a packet a has not seen, one bit of its tag flipped
    forged = bytearray(held[0])
    forged[-1] ^= 1
    a.receive(bytes(forged), ("10.9.9.9", 4000), now)
    # forged: plain RTP injected by someone without the key (a fresh sequence number)
    a.receive(RtpPacket(0, 7, 0, 0x1234, b"\xff" * 160).serialize() + b"\x00" * 10,
              ("10.9.9.9", 4000), now)
    # malformed: too short, wrong version, truncated CSRC list, garbage SRTCP on the RTCP port
    for junk in (b"\x80", b"\x40" + b"\x00" * 30, b"\x8f\x00" + b"\x00" * 20):
        a.receive(junk, ("10.9.9.9", 4000), now)
    a.receive(b"\x81\xc8\x00\x01abcd", ("10.9.9.9", 4001), now, True)
    assert a.dropped["replay"] == 1 and a.dropped["auth"] == 2 and a.dropped["parse"] == 3, a.dropped
    assert a.rtcp_dropped["parse"] + a.rtcp_dropped["auth"] == 1
    lines = [ln for who, ln in logs]
    assert len(lines) == 7
    assert "dropped SRTP packet from 10.9.9.9:4000 (replay, 1 so far)" in lines[0]
    assert "(auth, 1 so far)" in lines[1] and "authentication tag mismatch" in lines[1]
    assert "(parse, 1 so far)" in lines[3] and "less than 12 bytes" in lines[3]
    assert "invalid version 1" in lines[4] and "truncated CSRC" in lines[5]
    assert "SRTCP packet from 10.9.9.9:4001" in lines[6]
    # the call goes on: audio keeps flowing and decodes to the right tone
    a.read_pcm()
    _run(a, b, now, now + 400)
    assert a.played_frames > played_before + 15
    f, share = dominant_frequency(a.read_pcm(), step=50, max_samples=800)
    assert f == 600 and share > 0.5


def test_undeclared_payload_type_dropped_dtmf_ignored():
    logs = []
    a, b = _pair(logs=logs)
    b.send_rtp(b"\xff" * 160)          # the negotiated codec: played
    b.payload_type = 101               # RFC 4733 telephone-event, negotiated: ignored quietly
    b.send_rtp(b"\x05\x0a\x00\xa0")
    b.payload_type = 9                 # G.722, never negotiated: dropped and logged
    b.send_rtp(b"\x00" * 160)
    for kind, data, addr in b.datagrams_to_send():
        a.receive(data, ("127.0.0.1", 30000), 0)
    assert a.telephone_events == 1 and a.dropped["payload_type"] == 1 and a.received_packets == 1
    assert "payload type 9 was not negotiated (expected 0)" in logs[-1][1]


def test_pacing_after_stall_skips_ahead_instead_of_bursting():
    a, b = _pair()
    a.handle_timer(0)
    a.handle_timer(5000)             # 5 s without a timer: no 250-packet burst
    out = [d for k, d, _ in a.datagrams_to_send() if k == "rtp"]
    assert len(out) == 2
    oracle = SrtpSession("AES_CM_128_HMAC_SHA1_80", KA, SALT14_A, "pure")
    p0, p1 = [RtpPacket.parse(oracle.unprotect(d)) for d in out]
    assert (p1.timestamp - p0.timestamp) & 0xFFFFFFFF == 8 * 5000 and p1.marker
    assert p1.sequence_number == (p0.sequence_number + 1) & 0xFFFF


def test_plain_rtp_only_in_insecure_mode_and_g711_only():
    p = MediaParams("127.0.0.1", 30000, 0, None, None, None, None, None, None)
    e = raises(ValueError, CallMedia, p, 0)
    assert "insecure test mode" in str(e)
    m = CallMedia(p, 0, insecure=True)
    m.handle_timer(0)
    kind, data, addr = m.datagrams_to_send()[0]
    assert kind == "rtp" and addr == ("127.0.0.1", 30000)
    assert RtpPacket.parse(data).payload == b"\xff" * 160     # µ-law silence, in the clear
    q = _params("AES_CM_128_HMAC_SHA1_80", 9, 30000, (KA, SALT14_A), (KB, SALT14_B))
    assert "not G.711" in str(raises(ValueError, CallMedia, q, 0))
    assert "even number" in str(raises(ValueError, m.send_pcm, b"\x00"))


def test_key_lifetime_reached_stops_sending_and_flags_the_call():
    # RFC 4568 §6.1: a's key may protect 10 SRTP packets; then a stops sending, logs once and
    # flags the call for hang-up (re-keying needs a re-INVITE this phone does not send)
    logs = []
    p = _params("AES_CM_128_HMAC_SHA1_80", 0, 30002, (KA, SALT14_A), (KB, SALT14_B))
    p.tx_lifetime = 10
    a = CallMedia(p, 0, log=logs.append, engine="pure", rtcp_interval_ms=100000, name="a")
    a.handle_timer(0)
    sent = []
    for now in range(0, 400, 20):
        a.handle_timer(now)
        sent.extend(k for k, d, addr in a.datagrams_to_send() if k == "rtp")
    assert len(sent) == 10 and a.sent_packets == 10
    assert a.key_expired == "master key lifetime of 10 packets reached (srtp_out; RFC 4568 §6.1): re-key"
    assert [ln for ln in logs if "stopped sending" in ln] == [
        "media a: stopped sending: " + a.key_expired]
