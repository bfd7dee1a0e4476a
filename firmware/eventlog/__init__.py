# TCG PC Client PFP crypto-agile event logs: parse (yields UNVERIFIED events), replay, and write the
# phone's own log. Sans-I/O and MicroPython-compatible. See docs/eventlog.md.

from firmware.eventlog.parser import (  # noqa: F401
    MAX_EVENT_DATA, ParsedLog, SpecIdHeader, UnverifiedEvent, parse_header, parse_log)
from firmware.eventlog.replayer import ReplayError, compare_replay, replay, verify_replay  # noqa: F401
from firmware.eventlog.writer import (  # noqa: F401
    PHONE_PCR, PhoneLog, measure_bundle, measure_component, separator_event)
from firmware.eventlog.component import (  # noqa: F401
    decode_bundle, decode_component, encode_bundle, encode_component)
