# Evidence in SIP (docs/attestation.md "Evidence in SIP"): the multipart/mixed body that carries
# it beside the SDP (RFC 5621, RFC 2046 §5.1), the call-binding nonce (firmware.sip.callbind), and
# two real UA cores in attest mode through the test proxy of test_sip_ua. Byte-exact where the
# wire format is ours. Runs under pytest and MicroPython.
from firmware import compat
from firmware.sip import callbind, multipart, sdp, ua as sipua
from firmware.sip.message import Request, parse_message
from firmware.sip.sdp import Crypto, LocalMedia
from tests.unit.firmware.check import raises
from tests.unit.firmware.test_sip_ua import REALM, MiniProxy, Net, events

SDP = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/SAVP 0\r\n"
       b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n")
EVIDENCE = b'{"nonce":"00","version":1}'


def test_build_is_byte_exact_and_splits_back():
    ctype, body = multipart.build(SDP, EVIDENCE, boundary="tp-0123")
    assert ctype == "multipart/mixed;boundary=tp-0123"
    assert body == (b"--tp-0123\r\n"
                    b"Content-Type: application/sdp\r\n"
                    b"Content-Disposition: session\r\n\r\n" + SDP + b"\r\n"
                    b"--tp-0123\r\n"
                    b"Content-Type: application/vnd.trusted-phone.evidence+json\r\n"
                    b"Content-Disposition: attestation;handling=optional\r\n\r\n" + EVIDENCE + b"\r\n"
                    b"--tp-0123--\r\n"), body
    parts = multipart.split(ctype, body)
    assert [(p.content_type, p.disposition, p.handling) for p in parts] == [
        ("application/sdp", "session", "required"),
        ("application/vnd.trusted-phone.evidence+json", "attestation", "optional")]
    assert parts[0].content == SDP and parts[1].content == EVIDENCE
    assert multipart.sdp_and_evidence(ctype, body) == (SDP, EVIDENCE, "application/sdp")
    # a quoted boundary, a preamble and an epilogue (RFC 2046 §5.1.1) are fine
    quoted = 'multipart/mixed; boundary="tp-0123"'
    assert multipart.sdp_and_evidence(quoted, b"preamble\r\n" + body + b"epilogue") == \
        (SDP, EVIDENCE, "application/sdp")
    # plain SDP passes through; another type gives no SDP
    assert multipart.sdp_and_evidence("application/sdp", SDP) == (SDP, None, "application/sdp")
    assert multipart.sdp_and_evidence("text/plain", b"x") == (None, None, "text/plain")
    # the boundary may not occur in a part
    e = raises(ValueError, multipart.build, SDP, b"--tp-0123", boundary="tp-0123")
    assert str(e) == "multipart boundary occurs in a part"


def test_malformed_multipart_bodies_are_refused_with_the_reason():
    ctype, body = multipart.build(SDP, EVIDENCE, boundary="b1")
    cases = [
        ("multipart/mixed", body, 400, "multipart/mixed without a 1-70 character boundary"),
        (ctype, body[:body.rfind(b"\r\n--b1--")], 400, "multipart body has no close-delimiter"),
        (ctype, body.replace(b"--b1--", b"--b1xx"), 400, "multipart boundary line has trailing characters"),
        (ctype, b"no delimiter here", 400, "multipart body has no boundary line"),
        (ctype, body.replace(b"\r\n\r\nv=0", b"\r\nv=0", 1), 400,
         "multipart part 1 has no empty line after its headers"),
        (ctype, body.replace(b"Content-Disposition: session", b"Bogus header"), 400,
         "multipart part 1 has a malformed header line 'Bogus header'"),
        (ctype, body.replace(b"Content-Type: application/vnd.trusted-phone.evidence+json\r\n"
                             b"Content-Disposition: attestation;handling=optional",
                             b"Content-Type: application/x-unknown"), 415,
         "multipart part application/x-unknown (no disposition) is required and not understood"),
        (ctype, body.replace(b"Content-Type: application/vnd.trusted-phone.evidence+json\r\n"
                             b"Content-Disposition: attestation;handling=optional",
                             b"Content-Type: application/sdp"), 400, "multipart body has two SDP parts"),
        (ctype, body.replace(b"Content-Disposition: session", b"Content-Transfer-Encoding: base64"),
         415, "multipart part 1: Content-Transfer-Encoding base64 is not supported"),
        ("multipart", body, 400, "Content-Type 'multipart' is not type/subtype"),
    ]
    for ct, b, status, why in cases:
        try:
            multipart.sdp_and_evidence(ct, b)
        except multipart.BodyError as e:
            assert (e.status, e.reason) == (status, why), (e.status, e.reason, why)
        else:
            raise AssertionError("accepted: %r" % why)
    # an unknown part marked optional is ignored (RFC 5621 §3.2)
    opt = body.replace(b"application/vnd.trusted-phone.evidence+json", b"application/x-unknown")
    assert multipart.sdp_and_evidence(ctype, opt) == (SDP, None, "application/sdp")
    many = b"".join([b"--b1\r\nContent-Type: text/x\r\nContent-Disposition: x;handling=optional"
                     b"\r\n\r\nx\r\n"] * 9) + b"--b1--\r\n"
    e = raises(multipart.BodyError, multipart.split, ctype, many)
    assert e.reason == "multipart body has more than 8 parts"


