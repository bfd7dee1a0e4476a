# G.711 against CPython's audioop (present in 3.11, removed in 3.13): every 16-bit sample and
# every code, byte-exact.
import struct
import warnings

import pytest

from firmware.media import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop")

ALL_PCM = struct.pack("<65536h", *range(-32768, 32768))
ALL_CODES = bytes(range(256))


def test_ulaw_matches_audioop() -> None:
    assert g711.ulaw_encode(ALL_PCM) == audioop.lin2ulaw(ALL_PCM, 2)
    assert g711.ulaw_decode(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)


def test_alaw_matches_audioop() -> None:
    assert g711.alaw_encode(ALL_PCM) == audioop.lin2alaw(ALL_PCM, 2)
    assert g711.alaw_decode(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)
