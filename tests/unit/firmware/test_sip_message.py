# firmware.sip.message: RFC 3261 parsing/serialising and the RFC 4475 torture messages
# (tests/data/sip/torture: our own messages written from each case's description).
# Runs under pytest and MicroPython.
import os

from firmware.sip.message import (
    NameAddr, Request, Response, SipParseError, SipUri, StreamFramer, Via, parse_message,
)
from tests.unit.firmware.check import raises


def _data_dir():
    here = __file__
    i = here.find("tests/unit/firmware")
    root = here[:i] if i > 0 else ""
    return root + "tests/data/sip/torture/"


def _load(kind, name):
    with open(_data_dir() + kind + "/" + name, "rb") as f:
        return f.read()


def _names(kind):
    return sorted(n for n in os.listdir(_data_dir() + kind) if n.endswith(".sip"))


REGISTER = (
    b"REGISTER sip:127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS 10.0.2.15:40000;branch=z9hG4bK776asdhds;rport;alias\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:alice@127.0.0.1>;tag=1928301774\r\n"
    b"To: <sip:alice@127.0.0.1>\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 314159 REGISTER\r\n"
    b"Contact: <sip:alice@10.0.2.15:40000;transport=tls;ob>;expires=600\r\n"
    b"Expires: 600\r\n"
    b"Content-Length: 0\r\n\r\n")


def test_request_round_trip_byte_exact():
    # RFC 3261 §7.1 request line, §7.3 headers; our canonical form re-serialises identically
    m = parse_message(REGISTER)
    assert isinstance(m, Request)
    assert m.method == "REGISTER" and str(m.uri) == "sip:127.0.0.1"
    assert m.cseq.seq == 314159 and m.cseq.method == "REGISTER"
    assert m.call_id == "a84b4c76e66710"
    v = m.via
    assert v.transport == "TLS" and v.host == "10.0.2.15" and v.port == 40000
    assert v.branch == "z9hG4bK776asdhds" and v.param("rport") == "" and v.param("alias") == ""
    c = m.contacts()[0]
    assert c.uri.param("transport") == "tls" and c.uri.param("ob") == "" and c.param("expires") == "600"
    assert m.from_.tag == "1928301774" and m.to.tag is None
    assert m.serialize() == REGISTER


def test_response_round_trip_and_body():
    raw = (b"SIP/2.0 200 OK\r\n"
           b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;received=192.0.2.7\r\n"
           b"From: \"Bob\" <sips:bob@biloxi.example.com>;tag=a73kszlfl\r\n"
           b"To: <sips:alice@atlanta.example.com>;tag=1410948204\r\n"
           b"Call-ID: 12345601@atlanta.example.com\r\n"
           b"CSeq: 1 INVITE\r\n"
           b"Content-Type: application/sdp\r\n"
           b"Content-Length: 4\r\n\r\nv=0\n")
    m = parse_message(raw)
    assert isinstance(m, Response) and m.status == 200 and m.reason == "OK"
    assert m.body == b"v=0\n"
    assert m.from_.display == '"Bob"' and m.from_.uri.scheme == "sips"
    assert m.via.param("received") == "192.0.2.7"
    assert m.serialize() == raw


def test_compact_forms_folding_and_multiple_values():
    # §7.3.3 compact names, §7.3.1 folding and comma-separated values across lines
    raw = (b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
           b"v: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,\r\n"
           b"   SIP/2.0/TCP b.example.com:5070;branch=z9hG4bK2\r\n"
           b"f: <sip:alice@example.com>;tag=1\r\n"
           b"t: sip:bob@example.com\r\n"
           b"i: abc\r\n"
           b"CSeq: 2 OPTIONS\r\n"
           b"m: <sip:alice@a.example.com>, \"A, B\" <sip:ab@b.example.com>;q=0.5\r\n"
           b"l: 0\r\n\r\n")
    m = parse_message(raw)
    vias = m.vias
    assert [v.host for v in vias] == ["a.example.com", "b.example.com"]
    assert vias[1].port == 5070 and vias[1].transport == "TCP"
    cs = m.contacts()
    assert len(cs) == 2 and cs[1].display == '"A, B"' and cs[1].param("q") == "0.5"
    assert m.get("Call-ID") == "abc" and m.get("call-id") == "abc" and m.get("i") == "abc"
    # serialised with canonical long names
    assert b"\r\nCall-ID: abc\r\n" in m.serialize()
    assert m.serialize().startswith(b"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com:5070;branch=z9hG4bK2\r\n")


