# The SMP core (firmware/smp): CBOR against RFC 8949 Appendix A, the serial transport against the
# smp package's documented vectors and the CRC-16/XMODEM check value, the header, and the server's
# answers to bad frames. Runs under pytest and micropython (tests/mpy_run.py).

from firmware.smp import cbor, header as H, serial
from firmware.smp.errors import CborError, FramingError, SmpError
from tests.unit.firmware.check import raises, unhex

# RFC 8949 Appendix A (the subset SMP uses)
VECTORS = [
    (0, "00"), (23, "17"), (24, "1818"), (100, "1864"), (1000, "1903e8"), (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"), (18446744073709551615, "1bffffffffffffffff"),
    (-1, "20"), (-10, "29"), (-100, "3863"), (-1000, "3903e7"),
    (False, "f4"), (True, "f5"), (None, "f6"),
    (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"), ("a", "6161"), ("IETF", "6449455446"), ("\u00fc", "62c3bc"),
    ([], "80"), ([1, 2, 3], "83010203"), ([1, [2, 3], [4, 5]], "8301820203820405"),
    ({}, "a0"), ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
]


def test_cbor_rfc8949_vectors_both_ways():
    for value, hexed in VECTORS:
        assert cbor.encode(value) == unhex(hexed), hexed
        assert cbor.decode(unhex(hexed)) == value, hexed


def test_cbor_refusals_name_the_problem():
    cases = [
        ("f93c00", "floating-point"), ("9f01ff", "indefinite length"), ("c11a514b67b0", "tags"),
        ("a2616101616102", "duplicate map key 'a'"), ("6261", "truncated text string"),
        ("0000", "1 bytes after the CBOR item"), ("9b00000000ffffffff", "array of 4294967295 items"),
        ("f7", "simple value 23"), ("1c", "reserved additional information 28"),
        ("62ff00", "text string is not UTF-8"), ("a1f600", "map key is a NoneType"),
    ]
    for hexed, words in cases:
        e = raises(CborError, cbor.decode, unhex(hexed))
        assert words in str(e), (hexed, str(e))
    deep = b"\x81" * 9 + b"\x00"
    assert "nested deeper than 8" in str(raises(CborError, cbor.decode, deep))


def test_crc16_xmodem_check_value():
    assert serial.crc16_xmodem(b"123456789") == 0x31C3  # CRC RevEng catalogue, CRC-16/XMODEM


def test_serial_vectors_from_the_smp_package():
    assert serial.encode(b"Hello, world!") == [b"\x06\tAA9IZWxsbywgd29ybGQhet4=\n"]
    lines = serial.encode(b"Hello, world!", line_length=8)
    assert lines == [b"\x06\tAA9I\n", b"\x04\x14ZWxs\n", b"\x04\x14bywg\n", b"\x04\x14d29y\n",
                     b"\x04\x14bGQh\n", b"\x04\x14et4=\n"]
    d = serial.Decoder()
    assert [d.feed(x) for x in lines] == [None] * 5 + [b"Hello, world!"]


def test_serial_decoder_refusals():
    d = serial.Decoder()
    assert "CRC16 mismatch" in str(raises(FramingError, d.feed, b"\x06\tAA9IZWxsbywgd29ybGQheu4=\n"))
    assert "continuation line without a start line" in str(
        raises(FramingError, d.feed, b"\x04\x14ZWxs\n"))
    assert "bad base64" in str(raises(FramingError, d.feed, b"\x06\t*A9I\n"))
    big = serial.Decoder(max_frame=64)
    assert "frame longer than 64 bytes" in str(raises(FramingError, big.feed, serial.encode(bytes(100))[0]))
    assert "frame length 102 out of range" in str(raises(FramingError, big.feed, b"\x06\tAGYA\n"))
    # after an error the next start line is a fresh frame
    assert d.feed(b"\x06\tAA9IZWxsbywgd29ybGQhet4=\r\n") == b"Hello, world!"


def test_splitter_shares_the_line_with_console_text():
    s = serial.Splitter()
    wire = b"status\r\n" + b"".join(serial.encode(b"Hello, world!", 8)) + b"pcrs\n"
    items = []
    for i in range(0, len(wire), 5):  # arrives in pieces
        items += s.feed(wire[i:i + 5])
    assert items == [("text", b"status\r\n"), ("smp", b"Hello, world!"), ("text", b"pcrs\n")]


def test_header_round_trip_and_refusals():
    h, payload = H.parse(b"\x08\x00\x00\x02\x00\x01\x07\x00\xa0\x00"[:8] + b"\xa0\x00")
    assert (h.op, h.version, h.length, h.group, h.seq, h.command) == (0, 1, 2, 1, 7, 0)
    assert payload == b"\xa0\x00"
    assert h.pack() == b"\x08\x00\x00\x02\x00\x01\x07\x00"
    assert h.response(5).pack() == b"\x09\x00\x00\x05\x00\x01\x07\x00"
    assert "shorter than the 8-byte" in str(raises(SmpError, H.parse, b"\x08\x00"))
    assert "header says 4 payload bytes, frame has 0" in str(
        raises(SmpError, H.parse, b"\x08\x00\x00\x04\x00\x01\x07\x00"))
    assert "reserved header bits" in str(raises(SmpError, H.parse, b"\x28" + bytes(7)))


def _request(server, op, group, command, body, version=1):
    from firmware.smp import cbor as c
    payload = c.encode(body)
    frame = H.Header(op, version, 0, len(payload), group, 9, command).pack() + payload
    answer = server.handle(frame)
    h, p = H.parse(answer)
    assert (h.op, h.group, h.seq, h.command) == (op + 1, group, 9, command)
    return c.decode(p)


def test_server_names_a_bad_field_and_never_raises():
    from firmware.smp.server import SmpServer

    class NoSlots:  # the requests below are refused before any slot is touched
        pass

    s = SmpServer(NoSlots(), None)
    ans = _request(s, H.OP_WRITE, H.GROUP_IMAGE, H.IMG_UPLOAD, {"off": "0", "data": b"", "len": 5})
    assert ans == {"rc": 3, "rsn": "bad request: off must be a non-negative integer (field off)"}
    ans = _request(s, H.OP_WRITE, H.GROUP_OS, H.OS_ECHO, {"d": 5}, version=0)
    assert ans == {"rc": 3, "rsn": "bad request: d must be a text string (field d)"}
    ans = _request(s, H.OP_READ, 9, 0, {})
    assert ans == {"rc": 8, "rsn": "smp: group 9 command 0 (read) is not supported"}
    assert s.handle(b"\x08\x00") is None and "shorter than the 8-byte" in s.events[-1]
    assert _request(s, H.OP_WRITE, H.GROUP_OS, H.OS_ECHO, {"d": "hi"}) == {"r": "hi"}
