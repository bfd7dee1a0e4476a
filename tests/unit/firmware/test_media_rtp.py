# RTP/RTCP packets (RFC 3550): parse, check fields, re-encode byte-exact, exact error texts.
from firmware.errors import ParseError
from firmware.media.rtp import (
    RTCP_BYE, RTCP_SDES, RtcpPacket, RtcpReceiverReport, RtcpReportBlock, RtcpSenderReport,
    RtpPacket, is_rtcp, parse_rtcp, rtp_header_length, serialize_rtcp)
from tests.unit.firmware.check import raises, unhex

# RFC 7714 §16 example RTP packet: V=2, PT=64, seq 0xf17b, ts 0x8041f8d3, SSRC 0x5501a0b2.
RFC7714_RTP = unhex("8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973"
                    "20646976 69736120 696e2070 61727465 73207472 6573")
# RFC 7714 §17 example RTCP sender report, SSRC "Mars", with a 5-word extension.
RFC7714_RTCP = unhex("81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61"
                     "deadbeef deadbeef deadbeef deadbeef deadbeef")


def test_parse_rfc7714_rtp():
    p = RtpPacket.parse(RFC7714_RTP)
    assert p.payload_type == 64
    assert p.sequence_number == 0xF17B
    assert p.timestamp == 0x8041F8D3
    assert p.ssrc == 0x5501A0B2
    assert not p.marker
    assert p.csrc == []
    assert p.extension_profile is None
    assert p.payload == b"Gallia est omnis divisa in partes tres"
    assert p.serialize() == RFC7714_RTP


def test_csrc_extension_padding_round_trip():
    # libsrtp reference packet with a one-byte-header extension (RFC 8285 profile 0xBEDE).
    data = unhex("900f1234decafbadcafebabe bede0006 17414273a475262748220000c8308e4655996386b395fb00"
                 "abababababababababababababababab")
    p = RtpPacket.parse(data)
    assert p.extension_profile == 0xBEDE
    assert len(p.extension) == 24
    assert p.payload == b"\xab" * 16
    assert p.serialize() == data
    p = RtpPacket(payload_type=0, sequence_number=65535, timestamp=160, ssrc=1, payload=b"x",
                  marker=True, csrc=[2, 3], padding_size=3)
    data = p.serialize()
    assert data == unhex("a280ffff 000000a0 00000001 00000002 00000003 78 0000 03")
    q = RtpPacket.parse(data)
    assert q.csrc == [2, 3] and q.marker and q.padding_size == 3 and q.payload == b"x"
    assert q.serialize() == data
    assert rtp_header_length(data) == 20


def test_rtp_errors():
    e = raises(ParseError, RtpPacket.parse, b"\x80\x00\x00")
    assert str(e) == "RTP packet length is less than 12 bytes (field header at offset 0)"
    e = raises(ParseError, RtpPacket.parse, unhex("40000000 00000000 00000000"))
    assert str(e) == "RTP packet has invalid version 1 (field version at offset 0)"
    e = raises(ParseError, RtpPacket.parse, unhex("82000000 00000000 00000000 00000001"))
    assert str(e) == "RTP packet has truncated CSRC list (field csrc at offset 12)"
    assert e.offset == 12 and e.field == "csrc"
    e = raises(ParseError, RtpPacket.parse, unhex("90000000 00000000 00000000 bede"))
    assert str(e) == "RTP packet has truncated extension header (field extension at offset 12)"
    e = raises(ParseError, RtpPacket.parse, unhex("90000000 00000000 00000000 bede0002 00000000"))
    assert str(e) == ("RTP packet has truncated extension (8 bytes declared, 4 present)"
                      " (field extension at offset 16)")
    e = raises(ParseError, RtpPacket.parse, unhex("a0000000 00000000 00000000 0102 00"))
    assert str(e) == "RTP packet padding length 0 is invalid (field padding at offset 14)"
    e = raises(ParseError, RtpPacket.parse, unhex("a0000000 00000000 00000000 0102 09"))
    assert str(e) == "RTP packet padding length 9 is invalid (field padding at offset 14)"


