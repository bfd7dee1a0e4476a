# G.711 µ-law / A-law (ITU-T G.711 Tables 1a/2a). Known values below were read from CPython
# 3.11's audioop (the reference Sun coder); tests/unit/host/test_media_g711_audioop.py compares
# every 16-bit sample against audioop itself.
from firmware import compat
from firmware.media import g711
from tests.unit.firmware.check import raises


def _pcm(values):
    out = bytearray()
    for v in values:
        out += (v & 0xFFFF).to_bytes(2, "little")
    return bytes(out)


def _samples(pcm):
    out = []
    for i in range(0, len(pcm), 2):
        v = pcm[i] | (pcm[i + 1] << 8)
        out.append(v - 0x10000 if v & 0x8000 else v)
    return out


def test_ulaw_decode_known_values():
    known = {0x00: -32124, 0x0F: -16764, 0x10: -15996, 0x7E: -8, 0x7F: 0, 0x80: 32124,
             0xEF: 132, 0xFF: 0}
    for code in known:
        assert g711.ulaw_to_linear(code) == known[code]
    table = g711.ulaw_decode(bytes(range(256)))
    assert compat.sha256(table).hex() == \
        "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827"


def test_alaw_decode_known_values():
    known = {0x00: -5504, 0x55: -8, 0xD5: 8, 0x2A: -32256, 0xAA: 32256, 0x80: 5504, 0x0F: -6784}
    for code in known:
        assert g711.alaw_to_linear(code) == known[code]
    table = g711.alaw_decode(bytes(range(256)))
    assert compat.sha256(table).hex() == \
        "e04788d110e58ff8c70c93b8480190d973e3b67876b6119abbaec766cc75c174"


def test_encode_known_values():
    samples = [0, 1, -1, 4, -4, 100, -100, 1000, -1000, 8000, -8000, 32767, -32768]
    ulaw = bytes([0xFF, 0xFF, 0x7E, 0xFE, 0x7E, 0xF2, 0x72, 0xCE, 0x4E, 0xA0, 0x20, 0x80, 0x00])
    alaw = bytes([0xD5, 0xD5, 0x55, 0xD5, 0x55, 0xD3, 0x53, 0xFA, 0x7A, 0x8A, 0x0A, 0xAA, 0x2A])
    assert g711.ulaw_encode(_pcm(samples)) == ulaw
    assert g711.alaw_encode(_pcm(samples)) == alaw


def test_decode_encode_is_identity_on_codes():
    # Every code decodes to a level that encodes back to the same code (µ-law's two zeros aside).
    codes = bytes(range(256))
    u = g711.ulaw_encode(g711.ulaw_decode(codes))
    assert [c for c in range(256) if u[c] != c] == [0x7F]  # -0 encodes as +0 (0xFF)
    assert g711.alaw_encode(g711.alaw_decode(codes)) == codes
    assert _samples(g711.ulaw_decode(b"\x00\x80")) == [-32124, 32124]


def test_odd_pcm_length_is_refused():
    e = raises(ValueError, g711.ulaw_encode, b"\x00\x01\x02")
    assert str(e) == "16-bit PCM must have an even number of bytes, got 3"
