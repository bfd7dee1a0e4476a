# Property-based tests over the media parsers: any bytes give a packet or a typed error
# (ParseError / SrtpError), never another exception; what serialize() writes parses back equal;
# any change to a protected packet is refused.
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.errors import ParseError
from firmware.media.jitter import JitterBuffer
from firmware.media.rtp import (
    RtcpPacket, RtcpReceiverReport, RtcpReportBlock, RtcpSenderReport, RtpPacket, parse_rtcp,
    serialize_rtcp)
from firmware.media.srtp import SrtpError, SrtpSession

PROFILES = [("AES_CM_128_HMAC_SHA1_80", 14), ("AES_CM_128_HMAC_SHA1_32", 14),
            ("AEAD_AES_128_GCM", 12)]
try:
    import pylibsrtp  # noqa: F401
    ENGINES = ["pure", "libsrtp"]
except ImportError:
    ENGINES = ["pure"]

u32 = st.integers(0, 2**32 - 1)


@st.composite
def rtp_packets(draw: st.DrawFn) -> RtpPacket:
    has_ext = draw(st.booleans())
    return RtpPacket(
        payload_type=draw(st.integers(0, 127)), sequence_number=draw(st.integers(0, 65535)),
        timestamp=draw(u32), ssrc=draw(u32), payload=draw(st.binary(max_size=300)),
        marker=draw(st.booleans()), csrc=draw(st.lists(u32, max_size=15)),
        extension_profile=draw(st.integers(0, 65535)) if has_ext else None,
        extension=draw(st.binary(max_size=40).map(lambda b: b[:len(b) // 4 * 4])) if has_ext
        else b"",
        padding_size=draw(st.integers(0, 255)))


@given(st.binary(max_size=200))
def test_rtp_parse_any_bytes(data: bytes) -> None:
    try:
        p = RtpPacket.parse(data)
    except ParseError:
        return
    again = RtpPacket.parse(p.serialize())
    assert (again.payload, again.csrc, again.extension, again.padding_size) == \
        (p.payload, p.csrc, p.extension, p.padding_size)


@given(rtp_packets())
def test_rtp_round_trip(p: RtpPacket) -> None:
    data = p.serialize()
    q = RtpPacket.parse(data)
    assert q.serialize() == data
    assert (q.payload_type, q.sequence_number, q.timestamp, q.ssrc, q.marker, q.csrc,
            q.extension_profile, q.extension, q.payload, q.padding_size) == \
        (p.payload_type, p.sequence_number, p.timestamp, p.ssrc, p.marker, p.csrc,
         p.extension_profile, p.extension, p.payload, p.padding_size)


@given(st.binary(max_size=200))
def test_rtcp_parse_any_bytes(data: bytes) -> None:
    try:
        packets = parse_rtcp(data)
    except ParseError:
        return
    assert len(serialize_rtcp(packets)) == len(data)


blocks = st.builds(RtcpReportBlock, u32, st.integers(0, 255), st.integers(-2**23, 2**23 - 1),
                   u32, u32, u32, u32)
words = st.binary(max_size=40).map(lambda b: b[:len(b) // 4 * 4])


@given(st.lists(st.one_of(
    st.builds(RtcpSenderReport, u32, st.integers(0, 2**64 - 1), u32, u32, u32,
              st.lists(blocks, max_size=3), words),
    st.builds(RtcpReceiverReport, u32, st.lists(blocks, max_size=3), words),
    st.builds(RtcpPacket, st.sampled_from([202, 203, 204, 205, 206]), st.integers(0, 31),
              words)), min_size=1, max_size=4))
def test_rtcp_round_trip(packets: list[RtcpPacket]) -> None:
    data = serialize_rtcp(packets)
    assert serialize_rtcp(parse_rtcp(data)) == data


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("profile,salt_len", PROFILES)
@settings(max_examples=60)
@given(data=st.binary(max_size=120))
def test_srtp_unprotect_any_bytes(profile: str, salt_len: int, engine: str, data: bytes) -> None:
    s = SrtpSession(profile, bytes(range(16)), bytes(salt_len), engine=engine)
    for fn in (s.unprotect, s.unprotect_rtcp):
        with pytest.raises((ParseError, SrtpError)):
            fn(data)
    assert sum(s.dropped.values()) == 2


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("profile,salt_len", PROFILES)
@settings(max_examples=60)
@given(p=rtp_packets(), where=st.integers(0, 10**6), bit=st.integers(0, 7),
       rtcp_body=words)
def test_srtp_any_bit_flip_is_refused(profile: str, salt_len: int, engine: str, p: RtpPacket,
                                      where: int, bit: int, rtcp_body: bytes) -> None:
    key, salt = bytes(range(16)), bytes(range(salt_len))
    tx = SrtpSession(profile, key, salt, engine=engine)
    rx = SrtpSession(profile, key, salt, engine=engine)
    rtcp = struct.pack("!BBHI", 0x80, 201, 1 + len(rtcp_body) // 4, p.ssrc) + rtcp_body
    for protect, unprotect, plain in ((tx.protect, rx.unprotect, p.serialize()),
                                      (tx.protect_rtcp, rx.unprotect_rtcp, rtcp)):
        sealed = bytearray(protect(plain))
        sealed[where % len(sealed)] ^= 1 << bit
        with pytest.raises((ParseError, SrtpError)):
            unprotect(bytes(sealed))
        sealed[where % len(sealed)] ^= 1 << bit
        assert unprotect(bytes(sealed)) == plain


@given(st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 50)), max_size=60))
def test_jitter_buffer_never_plays_twice_or_backwards(arrivals: list[tuple[int, int]]) -> None:
    jb = JitterBuffer(capacity=8, delay_ms=20)
    now = 0
    played: list[object] = []

    class P:
        def __init__(self, seq: int) -> None:
            self.sequence_number = seq

    for seq, dt in arrivals:
        now += dt
        jb.push(P(seq), now)
        while (q := jb.pop(now)) is not None:
            played.append(q)
    # Each accepted packet comes out at most once; nothing comes out that was not accepted.
    assert len({id(q) for q in played}) == len(played)
    assert jb.played == len(played) <= jb.received
    assert len(jb) + jb.played + jb.overflow + jb.lost >= jb.received