def test_uri_forms():
    u = SipUri.parse("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=hi")
    assert u.scheme == "sips" and u.user == "alice" and u.password == "secret"
    assert u.host == "[2001:db8::1]" and u.port == 5061
    assert u.param("lr") == "" and u.param("transport") == "tcp" and u.headers == "subject=hi"
    assert str(u) == "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=hi"
    assert str(SipUri.parse("tel:+1-201-555-0123")) == "tel:+1-201-555-0123"
    e = raises(SipParseError, SipUri.parse, "sip:bob@exa mple.com")
    assert "illegal character" in str(e) and e.field == "uri"
    e = raises(SipParseError, SipUri.parse, "sip:bob@example.com:70000")
    assert "exceeds 65535" in str(e)
    e = raises(SipParseError, SipUri.parse, "bob@example.com")
    assert "no scheme" in str(e)


def test_name_addr_and_via_errors():
    na = NameAddr.parse('"A \\"quoted\\" name" <sip:a@b.c>;tag=x', "From")
    assert na.display == '"A \\"quoted\\" name"' and na.tag == "x"
    assert str(na) == '"A \\"quoted\\" name" <sip:a@b.c>;tag=x'
    e = raises(SipParseError, NameAddr.parse, "<sip:a@b.c", "To")
    assert "missing '>'" in str(e) and e.field == "To"
    e = raises(SipParseError, Via.parse, "SIP/3.0/UDP host")
    assert "sent-protocol" in str(e)
    e = raises(SipParseError, Via.parse, "SIP/2.0/UDP host;branch=")
    assert "empty value" in str(e)


def test_missing_headers_and_framing_errors():
    e = raises(SipParseError, parse_message, REGISTER.replace(b"Call-ID: a84b4c76e66710\r\n", b""))
    assert e.field == "Call-ID" and "missing" in str(e) and e.status == 400
    e = raises(SipParseError, parse_message, REGISTER[:-2])
    assert "no empty line" in str(e)
    e = raises(SipParseError, parse_message, REGISTER.replace(b"CSeq: 314159", b"CSeq: 2147483648"))
    assert "exceeds 2147483647" in str(e) and e.field == "CSeq"
    e = raises(SipParseError, parse_message, REGISTER.replace(b"Max-Forwards: 70\r\n", b"Bad Header: x\r\n"))
    assert "malformed header line" in str(e) and e.offset is not None
    # stream transports need Content-Length (§18.3)
    e = raises(SipParseError, parse_message, REGISTER.replace(b"Content-Length: 0\r\n", b""), True)
    assert "mandatory" in str(e)
    e = raises(SipParseError, parse_message, REGISTER.replace(b"Content-Length: 0\r\n",
                                                            b"Content-Length: 0\r\nl: 0\r\n"))
    assert "2 Content-Length" in str(e)


def test_stream_framer_splits_and_keepalives():
    # RFC 5626 §3.5.1: CRLFCRLF ping, CRLF pong, interleaved with framed messages
    f = StreamFramer()
    body_msg = REGISTER.replace(b"Content-Length: 0", b"Content-Length: 5") + b"hello"
    items = f.feed(b"\r\n\r\n" + REGISTER + body_msg[:30])
    assert [k for k, _ in items] == ["ping", "message"]
    assert items[1][1] == REGISTER
    items = f.feed(body_msg[30:] + b"\r\n")
    assert [k for k, _ in items] == ["message", "pong"]
    assert parse_message(items[0][1], True).body == b"hello"
    e = raises(SipParseError, f.feed, b"INVITE sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n")
    assert e.field == "Content-Length"


