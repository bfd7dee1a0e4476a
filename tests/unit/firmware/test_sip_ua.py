# firmware.sip.ua: two real UA cores register and call each other through a tiny registrar +
# stateless proxy core over an in-memory network (aioquic-style "two cores through a loop", no
# sockets). The proxy is not a mock of the UA: it is the other end of the protocol, written from
# RFC 3261 §10.3 and §16. Time is an explicit `now` in ms. Runs under pytest and MicroPython.
from firmware import compat
from firmware.sip import digest
from firmware.sip.message import (
    Request, Response, SipParseError, StreamFramer, get_param, parse_message,
)

REALM = "example.test"


class MiniProxy:
    def __init__(self, users, algorithm="MD5", expires_cap=None, challenge_invite=True):
        self.users = users                 # name -> password
        self.algorithm = algorithm
        self.expires_cap = expires_cap
        self.challenge_invite = challenge_invite
        self.nonces = {}
        self.bindings = {}                 # user -> flow name
        self.framers = {}
        self.own_tags = set()
        self.pong = True
        self.log = []

    def receive(self, flow, data):
        out = []
        framer = self.framers.setdefault(flow, StreamFramer())
        for kind, raw in framer.feed(data):
            if kind == "ping":
                if self.pong:
                    out.append((flow, b"\r\n"))
                continue
            if kind != "message":
                continue
            try:
                msg = parse_message(raw, True)
            except SipParseError:
                continue
            self.log.append((flow, parse_message(raw, True)))   # a copy: forwarding edits msg
            if isinstance(msg, Request):
                self._request(flow, msg, out)
            else:
                self._response(msg, out)
        return out

    def _reply(self, req, status, reason, extra=()):
        r = Response(status, reason)
        for v in req.get_all("Via"):
            r.add("Via", v)
        r.add("From", req.get("From"))
        to = req.get("To")
        if req.to.tag is None:
            tag = compat.random_bytes(4).hex()
            self.own_tags.add(tag)
            to += ";tag=" + tag
        r.add("To", to)
        r.add("Call-ID", req.call_id)
        r.add("CSeq", req.get("CSeq"))
        for k, v in extra:
            r.add(k, v)
        return r.serialize()

    def _challenge(self, req, status, header):
        nonce = compat.random_bytes(8).hex()
        self.nonces[req.call_id] = nonce
        return self._reply(req, status, "Unauthorized" if status == 401 else "Proxy Authentication Required",
                           [(header, 'Digest realm="%s", nonce="%s", qop="auth", algorithm=%s'
                             % (REALM, nonce, self.algorithm))])

    def _authorised(self, req, header):
        cred = req.get(header)
        if cred is None:
            return None
        return digest.verify(cred, req.method, lambda u, r: self.users.get(u) if r == REALM else None,
                             self.nonces.get(req.call_id), header)

    def _request(self, flow, req, out):
        m = req.method
        if m == "ACK" and req.to.tag in self.own_tags:
            return                                  # ACK for our own 401/407
        if m == "REGISTER":
            user = self._authorised(req, "Authorization")
            if user is None:
                out.append((flow, self._challenge(req, 401, "WWW-Authenticate")))
                return
            c = req.contacts()[0]
            exp = int(c.param("expires", req.get("Expires", "3600")))
            if self.expires_cap is not None:
                exp = min(exp, self.expires_cap)
            if exp == 0:
                self.bindings.pop(user, None)
                out.append((flow, self._reply(req, 200, "OK")))
                return
            self.bindings[user] = flow
            c.params = [(k, v) for k, v in c.params if k != "expires"] + [("expires", str(exp))]
            out.append((flow, self._reply(req, 200, "OK", [("Contact", str(c))])))
            return
        if m == "INVITE" and req.to.tag is None and self.challenge_invite:
            if self._authorised(req, "Proxy-Authorization") is None:
                out.append((flow, self._challenge(req, 407, "Proxy-Authenticate")))
                return
        target = self.bindings.get(req.uri.user)
        if target is None:
            if m != "ACK":
                out.append((flow, self._reply(req, 404, "Not Found")))
            return
        # §16.6 forwarding: drop our Route, Record-Route on dialog-creating INVITE, push a Via whose
        # branch derives from the incoming one (so CANCEL and ACK map the same way, §16.11)
        req.headers = [h for h in req.headers if not (h[0] == "Route" and "proxy.test" in h[1])]
        if m == "INVITE" and req.to.tag is None:
            req.headers.insert(0, ["Record-Route", "<sip:proxy.test;lr>"])
        branch = req.via.branch
        req.headers.insert(0, ["Via", "SIP/2.0/TLS proxy.test;branch=z9hG4bKp%s;flow=%s" % (branch[7:], flow)])
        mf = int(req.get("Max-Forwards", "70"))
        req.set("Max-Forwards", str(mf - 1))
        out.append((target, req.serialize()))

    def _response(self, resp, out):
        vias = resp.get_all("Via")
        if not vias or "proxy.test" not in vias[0]:
            return
        flow = get_param(resp.via.params, "flow")
        # pop our Via (§16.7 step 3)
        first = True
        new = []
        for k, v in resp.headers:
            if k == "Via" and first:
                first = False
                rest = vias[1:]
                for r in rest:
                    new.append(["Via", r])
                continue
            if k == "Via":
                continue
            new.append([k, v])
        resp.headers = new
        out.append((flow, resp.serialize()))


