"""SRTP/SRTCP unprotect (firmware/media/srtp.py, RFC 3711, RFC 7714), pure engine (the one the
firmware runs everywhere). Input: byte 0 picks the suite and the mode, the rest is the packet.
  mode 0/1: unprotect / unprotect_rtcp the bytes as received from the network;
  mode 2/3: protect the bytes with the sending session, flip the bit chosen by byte 1, unprotect:
            the forged packet must be refused (SrtpAuthError or ParseError), never accepted;
  mode 4/5: protect then unprotect unchanged: must give the original packet back.
Documented errors: ParseError, SrtpError (SrtpAuthError, SrtpReplayError)."""
import _common  # noqa: F401
import atheris
import runner

with atheris.instrument_imports(include=["firmware"]):
    from firmware.errors import ParseError
    from firmware.media import srtp

from tests.unit.firmware.test_media_srtp import (
    B3_KEY, B3_SALT, GCM_KEY, GCM_SALT, LIBSRTP_RTCP, LIBSRTP_RTP, RFC7714_RTCP, RFC7714_RTP,
    RFC7714_SRTCP, RFC7714_SRTP)

SUITES = sorted(srtp.PROFILES)
# The published vectors' keys, so their packets authenticate: RFC 7714 §16-17 for GCM, libsrtp's
# reference (RFC 3711 §B.3 key) for AES-CM.
KEYS = {"AEAD_AES_128_GCM": (GCM_KEY, GCM_SALT)}


def _session(suite):
    key, salt = KEYS.get(suite, (B3_KEY, B3_SALT))
    return srtp.SrtpSession(suite, key, salt, engine="pure")


def one_input(data):
    if len(data) < 2:
        return
    suite = SUITES[data[0] % len(SUITES)]
    mode = (data[0] >> 2) % 6
    pkt = data[2:]
    rx = _session(suite)
    rtcp = mode % 2 == 1
    unprotect = rx.unprotect_rtcp if rtcp else rx.unprotect
    if mode < 2:
        unprotect(pkt)
        return
    tx = _session(suite)
    try:
        sealed = tx.protect_rtcp(pkt) if rtcp else tx.protect(pkt)
    except ParseError:
        return          # not an RTP/RTCP packet: nothing to protect
    if mode >= 4:
        assert unprotect(sealed) == pkt
        return
    bit = data[1] % (8 * len(sealed))
    forged = bytearray(sealed)
    forged[bit // 8] ^= 1 << (bit % 8)
    try:
        unprotect(bytes(forged))
    except (srtp.SrtpAuthError, ParseError):
        return
    raise AssertionError("forged packet accepted (bit %d of %d flipped)" % (bit, 8 * len(sealed)))


def seeds():
    gcm = SUITES.index("AEAD_AES_128_GCM")
    cm80 = SUITES.index("AES_CM_128_HMAC_SHA1_80")
    yield bytes([gcm, 0]) + RFC7714_SRTP
    yield bytes([gcm | 1 << 2, 0]) + RFC7714_SRTCP
    # libsrtp's reference SRTP packet and SRTCP packet (index 1) for AES_CM_128_HMAC_SHA1_80
    yield bytes([cm80, 0]) + bytes.fromhex(
        "800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb")
    yield bytes([cm80 | 1 << 2, 0]) + bytes.fromhex(
        "81c8000bcafebabe7128035be487b9bdbef89041f977a5a880000001993e08cd54d6c1230798")
    for i in range(len(SUITES)):
        for mode in (2, 3, 4, 5):
            for pkt in ((RFC7714_RTP, LIBSRTP_RTP) if mode % 2 == 0 else (RFC7714_RTCP, LIBSRTP_RTCP)):
                yield bytes([i | mode << 2, 77]) + pkt


if __name__ == "__main__":
    runner.main("srtp", one_input, (ParseError, srtp.SrtpError), seeds)
