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


if __name__ == "__main__":
    runner.main("rtp", one_input, (ParseError,))