class Net:
    """Delivers bytes between UA cores and the proxy until nothing moves."""

    def __init__(self, proxy, uas, drop=None):
        self.proxy = proxy
        self.uas = uas          # flow name -> UserAgent
        self.drop = drop        # drop(sender, data) -> True to lose a datagram (unreliable tests)
        self.dropped = []

    def pump(self, now):
        moved = True
        while moved:
            moved = False
            for name in sorted(self.uas):
                ua = self.uas[name]
                for data in ua.data_to_send():
                    moved = True
                    if self.drop is not None and self.drop(name, data):
                        self.dropped.append((name, data))
                        continue
                    for flow, out in self.proxy.receive(name, data):
                        self.uas[flow].receive(out, now)

    def run_until(self, now, end, step=None):
        """Advance time from `now` to `end`, firing UA timers as they fall due."""
        while True:
            self.pump(now)
            times = [ua.get_timer() for ua in self.uas.values()]
            times = [t for t in times if t is not None and t <= end]
            if not times:
                return end
            now = max(now, min(times))
            for ua in self.uas.values():
                t = ua.get_timer()
                if t is not None and t <= now:
                    ua.handle_timer(now)


def events(ua):
    out = []
    while True:
        e = ua.next_event()
        if e is None:
            return out
        out.append(e)


# --- scenarios ------------------------------------------------------------------------------------
from firmware.sip import sdp, ua as sipua  # noqa: E402
from firmware.sip.sdp import LocalMedia  # noqa: E402
from tests.unit.firmware.check import raises  # noqa: E402

USERS = {"alice": "alicepw", "bob": "bobpw"}


def _reqs(proxy, method):
    return [m for f, m in proxy.log if isinstance(m, Request) and m.method == method]


def _setup(algorithm="MD5", expires_cap=None, alice_pw="alicepw"):
    proxy = MiniProxy(USERS, algorithm, expires_cap)
    a = sipua.UserAgent(sipua.UaConfig("alice", REALM, alice_pw, "TLS", "10.0.0.1", 40001,
                                       expires=600, keepalive_ms=30000), 0)
    b = sipua.UserAgent(sipua.UaConfig("bob", REALM, "bobpw", "TLS", "10.0.0.2", 40002,
                                       expires=600, keepalive_ms=30000), 0)
    net = Net(proxy, {"alice": a, "bob": b})
    return proxy, a, b, net


def _registered(algorithm="MD5"):
    proxy, a, b, net = _setup(algorithm)
    a.register(0)
    b.register(0)
    net.pump(0)
    assert [type(e).__name__ for e in events(a)] == ["Registered"]
    assert [type(e).__name__ for e in events(b)] == ["Registered"]
    return proxy, a, b, net


def test_register_with_digest_challenge_md5_and_sha256():
    for alg in ("MD5", "SHA-256"):
        proxy, a, b, net = _setup(alg, expires_cap=300)
        a.register(0)
        net.pump(0)
        ev = events(a)
        assert len(ev) == 1 and isinstance(ev[0], sipua.Registered) and ev[0].expires == 300
        assert a.registered and proxy.bindings == {"alice": "alice"}
        regs = _reqs(proxy, "REGISTER")
        assert len(regs) == 2 and regs[0].get("Authorization") is None
        cred = regs[1].get("Authorization")
        assert ("algorithm=" + alg) in cred and 'uri="sip:example.test"' in cred
        # same Call-ID, CSeq incremented (RFC 3261 §10.2.4)
        assert regs[0].call_id == regs[1].call_id and regs[1].cseq.seq == regs[0].cseq.seq + 1
        c = regs[1].contacts()[0]
        assert c.uri.param("transport") == "tls" and c.uri.param("ob") == ""
        assert regs[1].via.param("alias") == "" and regs[1].via.param("rport") == ""


