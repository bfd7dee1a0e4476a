# firmware.boot.ustar against archives written by an independent writer (below, from the ustar
# header layout in POSIX.1-1988) and, under CPython, by the standard library's tarfile.
from firmware.boot import ustar
from firmware.errors import ParseError
from tests.unit.firmware.check import raises


def _put(hdr, off, raw):
    hdr[off:off + len(raw)] = raw


def make_header(name, size, typeflag=b"0", magic=b"ustar\x0000"):
    hdr = bytearray(512)
    _put(hdr, 0, name.encode())
    _put(hdr, 100, b"0000644\x00")
    _put(hdr, 108, b"0000000\x00")
    _put(hdr, 116, b"0000000\x00")
    _put(hdr, 124, ("%011o" % size).encode() + b"\x00")
    _put(hdr, 136, b"00000000000\x00")
    _put(hdr, 148, b"        ")
    _put(hdr, 156, typeflag)
    _put(hdr, 257, magic)
    total = 0
    for b in hdr:
        total += b
    _put(hdr, 148, ("%06o" % total).encode() + b"\x00 ")
    return bytes(hdr)


def make_ustar(members):
    out = b""
    for name, data in members:
        out += make_header(name, len(data)) + data + b"\x00" * (-len(data) % 512)
    return out + b"\x00" * 1024


def test_members_in_order_with_exact_bytes():
    arc = make_ustar([("manifest.json", b"{}"), ("a", b""), ("b", b"x" * 512), ("c", b"y" * 513)])
    assert ustar.parse(arc) == [("manifest.json", b"{}"), ("a", b""), ("b", b"x" * 512),
                                ("c", b"y" * 513)]


def test_matches_stdlib_tarfile():
    try:
        import io
        import tarfile
    except ImportError:
        return  # MicroPython: no tarfile to compare with
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("firmware/x.py", b"print(1)\n"), ("d" * 90 + "/" + "e" * 60, b"z")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    got = ustar.parse(buf.getvalue())
    assert got == [("firmware/x.py", b"print(1)\n"), ("d" * 90 + "/" + "e" * 60, b"z")]


def test_bad_checksum_names_offset_and_field():
    arc = bytearray(make_ustar([("a", b"1"), ("b", b"2")]))
    arc[1024 + 5] ^= 0x01  # second header's name changes, its checksum does not
    e = raises(ParseError, ustar.parse, bytes(arc))
    assert e.field == "chksum" and e.offset == 1024 + 148


def test_scan_keeps_members_before_the_problem():
    arc = bytearray(make_ustar([("a", b"1"), ("b", b"2")]))
    arc[1024 + 257] = ord("X")  # second header's magic
    members, err = ustar.scan(bytes(arc))
    assert members == [("a", b"1")]
    assert err.field == "magic" and err.offset == 1024 + 257


def test_size_past_end_is_refused():
    arc = make_header("a", 4096) + b"q" * 512
    e = raises(ParseError, ustar.parse, arc)
    assert e.field == "size" and "past the end" in str(e)


def test_non_regular_member_is_refused():
    arc = make_header("link", 0, typeflag=b"2") + b"\x00" * 1024
    e = raises(ParseError, ustar.parse, arc)
    assert e.field == "typeflag"


def test_non_octal_size_is_refused():
    hdr = bytearray(make_header("a", 1))
    hdr[124:136] = b"00000000009\x00"
    total = 0
    hdr[148:156] = b"        "
    for b in hdr:
        total += b
    hdr[148:156] = ("%06o" % total).encode() + b"\x00 "
    e = raises(ParseError, ustar.parse, bytes(hdr) + b"\x00" * 1536)
    assert e.field == "size" and e.offset == 124


def test_truncated_header_and_missing_end():
    e = raises(ParseError, ustar.parse, make_header("a", 0)[:300])
    assert e.field == "header" and e.offset == 0
    e = raises(ParseError, ustar.parse, make_header("a", 0))  # no end-of-archive blocks
    assert e.field == "header" and e.offset == 512


def test_member_count_is_bounded():
    arc = make_ustar([("m%d" % i, b"") for i in range(ustar.MAX_MEMBERS + 1)])
    members, err = ustar.scan(arc)
    assert len(members) == ustar.MAX_MEMBERS and "more than" in str(err)


def test_empty_input_and_zero_blocks():
    assert ustar.parse(b"\x00" * 1024) == []
    members, err = ustar.scan(b"")
    assert members == [] and err.field == "header"
