"""Typed views of the firmware's SMP core (firmware code carries no annotations, as MicroPython
compatibility prefers; mypy --strict wants typed calls from host tools)."""

from __future__ import annotations

from typing import Any, Callable, cast

from firmware.smp import cbor as _cbor
from firmware.smp import header as _header
from firmware.smp import serial as _serial

cbor_encode = cast(Callable[[Any], bytes], _cbor.encode)
cbor_decode = cast(Callable[[bytes], Any], _cbor.decode)
encode_lines = cast(Callable[[bytes, int], list[bytes]], _serial.encode)
Splitter = cast(Callable[[], Any], _serial.Splitter)


def pack_header(op: int, version: int, length: int, group: int, seq: int, command: int) -> bytes:
    return cast(bytes, _header.Header(op, version, 0, length, group, seq, command).pack())  # type: ignore[no-untyped-call]


def parse_frame(frame: bytes) -> tuple[Any, bytes]:
    return cast(tuple[Any, bytes], _header.parse(frame))  # type: ignore[no-untyped-call]