def test_wrong_password_fails_registration():
    proxy, a, b, net = _setup(alice_pw="nope")
    a.register(0)
    net.pump(0)
    ev = events(a)
    assert len(ev) == 1 and isinstance(ev[0], sipua.RegistrationFailed)
    assert ev[0].status == 401 and ev[0].reason == "credentials rejected"
    assert not a.registered and "alice" not in proxy.bindings


def test_reregistration_before_expiry_and_keepalives():
    proxy, a, b, net = _setup(expires_cap=120)
    a.register(0)
    net.pump(0)
    assert events(a)[0].expires == 120
    regs_before = len(_reqs(proxy, "REGISTER"))
    # keep-alive pings every 30 s are answered; refresh at half the granted time
    net.run_until(0, 61000)
    ev = events(a)
    assert [type(e).__name__ for e in ev] == ["Registered"] and a.registered
    assert len(_reqs(proxy, "REGISTER")) == regs_before + 2
    assert a.pongs == 2
    # the proxy stops answering pings: the flow is declared dead 10 s after a ping (RFC 5626 §4.4.1)
    proxy.pong = False
    net.run_until(61000, 101000)
    ev = events(a)
    assert any(isinstance(e, sipua.FlowFailed) for e in ev) and not a.registered


def _call(a, b, net, now=1000):
    cid = a.call("sip:bob@example.test", LocalMedia("10.0.0.1", 4000), now)
    net.pump(now)
    ea, eb = events(a), events(b)
    assert [type(e).__name__ for e in ea] == ["CallRinging"]
    assert [type(e).__name__ for e in eb] == ["IncomingCall"]
    assert eb[0].caller == "sip:alice@example.test" and eb[0].secure
    return cid


def test_invite_answer_ack_bye():
    proxy, a, b, net = _registered()
    cid = _call(a, b, net)
    invites = _reqs(proxy, "INVITE")
    assert len(invites) == 2 and invites[1].get("Proxy-Authorization") is not None   # 407 answered
    b.answer(cid, LocalMedia("10.0.0.2", 5000), 1100)
    net.pump(1100)
    ea, eb = events(a), events(b)
    assert [type(e).__name__ for e in ea] == ["CallAnswered"]
    assert [type(e).__name__ for e in eb] == ["CallAnswered"]
    ma, mb = ea[0].media, eb[0].media
    assert ma.suite == mb.suite == "AEAD_AES_128_GCM"
    assert ma.tx_key == mb.rx_key and ma.rx_key == mb.tx_key and ma.tx_salt == mb.rx_salt
    assert (ma.remote_address, ma.remote_port) == ("10.0.0.2", 5000)
    assert (mb.remote_address, mb.remote_port) == ("10.0.0.1", 4000)
    st = a.status()
    assert st["registered"] and st["aor"] == "sip:alice@example.test" and st["transport"] == "TLS"
    assert st["calls"] == [{"call_id": cid, "state": "connected", "direction": "out",
                            "peer": "sip:bob@example.test", "suite": "AEAD_AES_128_GCM", "locked": True}]
    assert b.status()["calls"][0]["peer"] == "sip:alice@example.test"
    # the ACK for the 2xx reached bob and carried the route set from Record-Route
    acks = _reqs(proxy, "ACK")
    assert acks and acks[-1].get("Route") == "<sip:proxy.test;lr>"
    assert b.calls[cid].invite_tx.acked
    # no 2xx retransmissions pending after the ACK (reliable transport, RFC 6026 timer L only)
    net.run_until(1100, 1100 + 64 * 500 + 1)
    assert events(a) == [] and events(b) == []
    a.hangup(cid, 40000)
    net.pump(40000)
    ea, eb = events(a), events(b)
    assert ea[0].by == "local" and ea[0].reason == "local hangup"
    assert isinstance(eb[0], sipua.CallEnded) and eb[0].by == "remote" and eb[0].reason == "remote hangup"
    byes = _reqs(proxy, "BYE")
    assert byes[0].uri.user == "bob" and byes[0].cseq.seq == 3   # INVITE was 2 after the 407
    assert a.calls == {} and b.calls == {}


