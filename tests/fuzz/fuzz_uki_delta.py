"""The UKI package's delta payload and manifest (firmware/update/uki_delta.py,
uki_package.parse_manifest). check() raises DeltaError only; a delta check() accepts applies
(against the vector's base when its header names that base, else zeroes of the base size: then
BaseMismatch) to exactly its target size. An input starting with `{` also goes to parse_manifest
(ParseError only). Seeds: the byte-exact vector of tests/unit/firmware/test_update_uki_package.py
and its manifest."""
import _common  # noqa: F401
import atheris
import runner

with atheris.instrument_imports(include=["firmware"]):
    from firmware.errors import ParseError
    from firmware.update import uki_delta as D
    from firmware.update import uki_package as U

from tests.unit.firmware.test_update_uki_package import BASE, DELTA, MANIFEST

MAX_BASE = 64 * 1024  # larger claimed bases are only checked, not applied (memory per input)


def one_input(data):
    if data[:1] == b"{":
        U.parse_manifest(data)
        return
    base_size, _, target_size = D.check(data)
    if base_size > MAX_BASE or target_size > MAX_BASE:
        return
    base = BASE if base_size == len(BASE) else bytes(base_size)
    try:
        out = D.apply(data, lambda off, n: base[off:off + n])
    except D.BaseMismatch:
        return
    assert len(out) == target_size


def seeds():
    yield DELTA
    yield MANIFEST
    yield D.encode_header(len(BASE), b"\x00" * 32, 4) + D.encode_copy(0, 4) + D.encode_end()


if __name__ == "__main__":
    runner.main("uki_delta", one_input, (D.DeltaError, ParseError), seeds)