def _lp(b):
    return len(b).to_bytes(2, "big") + b


def test_nonce_derivation_known_answer_and_every_input_counts():
    c = Crypto.parse("1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz")
    got = callbind.evidence_nonce("offer", "cid-1", "ftag", "", "sip:alice@example.test",
                                  "sip:bob@example.test", [c])
    # spelled out from the derivation in firmware/sip/callbind.py (docs/attestation.md)
    want = compat.sha256(b"trusted-phone sip evidence v1\x00" + _lp(b"offer") + _lp(b"cid-1")
                         + _lp(b"ftag") + _lp(b"") + _lp(b"sip:alice@example.test")
                         + _lp(b"sip:bob@example.test") + b"\x00\x00\x00\x01"
                         + _lp(b"AES_CM_128_HMAC_SHA1_80") + _lp(c.key + c.salt))
    assert got == want and len(got) == 32
    assert got.hex() == "%s" % want.hex()
    base = ("offer", "cid-1", "ftag", "", "sip:alice@example.test", "sip:bob@example.test", [c])
    other_key = Crypto(1, "AES_CM_128_HMAC_SHA1_80", b"\x01" * 16, c.salt)
    for i, v in enumerate(("answer", "cid-2", "gtag", "ttag", "sip:mallory@example.test",
                           "sip:carol@example.test", [other_key])):
        args = list(base)
        args[i] = v
        assert callbind.evidence_nonce(*args) != got, i
    assert callbind.aor("sips:Bob@EXAMPLE.test:5061;transport=tls") == "sip:Bob@example.test"
    e = raises(ValueError, callbind.aor, "sip:example.test")
    assert str(e) == "URI sip:example.test has no user part: not an address-of-record"
    e = raises(ValueError, callbind.evidence_nonce, "reply", *base[1:])
    assert str(e) == "role must be one of offer, answer"


USERS = {"alice": "alicepw", "bob": "bobpw", "carol": "carolpw"}


def _ua(user, n, attest=True):
    return sipua.UserAgent(sipua.UaConfig(user, REALM, USERS[user], "TLS", "10.0.0.%d" % n, 40000 + n,
                                          keepalive_ms=30000, attest=attest), 0)


def _lab(attest=(True, True, True)):
    proxy = MiniProxy(USERS)
    uas = {"alice": _ua("alice", 1, attest[0]), "bob": _ua("bob", 2, attest[1]),
           "carol": _ua("carol", 3, attest[2])}
    net = Net(proxy, uas)
    for u in uas.values():
        u.register(0)
    net.pump(0)
    for u in uas.values():
        assert [type(e).__name__ for e in events(u)] == ["Registered"]
    return proxy, uas, net


def _invites(proxy, to_flow=None):
    return [m for f, m in proxy.log if isinstance(m, Request) and m.method == "INVITE"]