def test_torture_valid_messages_accepted():
    # RFC 4475 §3.1.1: every valid message parses and its key fields come out right
    names = _names("valid")
    assert len(names) == 13
    for name in names:
        m = parse_message(_load("valid", name))
        assert m.call_id and m.cseq.seq >= 0, name
    m = parse_message(_load("valid", "wsinv.sip"))         # §3.1.1.1
    assert m.to.tag == "1918181833n" and m.from_.tag == "98asjd8"
    assert m.get("Max-Forwards") == "0068" and m.cseq.seq == 9
    assert [v.branch for v in m.vias] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert m.contacts()[0].param("q") == "0.33" and m.get("Subject") == ""
    assert m.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert len(m.body) == int(m.get("Content-Length")) and m.body.startswith(b"v=0\r\n")
    m = parse_message(_load("valid", "intmeth.sip"))       # §3.1.1.2
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    m = parse_message(_load("valid", "escnull.sip"))       # §3.1.1.4
    assert [c.uri.user for c in m.contacts()] == ["%00", "%00%00"]
    m = parse_message(_load("valid", "dblreq.sip"))        # §3.1.1.8: trailing INVITE ignored
    assert m.method == "REGISTER" and m.body == b""
    m = parse_message(_load("valid", "semiuri.sip"))       # §3.1.1.9
    assert m.uri.user == "user;par=u%40example.net" and m.uri.host == "example.com"
    m = parse_message(_load("valid", "transports.sip"))    # §3.1.1.10
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    m = parse_message(_load("valid", "mpart01.sip"))       # §3.1.1.11: binary body kept exactly
    assert m.body.endswith(b"\r\n--boundary42--\r\n") and bytes(range(256)) in m.body
    m = parse_message(_load("valid", "noreason.sip"))      # §3.1.1.13
    assert m.status == 100 and m.reason == ""
    m = parse_message(_load("valid", "unreason.sip"))      # §3.1.1.12
    assert m.status == 200 and m.reason.startswith("= 2**3 * 5**2 ")


def test_torture_invalid_messages_rejected():
    # RFC 4475 §3.1.2: each is refused with a typed error naming the field
    expect = {
        "badinv01.sip": "From", "clerr.sip": "Content-Length", "ncl.sip": "Content-Length",
        "scalar02.sip": "CSeq", "scalarlg.sip": "CSeq", "quotbal.sip": "To",
        "ltgtruri.sip": "request-line", "lwsruri.sip": "request-line", "lwsstart.sip": "request-line",
        "trws.sip": "request-line", "escruri.sip": "Request-URI", "baddate.sip": "Date",
        "regbadct.sip": "Contact", "badaspec.sip": "To", "baddn.sip": "From",
        "badvers.sip": "request-line", "mismatch01.sip": "CSeq", "mismatch02.sip": "CSeq",
        "bigcode.sip": "status-line",
    }
    names = _names("invalid")
    assert sorted(expect) == names
    for name in names:
        e = raises(SipParseError, parse_message, _load("invalid", name))
        assert e.field == expect[name], (name, str(e))
        assert e.status == (505 if name == "badvers.sip" else 400), name


def test_value_parameter_without_value_is_typed():
    # RFC 3261 §25.1: `;tag` and `;branch` without '=token' are malformed, never an empty tag
    e = raises(SipParseError, NameAddr.parse, "<sip:bob@example.test>;tag", "From")
    assert str(e) == "parameter tag needs a value (field From)"
    e = raises(SipParseError, Via.parse, "SIP/2.0/TLS 10.0.0.1:5061;branch", "Via")
    assert str(e) == "parameter branch needs a value (field Via)"
    assert Via.parse("SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bKx;rport", "Via").param("rport") == ""
    raw = REGISTER.replace(b";tag=", b";tag;x=", 1)
    e = raises(SipParseError, parse_message, raw, True)
    assert "parameter tag needs a value" in str(e) and e.status == 400
