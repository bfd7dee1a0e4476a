# firmware.sip.sdp: SDP parse/serialise, a=crypto (RFC 4568 §9.1), offer/answer (RFC 3264)
# with the strongest common SRTP suite and refusal of insecure offers. pytest + MicroPython.
import binascii

from firmware.sip import sdp
from firmware.sip.sdp import Crypto, LocalMedia, NegotiationError, SdpError, SessionDescription
from tests.unit.firmware.check import raises

# RFC 4568 §9.1-style offer (key text is our own: 30 octets 0x00..0x1d, base64)
KEY30 = binascii.b2a_base64(bytes(range(30))).decode().strip()
OFFER = ("v=0\r\n"
         "o=- 25678 753849 IN IP4 192.0.2.1\r\n"
         "s=-\r\n"
         "c=IN IP4 192.0.2.1\r\n"
         "t=0 0\r\n"
         "m=audio 49170 RTP/SAVP 0 8 101\r\n"
         "a=rtpmap:0 PCMU/8000\r\n"
         "a=rtpmap:8 PCMA/8000\r\n"
         "a=rtpmap:101 telephone-event/8000\r\n"
         "a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:%s|2^20|1:4\r\n"
         "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:%s|2^20\r\n"
         "a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:%s\r\n"
         "a=sendrecv\r\n") % (KEY30, KEY30, KEY30)


def test_parse_serialise_byte_exact():
    sd = SessionDescription.parse(OFFER.encode())
    assert sd.origin == "- 25678 753849 IN IP4 192.0.2.1" and sd.connection == "192.0.2.1"
    m = sd.media[0]
    assert m.media == "audio" and m.port == 49170 and m.proto == "RTP/SAVP"
    assert m.formats == ["0", "8", "101"] and len(m.attr("crypto")) == 3
    assert sd.serialize() == OFFER.encode()


