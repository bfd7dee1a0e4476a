"""The SDES a=crypto attribute (RFC 4568 §9.1, firmware/sip/sdp.py Crypto.parse). Documented
error: SdpError. A parsed key re-serialises to an attribute that parses to the same key."""
import _common  # noqa: F401
import atheris
import runner

with atheris.instrument_imports(include=["firmware"]):
    from firmware.sip import sdp


def one_input(data):
    try:
        text = data.decode("utf-8")
    except UnicodeError:
        return      # an SDP line is text: the SDP parser refuses non-UTF-8 before this point
    c = sdp.Crypto.parse(text)
    c.weakened()
    if c.key is not None:
        again = sdp.Crypto.parse(str(c))
        assert (again.tag, again.suite, again.key, again.salt) == (c.tag, c.suite, c.key, c.salt)


if __name__ == "__main__":
    runner.main("sdes", one_input, (sdp.SdpError,))