def test_callee_hangs_up_and_reject():
    proxy, a, b, net = _registered()
    cid = b.call("sip:alice@example.test", LocalMedia("10.0.0.2", 5000), 1000)
    net.pump(1000)
    events(b)
    events(a)
    a.reject(cid, 1100)
    net.pump(1100)
    eb = events(b)
    assert len(eb) == 1 and eb[0].status == 486 and eb[0].by == "remote"
    assert b.calls == {} and a.calls == {}


def test_cancel_ringing_call():
    proxy, a, b, net = _registered()
    cid = _call(a, b, net)
    a.hangup(cid, 2000)
    net.pump(2000)
    ea, eb = events(a), events(b)
    assert len(eb) == 1 and eb[0].status == 487 and eb[0].reason == "cancelled by caller"
    assert len(ea) == 1 and ea[0].status == 487 and ea[0].by == "local"
    cancels = _reqs(proxy, "CANCEL")
    invites = _reqs(proxy, "INVITE")
    assert cancels[0].via.branch == invites[-1].via.branch   # §9.1 same branch as the INVITE


def test_incoming_cancel_before_answer_then_late_answer_refused():
    proxy, a, b, net = _registered()
    cid = _call(a, b, net)
    a.hangup(cid, 2000)
    net.pump(2000)
    events(a)
    events(b)
    e = raises(ValueError, b.answer, cid, LocalMedia("10.0.0.2", 5000), 2100)
    assert "no incoming call" in str(e)


def test_sdes_refused_over_udp_and_insecure_offer_refused():
    u = sipua.UserAgent(sipua.UaConfig("carol", REALM, "x", "UDP", "10.0.0.3", 5060), 0)
    e = raises(sdp.NegotiationError, u.call, "sip:bob@example.test", LocalMedia("10.0.0.3", 4000), 0)
    assert "not TLS" in str(e)
    # a plain RTP offer arriving at bob is refused with 488 before ringing
    proxy, a, b, net = _registered()
    plain = LocalMedia("10.0.0.1", 4000, suites=(), insecure=True)
    e = raises(ValueError, a.call, "sip:bob@example.test", plain, 1000)
    assert "UaConfig(insecure=True)" in str(e) and a.calls == {}
    a.config.insecure = True          # alice is a test peer; bob stays in secure mode
    cid = a.call("sip:bob@example.test", plain, 1000)
    net.pump(1000)
    ea, eb = events(a), events(b)
    assert len(eb) == 1 and isinstance(eb[0], sipua.CallEnded) and eb[0].status == 488
    assert "plain RTP" in eb[0].reason
    assert len(ea) == 1 and ea[0].status == 488 and a.calls == {}


def test_malformed_input_answered_400_and_state_intact():
    proxy, a, b, net = _registered()
    cid = _call(a, b, net)
    b.answer(cid, LocalMedia("10.0.0.2", 5000), 1100)
    net.pump(1100)
    events(a)
    events(b)
    from tests.unit.firmware.test_sip_message import _load, _names
    sent = 0
    for name in _names("invalid"):
        raw = _load("invalid", name)
        # on a stream the framing needs a sane Content-Length; the rest of the message is bad
        if b"Content-Length: -999" in raw or b"Content-Length: 9999" in raw:
            continue
        a.receive(raw, 1200)
        out = a.data_to_send()
        ev = events(a)
        assert len(ev) == 1 and isinstance(ev[0], sipua.MessageRejected), (name, ev)
        if raw.startswith(b"SIP/"):
            assert out == [], name                 # responses are dropped, never answered
            continue
        assert len(out) == 1, name
        # the 400 copies the peer's (possibly malformed) header values verbatim: check its lines
        lines = out[0].split(b"\r\n")
        if name == "badvers.sip":
            assert lines[0] == b"SIP/2.0 505 Version Not Supported"
        else:
            assert lines[0].startswith(b"SIP/2.0 400 Bad Request: "), lines[0]
        assert out[0].endswith(b"Content-Length: 0\r\n\r\n")
        assert len([ln for ln in lines if ln.startswith(b"CSeq: ")]) == 1
        sent += 1
    assert sent >= 12
    # registration and the call survived
    assert a.registered and a.calls[cid].state == "connected"
    a.hangup(cid, 2000)
    net.pump(2000)
    assert events(b)[0].reason == "remote hangup"


