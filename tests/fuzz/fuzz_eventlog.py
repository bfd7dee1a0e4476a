"""TCG crypto-agile event logs (firmware/eventlog/parser.py, decode.py, component.py; PFP §10):
parse, describe every event, decode the phone's component and bundle events, replay every bank.
Documented error: ParseError. Seeds: the real OVMF logs in tests/data/ovmf*/ and a log written
by the phone's own writer."""
import os

import _common  # noqa: F401
import atheris
import runner

with atheris.instrument_imports(include=["firmware"]):
    from firmware.errors import ParseError
    from firmware.eventlog import parse_log, replay
    from firmware.eventlog import types as T
    from firmware.eventlog.component import bundle_or_none, component_or_none
    from firmware.eventlog.writer import PhoneLog


def one_input(data):
    log = parse_log(data)
    for ev in log.events:
        ev.describe()
        ev.type_name
        ev.digests
        if ev.type == T.EV_EVENT_TAG:
            try:
                component_or_none(ev.data, ev.offset)
                bundle_or_none(ev.data, ev.offset)
            except ParseError:
                pass
    replay(log)


def seeds():
    for d in ("ovmf", "ovmf-sha256"):
        with open(os.path.join(runner.ROOT, "tests", "data", d, "binary_bios_measurements"), "rb") as f:
            yield f.read()
    log = PhoneLog(banks=("sha1", "sha256"))
    log.add_bundle("qemu-x86_64", "1.0.0", 3)
    log.add_component("phone-app", "1.0.0", b"code")
    log.close()
    yield log.to_bytes()


if __name__ == "__main__":
    runner.main("eventlog", one_input, (ParseError,), seeds)
