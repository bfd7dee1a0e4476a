# firmware.eventlog: bad input. Every problem is a ParseError naming the offset and field; nothing
# read from the log is used before it is bounds-checked. Runs under pytest and micropython.
import struct

from firmware import compat
from firmware.errors import ParseError
from firmware.eventlog import parse_log
from firmware.eventlog import types as T
from firmware.eventlog.parser import MAX_EVENT_DATA, SPEC_ID_SIGNATURE
from firmware.eventlog.writer import pcr_event2, spec_id_event
from tests.unit.firmware.check import raises

BANKS = ("sha1", "sha256")
HDR = spec_id_event(BANKS)
EV = pcr_event2(4, T.EV_EFI_ACTION, {"sha1": compat.sha1(b"x"), "sha256": compat.sha256(b"x")},
                b"x", BANKS)


def _header(algs, vendor=b"", size_delta=0, sig=SPEC_ID_SIGNATURE, count=None):
    body = sig + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(algs) if count is None else count)
    for alg, size in algs:
        body += struct.pack("<HH", alg, size)
    body += bytes([len(vendor)]) + vendor
    return struct.pack("<II", 0, T.EV_NO_ACTION) + b"\x00" * 20 + struct.pack(
        "<I", len(body) + size_delta) + body


def _err(data):
    return raises(ParseError, parse_log, data)


def test_empty_and_tiny():
    e = _err(b"")
    assert e.offset == 0 and e.field == "header"
    assert _err(HDR[:31]).field == "header"


def test_truncated_everywhere():
    # Every proper prefix of a valid log either parses as a shorter valid log (event boundary) or
    # raises ParseError: never another exception, never silent acceptance of half an event.
    full = HDR + EV + EV
    boundaries = (len(HDR), len(HDR) + len(EV))
    for cut in range(len(full)):
        if cut in boundaries:
            continue
        e = _err(full[:cut])
        assert e.offset is not None and e.field is not None
        assert "truncated" in str(e) or e.field.startswith("header") or "SpecID" in e.field


def test_truncated_event_names_field():
    e = _err(HDR + EV[:-1])
    assert e.field == "event[1].eventSize" and e.offset == len(HDR) + len(EV) - 5
    assert "truncated" in str(e)
    e = _err(HDR + EV[:10])
    assert e.field == "event[1].digests.count" and e.offset == len(HDR) + 8
    e = _err(HDR + EV[:20])
    assert e.field == "event[1].digests[0].digest" and e.offset == len(HDR) + 14


def test_oversized_event():
    big = EV[:-5] + struct.pack("<I", MAX_EVENT_DATA + 1)
    e = _err(HDR + big)
    assert "exceeds maximum" in str(e) and e.field == "event[1].eventSize"
    huge = EV[:-5] + struct.pack("<I", 0xFFFFFFFF)
    assert _err(HDR + huge).field == "event[1].eventSize"


def test_header_must_be_spec_id_no_action():
    e = _err(b"\x01" + HDR[1:])
    assert e.field == "header.pcrIndex"
    e = _err(HDR[:4] + struct.pack("<I", T.EV_POST_CODE) + HDR[8:])
    assert e.field == "header.eventType" and e.offset == 4
    e = _err(HDR[:8] + b"\x01" + HDR[9:])
    assert e.field == "header.digest"
    e = _err(_header([(0xB, 32)], sig=b"Spec ID Event02\x00"))
    assert e.field == "SpecID.signature" and e.offset == 32


def test_forged_header_digest_sizes():
    # sha256 declared with 20 bytes: the sizes contradict the algorithm (a sha1 value would then
    # parse as "sha256"), so the header is rejected.
    e = _err(_header([(0x4, 20), (0xB, 20)]))
    assert e.field == "SpecID.digestSizes[1].digestSize" and "contradicts sha256" in str(e)
    assert e.offset == 32 + 24 + 4 + 4 + 2
    assert _err(_header([(0x4, 20), (0x4, 20)])).field == "SpecID.digestSizes[1]"
    assert _err(_header([])).field == "SpecID.numberOfAlgorithms"
    assert _err(_header([(0xB, 32)] * 9)).field == "SpecID.numberOfAlgorithms"
    assert _err(_header([(0xB, 32)], count=1000)).field == "SpecID.numberOfAlgorithms"
    assert _err(_header([(0xB, 32)], count=3)).field == "SpecID.digestSizes"
    assert _err(_header([(0x99, 0)])).field == "SpecID.digestSizes[0].digestSize"
    assert _err(_header([(0x99, 65)])).field == "SpecID.digestSizes[0].digestSize"
    # size of the Spec ID event disagreeing with its contents
    assert _err(_header([(0xB, 32)], size_delta=1)).field in ("header.eventDataSize",
                                                              "SpecID.vendorInfoSize")
    assert _err(_header([(0xB, 32)], size_delta=-1)).field == "SpecID.vendorInfoSize"
    assert _err(_header([(0xB, 32)], size_delta=-30)).field == "header.eventDataSize"
    # an unknown algorithm with a plausible size parses (it cannot be replayed, see replay())
    assert parse_log(_header([(0xB, 32), (0x99, 16)])).header.banks == ("sha256", "alg_0x0099")


def test_undeclared_or_missing_bank():
    sha256_only = spec_id_event(("sha256",))
    e = _err(sha256_only + EV)  # event lists sha1 + sha256, header only sha256
    assert e.field == "event[1].digests.count"
    one = pcr_event2(4, T.EV_IPL, {"sha1": b"\x00" * 20}, b"", ("sha1",))
    e = _err(sha256_only + one)  # right count, wrong bank: sha1 where sha256 is declared
    assert e.field == "event[1].digests[0].hashAlg" and "not declared" in str(e)
    e = _err(HDR + one)
    assert "declares 2 banks" in str(e)
    dup = struct.pack("<III", 4, T.EV_IPL, 2) + (b"\x04\x00" + b"\x00" * 20) * 2 + b"\x00" * 4
    assert "listed twice" in str(_err(HDR + dup))


def test_pcr_index_bounds():
    ev = pcr_event2(24, T.EV_IPL, {"sha1": b"\x00" * 20, "sha256": b"\x00" * 32}, b"", BANKS)
    e = _err(HDR + ev)
    assert e.field == "event[1].pcrIndex" and e.offset == len(HDR)


def test_trailing_garbage():
    e = _err(HDR + EV + b"\x00\x00\x00")
    assert e.offset == len(HDR) + len(EV)
    assert _err(HDR + EV + b"\xff" * 64).offset is not None


def test_message_names_offset_and_field():
    e = _err(HDR + EV[:-1])
    assert "at offset" in str(e) and "event[1].eventSize" in str(e)
