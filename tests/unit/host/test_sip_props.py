# mypy: disable-error-code="no-untyped-call"
# (firmware/ is the untyped MicroPython subset; its calls are checked by the tests themselves)
"""Hypothesis properties over the SIP and SDP parsers and the UA core's handling of bad input.

Any bytes give either a parsed message or a typed error (SipParseError / SdpError), never another
exception; mutations of valid messages likewise; and malformed input fed into a registered UA in a
call leaves its registration and call state intact.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.sip import digest, sdp
from firmware.sip.message import SipParseError, StreamFramer, parse_message
from firmware.sip.sdp import (Crypto, NegotiationError, SdpError, SessionDescription, create_answer,
                              parse_rtpmap)
from tests.unit.firmware import test_sip_sdp, test_sip_ua
from tests.unit.firmware.test_sip_message import REGISTER, _data_dir
from tests.unit.firmware.test_sip_ua import events
from firmware.sip.sdp import LocalMedia

VALID = [REGISTER] + [open(_data_dir() + "valid/" + n, "rb").read()
                      for n in sorted(os.listdir(_data_dir() + "valid"))]
SDP = test_sip_sdp.OFFER.encode()
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_typed(data: bytes, stream: bool = False) -> None:
    try:
        m = parse_message(data, stream)
    except SipParseError as e:
        assert str(e)
        assert e.status in (400, 505)
        return
    # whatever parsed must serialise and parse back to the same start line and headers
    again = parse_message(m.serialize(), True)
    assert again.serialize() == m.serialize()


@st.composite
def mutated(draw: Any, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == 0 and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            data[pos:pos] = draw(st.sampled_from([b" ", b";", b",", b"\r\n", b"\"", b"<", b">", b":",
                                                   b"%", b"\x00", b"@", b"=", b"\t", b"9" * 12]))
        elif op == 2 and data:
            end = min(len(data), pos + draw(st.integers(1, 20)))
            del data[pos:end]
        else:
            data = data[:pos]
    return bytes(data)


@FAST
@given(st.binary(max_size=600))
def test_random_bytes_parse_or_typed_error(data: bytes) -> None:
    _parse_or_typed(data)
    _parse_or_typed(b"INVITE sip:a@b SIP/2.0\r\n" + data)


@FAST
@given(mutated(VALID))
def test_mutated_messages_parse_or_typed_error(data: bytes) -> None:
    _parse_or_typed(data)
    try:
        m = parse_message(data)
    except SipParseError:
        return
    # accessors used by the UA either work or raise the typed error
    for fn in (lambda: m.vias, lambda: m.contacts(), lambda: m.cseq, lambda: m.from_, lambda: m.to):
        try:
            fn()
        except SipParseError:
            pass


@FAST
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_stream_framer_only_typed_errors(chunks: list[bytes]) -> None:
    f = StreamFramer()
    for c in chunks:
        try:
            for kind, raw in f.feed(c):
                assert kind in ("message", "ping", "pong")
                if kind == "message":
                    _parse_or_typed(raw, True)
        except SipParseError:
            f = StreamFramer()


@FAST
@given(mutated([SDP]))
def test_sdp_parse_or_typed_error(data: bytes) -> None:
    try:
        sd = SessionDescription.parse(data)
    except SdpError as e:
        assert str(e)
        return
    assert SessionDescription.parse(sd.serialize()).serialize() == sd.serialize()
    for m in sd.media:
        # on the raw parse: a value attribute is text (never None), and every reader of it
        # either returns or raises its own SdpError
        for name in ("crypto", "rtpmap", "fmtp"):
            for v in m.attr(name):
                assert isinstance(v, str) and v.strip(), (name, v)
        for v in m.attr("crypto"):
            try:
                Crypto.parse(v)
            except SdpError:
                pass
        for v in m.attr("rtpmap"):
            parse_rtpmap(v)      # parse() already checked the grammar: must not raise
        for k, v in m.attributes:
            if v is None:
                assert m.has(k)
                try:
                    m.attr(k)
                except SdpError:
                    pass
        try:
            create_answer(sd, LocalMedia("192.0.2.9", 40000), True)
        except (SdpError, NegotiationError):
            pass


@FAST
@given(st.text(max_size=200))
def test_challenge_parser_only_typed_errors(text: str) -> None:
    try:
        digest.parse_challenge("Digest " + text)
    except SipParseError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(mutated(VALID + [REGISTER.replace(b"REGISTER", b"BYE", 1)]), min_size=1, max_size=5))
def test_malformed_input_leaves_ua_state_intact(inputs: list[bytes]) -> None:
    proxy, a, b, net = test_sip_ua._registered()
    cid = test_sip_ua._call(a, b, net)
    b.answer(cid, LocalMedia("10.0.0.2", 5000), 1100)
    net.pump(1100)
    events(a)
    events(b)
    for data in inputs:
        # frame each as its own stream message so the flow stays in sync
        a.receive(_reframe(data), 1200)
        a.data_to_send()
        for e in events(a):
            # bad input is rejected; a well-formed foreign INVITE (plain RTP seeds) is refused 488
            # as its own call - never an event about the established call
            assert type(e).__name__ in ("MessageRejected", "FlowFailed", "CallEnded", "IncomingCall"), e
            assert getattr(e, "call_id", None) != cid, e
    assert a.registered
    assert a.calls[cid].state == "connected"
    a.hangup(cid, 2000)
    net.pump(2000)
    assert [type(e).__name__ for e in events(b)] == ["CallEnded"]


def _reframe(data: bytes) -> bytes:
    """Give a mutated message a correct Content-Length so only its content is malformed."""
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = [ln for ln in head.split(b"\r\n")
             if not ln.lower().startswith((b"content-length", b"l:", b"l :"))]
    return b"\r\n".join(lines) + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body


SUITE_LISTS = st.lists(st.sampled_from(list(sdp.PREFERENCE)), min_size=1, max_size=3, unique=True)
CODEC_LISTS = st.lists(st.sampled_from([0, 8]), min_size=1, max_size=2, unique=True)


@FAST
@given(SUITE_LISTS, SUITE_LISTS, CODEC_LISTS, CODEC_LISTS)
def test_offer_answer_picks_strongest_common_suite(sa: list[str], sb: list[str], ca: list[int],
                                                   cb: list[int]) -> None:
    a = LocalMedia("192.0.2.1", 4000, suites=tuple(sa), codecs=tuple(ca))
    b = LocalMedia("192.0.2.2", 5000, suites=tuple(sb), codecs=tuple(cb))
    offer, offered = sdp.create_offer(a, True)
    common = [s for s in sdp.PREFERENCE if s in sa and s in sb]
    shared_codecs = [c for c in ca if c in cb]
    try:
        answer, mb = sdp.create_answer(offer.serialize(), b, True)
    except sdp.NegotiationError:
        assert not common or not shared_codecs
        return
    assert common and mb.suite == common[0] and mb.payload_type == shared_codecs[0]
    ma = sdp.accept_answer(answer.serialize(), offered, a, True)
    assert (ma.suite, ma.tx_key, ma.tx_salt, ma.rx_key, ma.rx_salt) == \
        (mb.suite, mb.rx_key, mb.rx_salt, mb.tx_key, mb.tx_salt)