def test_udp_retransmissions_recover_lost_invite_and_200():
    # unreliable transport (insecure test mode: no SDES over UDP): timer A resends the lost
    # INVITE, and the UAS resends its 2xx (RFC 3261 §13.3.1.4) until the ACK arrives
    lost = {"INVITE": 1, "SIP/2.0 200": 1}

    def drop(sender, data):
        for k in lost:
            if data.startswith(k.encode()) and (k != "INVITE" or b"Proxy-Authorization" in data) \
                    and (k == "INVITE" or b"CSeq: 2 INVITE" in data) and lost[k]:
                lost[k] -= 1
                return True
        return False

    proxy = MiniProxy(USERS)
    a = sipua.UserAgent(sipua.UaConfig("alice", REALM, "alicepw", "UDP", "10.0.0.1", 5060, insecure=True), 0)
    b = sipua.UserAgent(sipua.UaConfig("bob", REALM, "bobpw", "UDP", "10.0.0.2", 5060, insecure=True), 0)
    net = Net(proxy, {"alice": a, "bob": b}, drop)
    a.register(0)
    b.register(0)
    net.pump(0)
    events(a)
    events(b)
    plain = LocalMedia("10.0.0.1", 4000, suites=(), insecure=True)
    cid = a.call("sip:bob@example.test", plain, 1000)
    net.pump(1000)
    assert events(b) == []                       # the authenticated INVITE was lost
    net.run_until(1000, 1600)                    # timer A fires at +500 ms
    assert [type(e).__name__ for e in events(b)] == ["IncomingCall"]
    b.answer(cid, LocalMedia("10.0.0.2", 5000, suites=(), insecure=True), 1600)
    net.pump(1600)
    assert [type(e).__name__ for e in events(a)] == ["CallRinging"]   # the 200 OK was lost
    net.run_until(1600, 2200)                    # 2xx retransmitted after T1
    ea = events(a)
    assert [type(e).__name__ for e in ea] == ["CallAnswered"] and not ea[0].media.secure
    assert b.calls[cid].invite_tx.acked
    assert [k for k, v in lost.items() if v] == [] and len(net.dropped) == 2


def _raw_invite(body, ctype="application/sdp"):
    head = ("INVITE sip:bob@10.0.0.2:40002;transport=tls SIP/2.0\r\n"
            "Via: SIP/2.0/TLS proxy.test;branch=z9hG4bKraw1\r\n"
            "Max-Forwards: 69\r\nFrom: <sip:mallory@example.test>;tag=m1\r\n"
            "To: <sip:bob@example.test>\r\nCall-ID: raw-1\r\nCSeq: 1 INVITE\r\n"
            "Contact: <sip:mallory@192.0.2.66>\r\n")
    if ctype:
        head += "Content-Type: %s\r\n" % ctype
    return (head + "Content-Length: %d\r\n\r\n" % len(body)).encode() + body


def test_offerless_or_non_sdp_invite_refused():
    proxy, a, b, net = _registered()
    b.receive(_raw_invite(b""), 100)
    out = b.data_to_send()
    assert out[0].startswith(b"SIP/2.0 488 Not Acceptable Here\r\n")
    ev = events(b)
    assert ev[0].status == 488 and ev[0].reason == "INVITE without an SDP offer"
    b.receive(_raw_invite(b"hello", "text/plain").replace(b"raw-1", b"raw-2").replace(b"Kraw1", b"Kraw2"), 200)
    resp = parse_message(b.data_to_send()[0], True)
    assert resp.status == 415 and resp.get("Accept") == "application/sdp, multipart/mixed"
    assert events(b)[0].reason == "offer is text/plain, not SDP"
    # a corrupt SDP offer is a 488 (RFC 3261 §21.4.26) with the parser's reason in a Warning
    b.receive(_raw_invite(b"v=0\r\nbogus\r\n").replace(b"raw-1", b"raw-3").replace(b"Kraw1", b"Kraw3"), 300)
    resp = parse_message(b.data_to_send()[0], True)
    assert resp.status == 488 and resp.reason == "Not Acceptable Here"
    assert resp.get("Warning") == '399 10.0.0.2 "expected \'<type>=<value>\', got \'bogus\' (field line 2)"', \
        resp.get("Warning")
    assert b.calls == {} and b.registered


