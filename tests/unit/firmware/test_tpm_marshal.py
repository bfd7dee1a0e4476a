# firmware.tpm.marshal: Writer/Reader round trips and bounds checks (TPM 2.0 Part 1 §18).
from firmware.errors import ParseError
from firmware.tpm.marshal import Reader, Writer
from tests.unit.firmware.check import raises, unhex


def test_writer_integers_big_endian():
    w = Writer().u8(1).u16(0x0203).u32(0x04050607).u64(0x08090A0B0C0D0E0F)
    assert w.bytes() == unhex("01 0203 04050607 08090a0b0c0d0e0f")


def test_writer_rejects_out_of_range():
    raises(ValueError, Writer().u8, 256)
    raises(ValueError, Writer().u16, -1)
    raises(ValueError, Writer().u32, 1 << 32)


def test_tpm2b_round_trip():
    w = Writer().tpm2b(b"abc").tpm2b(b"")
    assert w.bytes() == unhex("0003 616263 0000")
    r = Reader(w.bytes())
    assert r.tpm2b("a") == b"abc"
    assert r.tpm2b("b") == b""
    r.done()


def test_sized_nested_offsets_are_absolute():
    data = Writer().u16(0xAAAA).sized(lambda x: x.u32(7).u8(1)).bytes()
    r = Reader(data)
    r.u16()
    sub = r.sized("inner")
    assert sub.offset == 4
    assert sub.u32("x") == 7
    e = raises(ParseError, sub.u16, "y")
    assert e.offset == 8 and e.field == "y"


def test_reader_truncated_names_field_and_offset():
    r = Reader(unhex("0001 02"))
    assert r.u16("tag") == 1
    e = raises(ParseError, r.u32, "responseSize")
    assert e.field == "responseSize"
    assert e.offset == 2
    assert "truncated" in str(e) and "offset 2" in str(e)


def test_tpm2b_size_checked_before_use():
    r = Reader(unhex("0010 0102"))
    e = raises(ParseError, r.tpm2b, "outData")
    assert e.field == "outData" and e.offset == 0
    assert "exceeds" in str(e)


def test_tpm2b_max_size():
    r = Reader(unhex("0005 0102030405"))
    e = raises(ParseError, r.tpm2b, "nonce", 4)
    assert "maximum 4" in str(e)


def test_done_rejects_trailing_bytes():
    r = Reader(unhex("00 01"))
    r.u8()
    e = raises(ParseError, r.done, "response")
    assert e.offset == 1 and "1 trailing" in str(e)
