"""RTP and RTCP packets (firmware/media/rtp.py, RFC 3550). Documented error: ParseError. A parsed
RTP packet re-serialises to the same length."""
import _common  # noqa: F401
import atheris
import runner

with atheris.instrument_imports(include=["firmware"]):
    from firmware.errors import ParseError
    from firmware.media import rtp


def one_input(data):
    if rtp.is_rtcp(data):
        rtp.parse_rtcp(data)
        return
    p = rtp.RtpPacket.parse(data)
    assert len(p.serialize()) == len(data)


def seeds():
    from tests.unit.firmware.test_media_srtp import LIBSRTP_RTCP, LIBSRTP_RTP, RFC7714_RTCP, RFC7714_RTP

    yield RFC7714_RTP     # RFC 7714 §16
    yield RFC7714_RTCP    # RFC 7714 §17 (sender report with an extension)
    yield LIBSRTP_RTP
    yield LIBSRTP_RTCP
    # libsrtp's packet with an RFC 8285 one-byte header extension
    yield bytes.fromhex("900f1234decafbadcafebabebede000617414273a475262748220000c8308e4655996386b3"
                        "95fb00abababababababababababababababab")


if __name__ == "__main__":
    runner.main("rtp", one_input, (ParseError,), seeds)