def test_hangup_before_any_provisional_defers_cancel():
    # RFC 3261 §9.1: no CANCEL before a provisional response; it goes out once the 180 arrives
    proxy, a, b, net = _registered()
    proxy.challenge_invite = False
    cid = a.call("sip:bob@example.test", LocalMedia("10.0.0.1", 4000), 1000)
    a.hangup(cid, 1000)
    sent = a.data_to_send()
    assert [d[:6] for d in sent] == [b"INVITE"]
    for flow, out in proxy.receive("alice", sent[0]):   # deliver what was sent, then run on
        net.uas[flow].receive(out, 1000)
    net.pump(1000)
    eb, ea = events(b), events(a)
    assert [type(e).__name__ for e in eb] == ["IncomingCall", "CallEnded"] and eb[1].status == 487
    assert len(ea) == 1 and ea[0].status == 487 and ea[0].by == "local"
    assert len(_reqs(proxy, "CANCEL")) == 1


def test_invite_without_contact_refused_and_2xx_without_contact_ends_call():
    proxy, a, b, net = _registered()
    raw = _raw_invite(b"v=0\r\n").replace(b"Contact: <sip:mallory@192.0.2.66>\r\n", b"")
    b.receive(raw, 100)
    resp = parse_message(b.data_to_send()[0], True)
    assert resp.status == 400 and "Contact" in resp.reason
    assert isinstance(events(b)[0], sipua.MessageRejected) and b.calls == {}
    # a 2xx without Contact cannot make a dialog: the call ends with a reason, nothing hangs
    cid = _call(a, b, net)
    b.answer(cid, LocalMedia("10.0.0.2", 5000), 1100)
    ok = [d for d in b.data_to_send() if d.startswith(b"SIP/2.0 200")][0]
    ok = b"\r\n".join(ln for ln in ok.split(b"\r\n") if not ln.startswith(b"Contact:"))
    # strip the proxy's Via so the response goes straight to alice's transaction
    ok = b"\r\n".join(ln for ln in ok.split(b"\r\n") if b"proxy.test;branch" not in ln)
    a.receive(ok, 1200)
    ea = events(a)
    assert [type(e).__name__ for e in ea] == ["MessageRejected", "CallEnded"]
    assert ea[1].status == 502 and "Contact" in ea[1].reason and a.calls == {}


def test_rfc4475_semantic_cases_answered_by_the_uas():
    # RFC 4475 §3.3 cases a UAS answers (our messages in tests/data/sip/torture/semantic)
    from tests.unit.firmware.test_sip_message import _load
    proxy, a, b, net = _registered()
    expect = {"insuf.sip": b"SIP/2.0 400 ", "unkscm.sip": b"SIP/2.0 416 Unsupported URI Scheme",
              "bext01.sip": b"SIP/2.0 420 Bad Extension", "multi01.sip": b"SIP/2.0 400 ",
              "mcl01.sip": None}
    for name in sorted(expect):
        raw = _load("semantic", name)
        if name == "mcl01.sip":
            # two Content-Lengths cannot frame a stream; as a datagram it is a 400
            u = sipua.UserAgent(sipua.UaConfig("carol", REALM, "x", "UDP", "10.0.0.3", 5060), 0)
            u.receive(raw, 10)
            out = u.data_to_send()
            assert out[0].startswith(b"SIP/2.0 400 Bad Request: 2 Content-Length"), out
            continue
        b.receive(raw, 10)
        out = b.data_to_send()
        if name == "insuf.sip":
            # From/To/Call-ID missing: a 400 cannot be addressed, the request is only logged
            assert out == [] and isinstance(events(b)[0], sipua.MessageRejected)
            continue
        assert out and out[0].startswith(expect[name]), (name, out)
        if name == "bext01.sip":
            r = parse_message(out[0], True)
            assert r.get("Unsupported") == "nothingSupportsThis, nothingSupportsThisEither"
    assert b.registered and b.calls == {}