def test_attested_call_carries_evidence_both_ways_bound_to_the_call():
    proxy, u, net = _lab()
    a, b = u["alice"], u["bob"]
    cid = a.call("sip:bob@example.test", LocalMedia("10.0.0.1", 4000), 1000)
    ev = events(a)
    assert [type(e).__name__ for e in ev] == ["EvidenceNeeded"] and ev[0].role == "offer"
    nonce_a = ev[0].nonce
    assert a.data_to_send() == [] and a.calls[cid].state == "attesting"   # nothing left yet
    a.provide_evidence(cid, b'{"who":"alice"}', 1001)
    net.pump(1001)
    inv = _invites(proxy)[-1]
    assert inv.get("Content-Type").startswith("multipart/mixed;boundary=tp-")
    eb = events(b)
    assert [type(e).__name__ for e in eb] == ["CallOffered"]
    assert eb[0].evidence == b'{"who":"alice"}' and eb[0].evidence_nonce == nonce_a
    assert events(a) == []           # nothing rings before bob judged alice
    b.ring(cid, 1002)
    net.pump(1002)
    assert [type(e).__name__ for e in events(a)] == ["CallRinging"]
    eb = events(b)
    assert [type(e).__name__ for e in eb] == ["IncomingCall"] and eb[0].evidence_nonce == nonce_a
    b.answer(cid, LocalMedia("10.0.0.2", 5000), 1100)
    ev = events(b)
    assert [type(e).__name__ for e in ev] == ["EvidenceNeeded"] and ev[0].role == "answer"
    nonce_b = ev[0].nonce
    b.provide_evidence(cid, b'{"who":"bob"}', 1101)
    net.pump(1101)
    ea, eb = events(a), events(b)
    assert [type(e).__name__ for e in ea] == ["CallAnswered"]
    assert ea[0].evidence == b'{"who":"bob"}' and ea[0].evidence_nonce == nonce_b
    assert [type(e).__name__ for e in eb] == ["CallAnswered"]
    assert ea[0].media.tx_key == eb[0].media.rx_key     # the SDP still negotiated as before
    assert nonce_a != nonce_b
    # the caller's nonce is recomputed from what the callee received (the wire), not shared state
    sdp_part = multipart.sdp_and_evidence(inv.get("Content-Type"), inv.body)[0]
    assert nonce_a == callbind.evidence_nonce("offer", cid, inv.from_.tag, "", "sip:alice@example.test",
                                              "sip:bob@example.test", callbind.sdp_cryptos(sdp_part))
    # the caller hangs up a callee it does not accept, with a Reason (RFC 3326)
    a.hangup(cid, 1200, reason='SIP;cause=403;text="remote integrity failed"')
    net.pump(1200)
    bye = [m for f, m in proxy.log if isinstance(m, Request) and m.method == "BYE"][-1]
    assert bye.get("Reason") == 'SIP;cause=403;text="remote integrity failed"'
    assert events(b)[0].reason == "remote hangup"


def test_callee_rejects_before_ringing_with_a_warning_byte_exact():
    proxy, u, net = _lab()
    a, b = u["alice"], u["bob"]
    cid = a.call("sip:bob@example.test", LocalMedia("10.0.0.1", 4000), 1000)
    events(a)
    a.provide_evidence(cid, None, 1000)                  # no evidence: plain SDP
    net.pump(1000)
    inv = _invites(proxy)[-1]
    assert inv.get("Content-Type") == "application/sdp"
    e = events(b)[0]
    assert isinstance(e, sipua.CallOffered) and e.evidence is None
    inv = b.calls[cid].invite              # as bob received it (the proxy's Via on top)
    b.reject(cid, 1001, 403, "Forbidden", warning='remote integrity unattested, below verified')
    out = b.data_to_send()
    resp = parse_message(out[0], True)
    tag = resp.to.tag
    vias = "".join("Via: %s\r\n" % v for v in inv.get_all("Via"))
    assert out[0] == ("SIP/2.0 403 Forbidden\r\n" + vias +
                      "From: %s\r\nTo: <sip:bob@example.test>;tag=%s\r\nCall-ID: %s\r\n"
                      "CSeq: %s\r\nWarning: 399 10.0.0.2 \"remote integrity unattested, below "
                      "verified\"\r\nContent-Length: 0\r\n\r\n"
                      % (inv.get("From"), tag, cid, inv.get("CSeq"))).encode(), out[0]
    for data in out:
        for flow, fwd in proxy.receive("bob", data):
            u[flow].receive(fwd, 1001)
    net.pump(1001)
    ea = events(a)
    assert ea[-1].status == 403 and ea[-1].by == "remote"
    assert ea[-1].reason == "Forbidden (remote integrity unattested, below verified)"
    assert a.calls == {} and b.calls == {}


def test_relayed_evidence_does_not_match_the_new_call():
    # bob (malicious) got alice's INVITE with her evidence; he calls carol copying Call-ID, From tag
    # and alice's SDP (her keys) with her evidence: carol's nonce differs (sender and receiver AOR)
    proxy, u, net = _lab()
    a, b, c = u["alice"], u["bob"], u["carol"]
    cid = a.call("sip:bob@example.test", LocalMedia("10.0.0.1", 4000), 1000)
    nonce_a = events(a)[0].nonce
    a.provide_evidence(cid, b'{"who":"alice"}', 1000)
    net.pump(1000)
    got = events(b)[0]
    assert got.evidence_nonce == nonce_a
    inv = _invites(proxy)[-1]
    fwd = Request("INVITE", inv.uri)
    for k, v in inv.headers:
        if k in ("Via", "Record-Route", "Route", "Proxy-Authorization"):
            continue
        if k in ("From", "Contact"):
            v = v.replace("alice", "bob").replace("10.0.0.1", "10.0.0.2")
        elif k == "To":
            v = v.replace("bob", "carol")
        fwd.add(k, v)
    fwd.uri = inv.uri.copy()
    fwd.uri.user = "carol"
    fwd.headers.insert(0, ["Via", "SIP/2.0/TLS 10.0.0.2:40002;branch=z9hG4bKrelay1;rport;alias"])
    fwd.body = inv.body
    assert fwd.call_id == cid and fwd.from_.tag == inv.from_.tag
    proxy.challenge_invite = False   # bob is a registered user: his digest would pass anyway
    for flow, data in proxy.receive("bob", fwd.serialize()):
        u[flow].receive(data, 1001)
    net.pump(1001)
    ec = [e for e in events(c) if isinstance(e, sipua.CallOffered)]
    assert len(ec) == 1 and ec[0].evidence == b'{"who":"alice"}' and ec[0].caller == "sip:bob@example.test"
    assert ec[0].evidence_nonce != nonce_a
    # what carol expects is the binding of bob -> carol in this call
    sdp_part = multipart.sdp_and_evidence(fwd.get("Content-Type"), fwd.body)[0]
    assert ec[0].evidence_nonce == callbind.evidence_nonce(
        "offer", cid, inv.from_.tag, "", "sip:bob@example.test", "sip:carol@example.test",
        callbind.sdp_cryptos(sdp_part))


