# Inputs found by the fuzz targets in tests/fuzz (atheris), byte for byte, each asserting the
# parser's documented error. Runs under pytest and MicroPython.
from firmware.boot import manifest
from firmware.errors import ParseError
from tests.unit.firmware.check import raises


def test_manifest_deep_nesting_is_a_parse_error():
    # fuzz_manifest: 5000 '[' made CPython's json raise RecursionError out of manifest.parse
    e = raises(ParseError, manifest.parse, b"[" * 5000)
    assert e.field == "manifest"
    assert "not JSON" in str(e)
