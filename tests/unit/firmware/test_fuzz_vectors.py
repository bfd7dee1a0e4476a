# Inputs found by the fuzz targets in tests/fuzz (atheris), byte for byte, each asserting the
# parser's documented error. Runs under pytest and MicroPython.
from firmware.boot import manifest
from firmware.errors import ParseError
from firmware.sip import sdp
from tests.unit.firmware.check import raises, unhex


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


def test_tpm_names_with_an_unhashable_name_alg_are_parse_errors():
    # fuzz_tpm_response contract (seen reading for the harness): a TPMT_PUBLIC / TPMS_NV_PUBLIC whose nameAlg is TPM_ALG_SM3_256 (0x0012)
    # made object_name/nv_name raise compat.UnsupportedAlgorithm instead of ParseError
    from firmware.tpm.nv import nv_name
    from firmware.tpm.public import object_name

    e = raises(ParseError, object_name, unhex("0023 0012 00000000 0000"))
    assert e.field == "nameAlg" and e.offset == 2
    e = raises(ParseError, nv_name, unhex("01500000 0012 00000000 0000 0008"))
    assert e.field == "nameAlg" and e.offset == 4
