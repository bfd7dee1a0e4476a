"""SDP (firmware/sip/sdp.py, RFC 4566 / RFC 3264): parse, then answer it as an offer (create_answer)
and accept it as an answer to our offer (accept_answer). Documented errors: SdpError (a
SipParseError) for text that does not parse, NegotiationError for media we refuse."""
import _common  # noqa: F401
import atheris
import runner

with atheris.instrument_imports(include=["firmware"]):
    from firmware.sip import sdp


LOCAL = sdp.LocalMedia("192.0.2.10", 40000)


def one_input(data):
    sd = sdp.SessionDescription.parse(data)
    sd.serialize()
    try:
        sdp.create_answer(sd, LOCAL, True)
    except sdp.NegotiationError:
        pass
    _, offered = sdp.create_offer(LOCAL, True)
    sdp.accept_answer(sd, offered, LOCAL, True)


if __name__ == "__main__":
    runner.main("sdp", one_input, (sdp.SdpError, sdp.NegotiationError))
