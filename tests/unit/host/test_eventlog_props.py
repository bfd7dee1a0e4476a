"""Property tests over the event-log parser: for any bytes, parse_log either returns a log whose
events are consistent with the input or raises ParseError naming offset and field. Never another
exception, never a hang (each example is bounded by hypothesis' deadline)."""

from __future__ import annotations

import struct
from typing import Any, Callable, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.errors import ParseError
from firmware.eventlog import decode as _decode
from firmware.eventlog import parser as _parser
from firmware.eventlog import replayer as _replayer
from firmware.eventlog import writer as _writer
from firmware.eventlog.component import decode_component as _decode_component

parse_log = cast(Callable[[bytes], Any], _parser.parse_log)
replay = cast(Callable[[Any], Any], _replayer.replay)
describe = cast(Callable[[int, bytes], str], _decode.describe)
decode_component = cast(Callable[[bytes], Any], _decode_component)
PhoneLog = cast(Callable[..., Any], _writer.PhoneLog)


def _valid_log(banks: tuple[str, ...]) -> bytes:
    log = PhoneLog(banks)
    for i in range(3):
        log.add_component("c%d" % i, "v%d" % i, b"data %d" % i)
    log.close()
    return bytes(log.to_bytes())


VALID = [_valid_log(("sha256",)), _valid_log(("sha1", "sha256", "sha384", "sha512"))]
SETTINGS = settings(max_examples=400, deadline=2000,
                    suppress_health_check=[HealthCheck.too_slow])


def _check(data: bytes) -> None:
    try:
        log = parse_log(data)
    except ParseError as e:
        assert e.offset is not None and 0 <= e.offset <= len(data)
        assert e.field
        return
    # Accepted: everything it says must be inside the input, and replay and describe must work.
    assert log.size == len(data)
    for ev in log.events:
        assert 0 <= ev.offset < len(data) and 0 <= ev.pcr <= 23
        assert len(ev.digest_values) == len(log.header.banks)
        describe(ev.type, ev.data)
    replay(log)


@SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    _check(data)


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes_after_valid_header(tail: bytes) -> None:
    header = _valid_log(("sha256",))[:32 + 33]
    _check(header + tail)


@SETTINGS
@given(st.sampled_from(VALID), st.data())
def test_mutated_valid_log(base: bytes, data: st.DataObject) -> None:
    buf = bytearray(base)
    for _ in range(data.draw(st.integers(1, 6))):
        kind = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "u32"]))
        pos = data.draw(st.integers(0, max(0, len(buf) - 1)))
        if kind == "flip" and buf:
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and buf:
            buf[pos] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del buf[pos:pos + data.draw(st.integers(1, 40))]
        elif kind == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=40))
        elif kind == "u32" and len(buf) >= pos + 4:
            # sizes and counts are u32s: try the interesting values there
            value = data.draw(st.sampled_from([0, 1, 0x7F, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
            struct.pack_into("<I", buf, pos, value)
    _check(bytes(buf))


@SETTINGS
@given(st.binary(max_size=80))
def test_component_payload(data: bytes) -> None:
    try:
        name, version = decode_component(data)
    except ParseError as e:
        assert e.field and e.offset is not None
        return
    assert name and version