def test_crypto_attribute_fields():
    c = Crypto.parse("1 AES_CM_128_HMAC_SHA1_32 inline:%s|2^20|1:4" % KEY30)
    assert c.tag == 1 and c.key == bytes(range(16)) and c.salt == bytes(range(16, 30))
    assert c.lifetime == 1 << 20 and c.mki == 1 and c.mki_length == 4
    g = Crypto.parse("7 AEAD_AES_128_GCM inline:" + binascii.b2a_base64(bytes(28)).decode().strip())
    assert len(g.key) == 16 and len(g.salt) == 12       # RFC 7714 §12: 96-bit salt
    assert str(Crypto(3, "AES_CM_128_HMAC_SHA1_80", bytes(range(16)), bytes(range(16, 30)))) == \
        "3 AES_CM_128_HMAC_SHA1_80 inline:" + KEY30
    e = raises(SdpError, Crypto.parse, "1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY30[:-4])
    assert "30 octets" in str(e) and e.field == "a=crypto"
    e = raises(SdpError, Crypto.parse, "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!" + KEY30[4:])
    assert "non-base64" in str(e)
    e = raises(SdpError, Crypto.parse, "x AES_CM_128_HMAC_SHA1_80 inline:" + KEY30)
    assert "tag" in str(e)


def test_answer_picks_strongest_common_suite():
    local = LocalMedia("192.0.2.9", 40000)
    ans, mp = sdp.create_answer(OFFER.encode(), local, True)
    # tag 1 carries an MKI (not supported), so 80 beats 32 (tag 3)
    assert mp.suite == "AES_CM_128_HMAC_SHA1_80" and mp.rx_key == bytes(range(16))
    assert mp.remote_address == "192.0.2.1" and mp.remote_port == 49170
    assert mp.payload_type == 0 and mp.codec == "PCMU" and mp.telephone_event == 101
    am = ans.media[0]
    assert am.proto == "RTP/SAVP" and am.formats == ["0", "101"] and am.port == 40000
    lines = am.attr("crypto")
    assert len(lines) == 1 and lines[0].startswith("2 AES_CM_128_HMAC_SHA1_80 inline:")
    assert Crypto.parse(lines[0]).key == mp.tx_key and mp.tx_key != mp.rx_key


def test_offer_answer_between_two_phones_prefers_gcm():
    a = LocalMedia("192.0.2.1", 4000)
    b = LocalMedia("192.0.2.2", 5000, codecs=(8, 0))
    offer, offered = sdp.create_offer(a, True)
    assert [c.suite for c in offered] == list(sdp.PREFERENCE)
    answer, mb = sdp.create_answer(offer.serialize(), b, True)
    ma = sdp.accept_answer(answer.serialize(), offered, a, True)
    assert ma.suite == mb.suite == "AEAD_AES_128_GCM"
    assert ma.tx_key == mb.rx_key and ma.tx_salt == mb.rx_salt
    assert ma.rx_key == mb.tx_key and ma.rx_salt == mb.tx_salt
    assert ma.payload_type == mb.payload_type == 0        # offerer's order wins (RFC 3264 §6.1)
    assert ma.remote_port == 5000 and mb.remote_port == 4000
    # only the 32-bit suite in common
    c = LocalMedia("192.0.2.3", 6000, suites=("AES_CM_128_HMAC_SHA1_32",))
    answer, mc = sdp.create_answer(offer.serialize(), c, True)
    assert mc.suite == "AES_CM_128_HMAC_SHA1_32"
    assert sdp.accept_answer(answer, offered, a, True).suite == "AES_CM_128_HMAC_SHA1_32"


def test_insecure_offers_refused_unless_test_mode():
    plain = OFFER.replace("RTP/SAVP", "RTP/AVP")
    local = LocalMedia("192.0.2.9", 40000)
    e = raises(NegotiationError, sdp.create_answer, plain, local, True)
    assert "plain RTP" in str(e) and e.status == 488
    e = raises(NegotiationError, sdp.create_answer, OFFER, local, False)
    assert "not TLS" in str(e)
    nocrypto = "".join(l + "\r\n" for l in OFFER.split("\r\n") if l and not l.startswith("a=crypto"))
    e = raises(NegotiationError, sdp.create_answer, nocrypto, local, True)
    assert "no acceptable a=crypto" in str(e)
    e = raises(NegotiationError, sdp.create_offer, local, False)
    assert "not TLS" in str(e)
    # explicit insecure test mode
    test = LocalMedia("192.0.2.9", 40000, insecure=True)
    ans, mp = sdp.create_answer(plain, test, False)
    assert not mp.secure and ans.media[0].proto == "RTP/AVP" and not ans.media[0].attr("crypto")


def test_answer_mismatch_refused_by_offerer():
    a = LocalMedia("192.0.2.1", 4000)
    offer, offered = sdp.create_offer(a, True)
    answer, _ = sdp.create_answer(offer, LocalMedia("192.0.2.2", 5000), True)
    forged = answer.serialize().replace(b"a=crypto:1 AEAD_AES_128_GCM", b"a=crypto:1 AES_CM_128_HMAC_SHA1_32")
    e = raises((NegotiationError, SdpError), sdp.accept_answer, forged, offered, a, True)
    assert "crypto" in str(e)
    downgraded = answer.serialize().replace(b"RTP/SAVP", b"RTP/AVP")
    e = raises(NegotiationError, sdp.accept_answer, downgraded, offered, a, True)
    assert "plain RTP" in str(e)


def test_malformed_sdp_is_typed():
    e = raises(SdpError, SessionDescription.parse, b"v=1\r\n")
    assert "v=0" in str(e) and e.field == "line 1"
    e = raises(SdpError, SessionDescription.parse, OFFER.replace("m=audio 49170", "m=audio 99999"))
    assert "bad port" in str(e) and e.field == "line 6"
    e = raises(SdpError, SessionDescription.parse, OFFER.replace("c=IN IP4 192.0.2.1", "c=IN IP4 1.2.3"))
    assert "IPv4" in str(e)
    e = raises(SdpError, SessionDescription.parse, b"v=0\r\nfoo\r\n")
    assert "<type>=<value>" in str(e)
    e = raises(SdpError, SessionDescription.parse, b"\xff")
    assert "UTF-8" in str(e)


def test_session_params_that_weaken_protection_are_not_chosen():
    # RFC 4568 §6.3: an offer line with UNENCRYPTED_SRTP is skipped; WSH alone is fine
    weak = OFFER.replace("a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:%s|2^20" % KEY30,
                         "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:%s|2^20 UNENCRYPTED_SRTP" % KEY30)
    weak = weak.replace("a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:%s" % KEY30,
                        "a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:%s WSH=64" % KEY30)
    _, mp = sdp.create_answer(weak, LocalMedia("192.0.2.9", 40000), True)
    assert mp.suite == "AES_CM_128_HMAC_SHA1_32"
    c = Crypto.parse("3 AES_CM_128_HMAC_SHA1_32 inline:%s UNENCRYPTED_SRTCP KDR=1" % KEY30)
    assert c.session_params == ["UNENCRYPTED_SRTCP", "KDR=1"] and c.weakened()
    # and an answer that weakens the chosen line is refused by the offerer
    a = LocalMedia("192.0.2.1", 4000)
    offer, offered = sdp.create_offer(a, True)
    answer, _ = sdp.create_answer(offer, LocalMedia("192.0.2.2", 5000), True)
    text = answer.serialize().decode()
    line = [ln for ln in text.split("\r\n") if ln.startswith("a=crypto:")][0]
    bad = text.replace(line, line + " UNAUTHENTICATED_SRTP")
    e = raises(NegotiationError, sdp.accept_answer, bad, offered, a, True)
    assert str(e) == "answer's a=crypto weakens protection: UNAUTHENTICATED_SRTP"


def test_value_attribute_without_value_is_typed_not_none():
    # issue 9: `a=crypto` / `a=rtpmap` without a value used to become None and crash the UA
    for bare, line in ((b"a=crypto", 10), (b"a=rtpmap", 7), (b"a=crypto:", 10), (b"a=rtpmap: ", 7)):
        first = b"a=crypto:1" if bare.startswith(b"a=crypto") else b"a=rtpmap:0 PCMU/8000"
        data = OFFER.encode()
        start = data.index(first)
        end = data.index(b"\r\n", start)
        bad = data[:start] + bare + data[end:]
        e = raises(SdpError, SessionDescription.parse, bad)
        name = bare[2:].rstrip(b": ").decode()
        assert str(e) == "a=%s without a value (field line %d)" % (name, line), str(e)
        assert e.status == 488
        e = raises(SdpError, sdp.create_answer, bad,
                   LocalMedia("192.0.2.9", 40000), True)
        assert "without a value" in str(e)


def test_crypto_parse_refuses_non_text():
    e = raises(SdpError, Crypto.parse, None)
    assert str(e) == "crypto attribute has no value (field a=crypto)"
    e = raises(SdpError, Crypto.parse, "")
    assert str(e) == "crypto needs tag, suite and key-params (field a=crypto)"


def test_attr_never_hands_out_none():
    sd = SessionDescription.parse(OFFER.encode())
    m = sd.media[0]
    assert m.has("sendrecv") and not m.has("recvonly")
    e = raises(SdpError, m.attr, "sendrecv")   # a property attribute asked for as a value
    assert str(e) == "a=sendrecv has no value (field a=sendrecv)"
    # an unknown attribute keeps its bare form on the wire, byte-exact
    raw = OFFER.replace("a=sendrecv\r\n", "a=x-flag\r\na=sendrecv\r\n").encode()
    assert SessionDescription.parse(raw).serialize() == raw


def test_rtpmap_grammar():
    # RFC 4566 §6: a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]
    assert sdp.parse_rtpmap("0 PCMU/8000") == ("0", "pcmu/8000")
    assert sdp.parse_rtpmap("111 opus/48000/2") == ("111", "opus/48000/2")
    for bad, msg in (("0", "a=rtpmap needs '<payload type 0-127> <encoding>/<rate>', got '0'"),
                     ("x PCMU/8000", "a=rtpmap needs '<payload type 0-127> <encoding>/<rate>', got 'x PCMU/8000'"),
                     ("128 PCMU/8000", "a=rtpmap needs '<payload type 0-127> <encoding>/<rate>', got '128 PCMU/8000'"),
                     ("0 PCMU", "a=rtpmap encoding must be '<name>/<clock rate>[/<params>]', got 'PCMU'"),
                     ("0 PCMU/", "a=rtpmap encoding must be '<name>/<clock rate>[/<params>]', got 'PCMU/'"),
                     ("0 /8000", "a=rtpmap encoding must be '<name>/<clock rate>[/<params>]', got '/8000'"),
                     ("0 a/1/2/3", "a=rtpmap encoding must be '<name>/<clock rate>[/<params>]', got 'a/1/2/3'")):
        e = raises(SdpError, sdp.parse_rtpmap, bad)
        assert str(e) == msg + " (field a=rtpmap)", str(e)
    bad = OFFER.replace("a=rtpmap:8 PCMA/8000", "a=rtpmap:8 PCMA").encode()
    e = raises(SdpError, SessionDescription.parse, bad)
    assert str(e) == "a=rtpmap encoding must be '<name>/<clock rate>[/<params>]', got 'PCMA' (field line 8)"


def test_crypto_lifetime_bounds():
    # RFC 4568 §6.1 lifetime; RFC 3711 §9.2: never more than 2^48 packets per master key
    assert Crypto.parse("1 AES_CM_128_HMAC_SHA1_80 inline:%s|2^48" % KEY30).lifetime == 1 << 48
    assert Crypto.parse("1 AES_CM_128_HMAC_SHA1_80 inline:%s|1000" % KEY30).lifetime == 1000
    for bad in ("2^49", "2^64", "0", "281474976710657", "2^", "2^1000"):
        e = raises(SdpError, Crypto.parse, "1 AES_CM_128_HMAC_SHA1_80 inline:%s|%s" % (KEY30, bad))
        assert "lifetime" in str(e), (bad, str(e))
    e = raises(SdpError, Crypto.parse, "1 AES_CM_128_HMAC_SHA1_80 inline:%s|2^49" % KEY30)
    assert str(e) == "lifetime 2^49 outside 1..2^48 packets (field a=crypto)"


def test_answer_carries_the_offered_key_lifetime():
    offer = OFFER.replace("a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:%s|2^20|1:4\r\n" % KEY30, "")
    _, mp = sdp.create_answer(offer, LocalMedia("192.0.2.9", 40000), True)
    assert mp.suite == "AES_CM_128_HMAC_SHA1_80" and mp.rx_lifetime == 1 << 20
    assert mp.tx_lifetime is None