def test_response_with_extra_via_is_dropped():
    # RFC 3261 §8.1.3.3: more than one Via in a response means it was not meant for this UA
    proxy, a, b, net = _setup()
    a.register(0)
    reg = a.data_to_send()[0]
    req = parse_message(reg, True)
    r = Response(401, "Unauthorized")
    r.add("Via", "SIP/2.0/TLS other.example;branch=z9hG4bKx")
    r.add("Via", req.get("Via"))
    for h in ("From", "To", "Call-ID", "CSeq"):
        r.add(h, req.get(h))
    r.add("WWW-Authenticate", 'Digest realm="example.test", nonce="n"')
    a.receive(r.serialize(), 10)
    assert a.data_to_send() == []            # no authenticated retry was triggered
    ev = events(a)
    assert len(ev) == 1 and ev[0].reason == "response with 2 Via values dropped"


def _answer(req_raw, status, reason, headers=(), to_tag="far1"):
    req = parse_message(req_raw, True)
    r = Response(status, reason)
    r.add("Via", req.get("Via"))
    r.add("From", req.get("From"))
    r.add("To", req.get("To") + (";tag=" + to_tag if to_tag else ""))
    r.add("Call-ID", req.call_id)
    r.add("CSeq", req.get("CSeq"))
    for k, v in headers:
        r.add(k, v)
    return r.serialize()


def _invite_from(a, now):
    cid = a.call("sip:bob@example.test", LocalMedia("10.0.0.1", 4000), now)
    out = [m for m in a.data_to_send() if m.startswith(b"INVITE ")]
    assert len(out) == 1
    return cid, out[0]


def test_callee_401_on_invite_gets_no_credentials():
    # issue 9: a callee's 401 (even in the registrar's own realm) is never answered with our
    # account: RFC 3261 §22.3 - the registrar's proxy challenges an INVITE with 407
    proxy, a, b, net = _registered()
    assert a.registrar_realm == REALM
    cid, inv = _invite_from(a, 1000)
    chal = 'Digest realm="%s", nonce="abc", qop="auth", algorithm=MD5' % REALM
    a.receive(_answer(inv, 401, "Unauthorized", [("WWW-Authenticate", chal)]), 1010)
    out = a.data_to_send()
    assert [m.split(b" ")[0] for m in out] == [b"ACK"], out
    assert b"uthorization" not in b"".join(out) and b"alice" not in out[0].split(b"\r\n")[0]
    ev = [e for e in events(a) if isinstance(e, sipua.CallEnded)]
    assert len(ev) == 1 and ev[0].status == 401 and ev[0].call_id == cid and a.calls == {}


def test_407_in_another_realm_or_after_a_far_end_answer_gets_no_credentials():
    proxy, a, b, net = _registered()
    cid, inv = _invite_from(a, 1000)
    chal = 'Digest realm="evil.example", nonce="abc", qop="auth"'
    a.receive(_answer(inv, 407, "Proxy Authentication Required", [("Proxy-Authenticate", chal)]), 1010)
    out = a.data_to_send()
    assert [m.split(b" ")[0] for m in out] == [b"ACK"] and b"uthorization" not in b"".join(out)
    assert [e.status for e in events(a) if isinstance(e, sipua.CallEnded)] == [407]
    # a far end that already rang (1xx with a To tag) cannot ask for the registrar's credentials
    cid, inv = _invite_from(a, 2000)
    a.receive(_answer(inv, 180, "Ringing"), 2010)
    chal = 'Digest realm="%s", nonce="abc", qop="auth"' % REALM
    a.receive(_answer(inv, 407, "Proxy Authentication Required", [("Proxy-Authenticate", chal)]), 2020)
    out = a.data_to_send()
    assert [m.split(b" ")[0] for m in out] == [b"ACK"] and b"uthorization" not in b"".join(out)
    # a malformed challenge is no exception either: the call just ends with the 407
    cid, inv = _invite_from(a, 3000)
    a.receive(_answer(inv, 407, "Proxy Authentication Required",
                      [("Proxy-Authenticate", 'Digest realm="x')]), 3010)
    assert [m.split(b" ")[0] for m in a.data_to_send()] == [b"ACK"]


