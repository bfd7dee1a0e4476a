# Inputs found by the fuzz targets in tests/fuzz (atheris), byte for byte, each asserting the
# parser's documented error. Runs under pytest and MicroPython.
from firmware.boot import manifest
from firmware.errors import ParseError
from firmware.sip import sdp
from tests.unit.firmware.check import raises


def test_manifest_deep_nesting_is_a_parse_error():
    # fuzz_manifest: 5000 '[' made CPython's json raise RecursionError out of manifest.parse
    e = raises(ParseError, manifest.parse, b"[" * 5000)
    assert e.field == "manifest"
    assert "not JSON" in str(e)


# fuzz_sdp, found against main before the `remote` branch's fix (issue 9 item 4): Kamailio-relayed
# baresip SDP cut after "a=rtpmap": create_answer raised AttributeError on the None value.
SDP_RTPMAP_NO_VALUE = (
    b"v=0\r\no=- 23184620919066 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/SAVP 0 \r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:FhcYGRobHB0eHyAhIiMkJ/SYnKCkqKyIN"
    b" IP4 MU/8000\r\na=rtpmap")


def test_sdp_rtpmap_without_value_is_an_sdp_error():
    assert len(SDP_RTPMAP_NO_VALUE) == 274
    e = raises(sdp.SdpError, sdp.SessionDescription.parse, SDP_RTPMAP_NO_VALUE)
    assert e.field == "line 11"
    e = raises(sdp.SdpError, sdp.create_answer, SDP_RTPMAP_NO_VALUE,
               sdp.LocalMedia("192.0.2.10", 40000), True)
    assert e.field == "line 11"
