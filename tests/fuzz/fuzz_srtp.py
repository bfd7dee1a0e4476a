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

SUITES = sorted(srtp.PROFILES)
KEY = bytes(range(16))
SALT = bytes(range(100, 114))


def _session(suite):
    salt_len = srtp.PROFILES[suite][2]
    return srtp.SrtpSession(suite, KEY, SALT[:salt_len], engine="pure")


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


if __name__ == "__main__":
    runner.main("srtp", one_input, (ParseError, srtp.SrtpError))