def test_stale_nonce_retried_once_per_register():
    # RFC 7616 §3.3: stale=true -> retry with the new nonce, once; an endless stream of stale
    # challenges must not make the phone hammer the registrar
    proxy, a, b, net = _setup()
    a.register(0)
    reg = a.data_to_send()[0]
    chal = 'Digest realm="%s", nonce="n1", qop="auth"' % REALM
    a.receive(_answer(reg, 401, "Unauthorized", [("WWW-Authenticate", chal)], None), 10)
    reg = a.data_to_send()[0]
    assert b"Authorization: Digest" in reg and b'nonce="n1"' in reg
    stale = 'Digest realm="%s", nonce="n2", qop="auth", stale=true' % REALM
    a.receive(_answer(reg, 401, "Unauthorized", [("WWW-Authenticate", stale)], None), 20)
    reg = a.data_to_send()[0]
    assert b'nonce="n2"' in reg
    stale = 'Digest realm="%s", nonce="n3", qop="auth", stale=TRUE' % REALM
    a.receive(_answer(reg, 401, "Unauthorized", [("WWW-Authenticate", stale)], None), 30)
    assert a.data_to_send() == []
    ev = events(a)
    assert len(ev) == 1 and isinstance(ev[0], sipua.RegistrationFailed)
    assert ev[0].reason == "stale nonce again after 1 retry" and not a.registered


def test_no_credentials_over_unverified_transport():
    u = sipua.UserAgent(sipua.UaConfig("carol", REALM, "carolpw", "TCP", "10.0.0.3", 5060), 0)
    u.register(0)
    reg = u.data_to_send()[0]
    chal = 'Digest realm="%s", nonce="n1", qop="auth"' % REALM
    u.receive(_answer(reg, 401, "Unauthorized", [("WWW-Authenticate", chal)], None), 10)
    assert u.data_to_send() == []
    ev = events(u)
    assert ev[0].reason == "challenge not answered: signalling is not verified TLS"


def test_internal_error_on_remote_input_is_answered_500_not_raised():
    proxy, a, b, net = _registered()
    boom = []

    def broken(req, tx, now):
        boom.append(req.call_id)
        raise KeyError("simulated bug")

    b._on_invite = broken
    cid = a.call("sip:bob@example.test", LocalMedia("10.0.0.1", 4000), 1000)
    net.pump(1000)
    assert boom == [cid]
    ev = [e for e in events(b) if isinstance(e, sipua.MessageRejected)]
    assert len(ev) == 1 and ev[0].status == 500
    # CPython shows a KeyError's text quoted, MicroPython bare
    assert ev[0].reason in ("internal error on INVITE: KeyError: 'simulated bug'",
                            "internal error on INVITE: KeyError: simulated bug"), ev[0].reason
    ended = [e for e in events(a) if isinstance(e, sipua.CallEnded)]
    assert len(ended) == 1 and ended[0].status == 500


def test_bare_crypto_or_rtpmap_offer_is_488_with_warning_byte_exact():
    # issue 9: the INVITE that used to crash the phone; the answer is byte-exact
    proxy, a, b, net = _registered()
    sdp_head = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.66\r\ns=-\r\nc=IN IP4 192.0.2.66\r\nt=0 0\r\n"
                b"m=audio 40000 RTP/SAVP 0\r\n")
    for n, (line, want) in enumerate(((b"a=crypto", b"a=crypto without a value (field line 7)"),
                                      (b"a=rtpmap", b"a=rtpmap without a value (field line 7)"))):
        cid = ("raw-x%d" % n).encode()
        raw = _raw_invite(sdp_head + line + b"\r\n").replace(b"raw-1", cid).replace(
            b"Kraw1", b"Kx%d" % n)
        b.receive(raw, 100 + n)
        out = b.data_to_send()
        assert len(out) == 1
        tag = parse_message(out[0], True).to.tag
        assert out[0] == (b"SIP/2.0 488 Not Acceptable Here\r\n"
                          b"Via: SIP/2.0/TLS proxy.test;branch=z9hG4bKx%d\r\n"
                          b"From: <sip:mallory@example.test>;tag=m1\r\n"
                          b"To: <sip:bob@example.test>;tag=%s\r\n"
                          b"Call-ID: %s\r\nCSeq: 1 INVITE\r\n"
                          b"Warning: 399 10.0.0.2 \"%s\"\r\n"
                          b"Content-Length: 0\r\n\r\n") % (n, tag.encode(), cid, want), out[0]
        ev = events(b)
        assert len(ev) == 1 and isinstance(ev[0], sipua.MessageRejected) and ev[0].status == 488
    assert b.calls == {} and b.registered