def test_ua_without_attestation_accepts_a_multipart_offer():
    # an ordinary UA (attest off) finds the SDP part and ignores the optional evidence part
    proxy, u, net = _lab(attest=(True, False, True))
    a, b = u["alice"], u["bob"]
    cid = a.call("sip:bob@example.test", LocalMedia("10.0.0.1", 4000), 1000)
    events(a)
    a.provide_evidence(cid, b'{"who":"alice"}', 1000)
    net.pump(1000)
    eb = events(b)
    assert [type(e).__name__ for e in eb] == ["IncomingCall"]
    assert eb[0].evidence == b'{"who":"alice"}' and eb[0].evidence_nonce is None
    b.answer(cid, LocalMedia("10.0.0.2", 5000), 1100)
    net.pump(1100)
    ea = events(a)
    assert [type(e).__name__ for e in ea] == ["CallRinging", "CallAnswered"]
    assert ea[1].evidence is None and ea[1].evidence_nonce is not None   # bob sent plain SDP
    assert sdp.SessionDescription.parse(b.calls[cid].answer_sdp).media[0].proto == "RTP/SAVP"


def test_multipart_refused_with_415_is_retried_once_with_plain_sdp():
    # RFC 3261 §21.4.13: the caller retries with a body the callee takes (CSeq + 1, §8.1.3.5)
    proxy, u, net = _lab()
    a, b = u["alice"], u["bob"]
    cid = a.call("sip:bob@example.test", LocalMedia("10.0.0.1", 4000), 1000)
    events(a)
    a.provide_evidence(cid, b'{"who":"alice"}', 1000)
    net.pump(1000)
    assert isinstance(events(b)[0], sipua.CallOffered)
    b.reject(cid, 1001, 415, "Unsupported Media Type")
    net.pump(1001)
    first, second = _invites(proxy)[-2:]
    assert first.get("Content-Type").startswith("multipart/mixed")
    assert second.get("Content-Type") == "application/sdp" and second.cseq.seq == first.cseq.seq + 1
    assert second.call_id == first.call_id and second.from_.tag == first.from_.tag
    assert second.body == a.calls[cid].offer_sdp     # the same offer, the same keys
    ea = events(a)
    assert [type(e).__name__ for e in ea] == ["MessageRejected"]
    assert ea[0].reason == ("callee refused our evidence body (415 Unsupported Media Type): "
                            "INVITE sent again without evidence")
    eb = [e for e in events(b) if isinstance(e, sipua.CallOffered)]
    assert len(eb) == 1 and eb[0].evidence is None
    # a second refusal ends the call: no loop
    b.reject(cid, 1002, 415, "Unsupported Media Type")
    net.pump(1002)
    assert [(e.status, e.by) for e in events(a)] == [(415, "remote")] and a.calls == {}


def test_attesting_callee_sends_plain_2xx_without_accept_multipart():
    # RFC 3261 §20.1: without "Accept: multipart/mixed" in the INVITE, the 2xx is SDP only and no
    # quote is asked for
    proxy, u, net = _lab(attest=(False, True, True))
    a, b = u["alice"], u["bob"]
    cid = a.call("sip:bob@example.test", LocalMedia("10.0.0.1", 4000), 1000)
    net.pump(1000)
    assert _invites(proxy)[-1].get("Accept") is None
    events(b)
    b.ring(cid, 1001)
    b.answer(cid, LocalMedia("10.0.0.2", 5000), 1002)
    eb = events(b)
    assert [type(e).__name__ for e in eb] == ["IncomingCall", "CallAnswered"]   # no EvidenceNeeded
    net.pump(1002)
    ea = events(a)
    assert [type(e).__name__ for e in ea] == ["CallRinging", "CallAnswered"] and ea[1].evidence is None
