"""Typed views of the firmware event-log functions (firmware code carries no annotations, as
MicroPython compatibility prefers; mypy --strict wants typed calls from host tools)."""

from __future__ import annotations

from typing import Any, Callable, cast

from firmware.eventlog import component as _component
from firmware.eventlog import decode as _decode
from firmware.eventlog import parser as _parser
from firmware.eventlog import replayer as _replay
from firmware.eventlog import types as _types

ParsedLog = _parser.ParsedLog
parse_log = cast(Callable[[bytes], Any], _parser.parse_log)
replay = cast(Callable[..., dict[str, dict[int, bytes]]], _replay.replay)
initial_value = cast(Callable[[int, int], bytes], _replay.initial_value)
component_or_none = cast(Callable[[bytes, int], tuple[str, str] | None],
                         _component.component_or_none)
bundle_or_none = cast(Callable[[bytes, int], tuple[str, str, int] | None],
                      _component.bundle_or_none)
bundle_label = cast(Callable[[str, int, str], str], _component.bundle_label)
BUNDLE_EVENT_NAME: str = _component.BUNDLE_EVENT_NAME
decode_component = cast(Callable[[bytes, int], tuple[str, str]], _component.decode_component)
event_type_name = cast(Callable[[int], str], _types.event_type_name)
describe = cast(Callable[[int, bytes], str], _decode.describe)