def test_rtcp_sender_report_rfc7714():
    # The RFC's example declares 14 words (0x000d + 1) but carries 13: SRTCP does not care, an
    # RTCP parser must refuse it.
    e = raises(ParseError, parse_rtcp, RFC7714_RTCP)
    assert str(e) == "RTCP packet length 56 exceeds the 52 bytes present (field length at offset 2)"
    fixed = b"\x81\xc8\x00\x0c" + RFC7714_RTCP[4:]
    packets = parse_rtcp(fixed)
    assert len(packets) == 1
    sr = packets[0]
    assert isinstance(sr, RtcpSenderReport)
    assert sr.ssrc == 0x4D617273
    assert sr.ntp_timestamp == 0x4E5450314E545032
    assert sr.rtp_timestamp == 0x52545020
    assert sr.packet_count == 0x42A and sr.octet_count == 0xE930
    # RFC 3550 §6.4.1: the count field says 1 report block.
    assert len(sr.reports) == 1
    assert sr.reports[0].ssrc == 0x4C756E61
    assert sr.reports[0].fraction_lost == 0xDE
    assert sr.reports[0].packets_lost == -0x524111  # 0xadbeef as signed 24 bits
    assert sr.extension == b""
    assert serialize_rtcp(packets) == fixed
    assert is_rtcp(RFC7714_RTCP) and not is_rtcp(RFC7714_RTP)


def test_rtcp_compound_round_trip():
    rb = RtcpReportBlock(ssrc=9, fraction_lost=3, packets_lost=-2, highest_sequence=70000,
                         jitter=12, lsr=0x11223344, dlsr=65536)
    compound = [RtcpReceiverReport(ssrc=7, reports=[rb]),
                RtcpPacket(RTCP_SDES, 1, unhex("00000007 01046e616d65 0000")),
                RtcpPacket(RTCP_BYE, 1, unhex("00000007"), padding_size=4)]
    data = serialize_rtcp(compound)
    assert data == unhex("81c90007 00000007 00000009 03fffffe 00011170 0000000c 11223344 00010000"
                         "81ca0003 00000007 01046e61 6d650000"
                         "a1cb0002 00000007 00000004")
    back = parse_rtcp(data)
    assert [p.packet_type for p in back] == [201, 202, 203]
    assert back[0].reports[0] == rb
    assert back[2].padding_size == 4 and back[2].body == unhex("00000007")
    assert serialize_rtcp(back) == data


def test_rtcp_errors():
    e = raises(ParseError, parse_rtcp, b"\x81\xc8")
    assert str(e) == "RTCP packet length is less than 4 bytes (field header at offset 0)"
    e = raises(ParseError, parse_rtcp, unhex("01c80000"))
    assert str(e) == "RTCP packet has invalid version 0 (field version at offset 0)"
    e = raises(ParseError, parse_rtcp, unhex("81c80006 00000001"))
    assert str(e) == "RTCP packet length 28 exceeds the 8 bytes present (field length at offset 2)"
    e = raises(ParseError, parse_rtcp, unhex("80c80001 00000001"))
    assert str(e) == "RTCP sender report is truncated (field sender info at offset 4)"
    e = raises(ParseError, parse_rtcp, unhex("81c90001 00000001"))
    assert str(e) == ("RTCP packet has truncated report block list (1 declared)"
                      " (field report block at offset 8)")
    e = raises(ParseError, parse_rtcp, unhex("a0cb0001 00000004 81cb0000"))
    assert str(e) == "RTCP padding is only allowed on the last packet (field padding at offset 0)"
    e = raises(ParseError, parse_rtcp, unhex("81cb0001 00000001 00"))
    assert str(e) == "RTCP compound packet has trailing bytes (field header at offset 8)"
