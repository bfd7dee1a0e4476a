# The phone's SIP user agent core (RFC 3261 §8, §10, §13-15), sans-I/O in the aioquic style:
# drive it with receive(data, now), handle_timer(now) and the API calls; collect bytes with
# data_to_send() and happenings with next_event(). Everything travels over one flow to the
# outbound proxy/registrar (the phone sits behind NAT: RFC 5626 flow reuse, `;ob` Contact,
# `;alias` Via for RFC 5923, CRLF keep-alives RFC 5626 §4.4.1); calls arrive over that same flow.
# Time is `now` in milliseconds; randomness comes from firmware.compat.random_bytes.

from firmware import compat
from firmware.sip import callbind, digest, multipart, sdp
from firmware.sip.dialog import Dialog
from firmware.sip.message import (
    NameAddr, Request, Response, SipParseError, SipUri, StreamFramer, parse_message,
)
from firmware.sip.transaction import T1, ClientTransaction, ServerTransaction

RELIABLE = ("TLS", "TCP")
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS"
MAX_STALE_RETRIES = 1   # RFC 7616 §3.3 stale=true: one re-try with a fresh nonce per request
ACCEPT = "application/sdp, multipart/mixed"   # attest mode (docs/attestation.md)
EVIDENCE_RETRY = (415, 500)   # final answers to a multipart INVITE that get one plain retry
SUPPORTED = ()   # option tags this UAS implements when a request Requires them (none yet)


# --- events --------------------------------------------------------------------------------------

class Event:
    name = "event"

    def __repr__(self):
        return "<%s %r>" % (self.__class__.__name__, self.__dict__)


class Registered(Event):
    def __init__(self, expires):
        self.expires = expires


class RegistrationFailed(Event):
    def __init__(self, status, reason):
        self.status = status
        self.reason = reason


class Unregistered(Event):
    pass


class IncomingCall(Event):
    """The phone rings. `evidence`: the caller's attestation evidence (bytes) or None;
    `evidence_nonce`: the nonce it must carry (firmware.sip.callbind) or None when the caller's
    URI is no SIP AOR."""

    def __init__(self, call_id, caller, display, secure, evidence=None, evidence_nonce=None):
        self.call_id = call_id
        self.caller = caller
        self.display = display
        self.secure = secure
        self.evidence = evidence
        self.evidence_nonce = evidence_nonce


class CallOffered(IncomingCall):
    """With UaConfig(attest=True): an acceptable INVITE arrived and nothing was answered but
    100 yet. The application judges the caller, then calls ring() (180, IncomingCall follows) or
    reject() (e.g. 403 with a Warning naming the level)."""


class EvidenceNeeded(Event):
    """With UaConfig(attest=True): our INVITE (role "offer") or 2xx (role "answer") waits for
    provide_evidence(call_id, evidence bytes or None, now); the quote must carry `nonce`."""

    def __init__(self, call_id, nonce, role):
        self.call_id = call_id
        self.nonce = nonce
        self.role = role


class CallRinging(Event):
    def __init__(self, call_id):
        self.call_id = call_id


class CallAnswered(Event):
    """The call is up. For our outgoing calls `evidence` is the callee's evidence from its 2xx
    (bytes or None) and `evidence_nonce` the nonce it must carry; None for calls we answered."""

    def __init__(self, call_id, media, evidence=None, evidence_nonce=None):
        self.call_id = call_id
        self.media = media
        self.evidence = evidence
        self.evidence_nonce = evidence_nonce


class CallEnded(Event):
    def __init__(self, call_id, status, reason, by):
        self.call_id = call_id
        self.status = status
        self.reason = reason
        self.by = by   # "local", "remote" or "error"


class MessageRejected(Event):
    """Bad input from the peer: logged, answered 400 when it was a request; state is untouched."""

    def __init__(self, reason, status=None):
        self.reason = reason
        self.status = status


class FlowFailed(Event):
    """No keep-alive pong (RFC 5626 §4.4.1): the shim should reconnect and call register()."""

    def __init__(self, reason):
        self.reason = reason


# --- configuration -------------------------------------------------------------------------------

class UaConfig:
    def __init__(self, user, domain, password, transport="TLS", local_host="0.0.0.0", local_port=5060,
                 auth_user=None, display=None, expires=600, keepalive_ms=None, insecure=False, t1=T1,
                 user_agent="trusted-phone/0.1", attest=False):
        self.user = user
        self.domain = domain
        self.password = password
        self.transport = transport.upper()
        self.local_host = local_host
        self.local_port = local_port
        self.auth_user = auth_user or user
        self.display = display
        self.expires = expires
        # RFC 5626 §4.4.1: without a Flow-Timer, ping at a random 80-100% of 120 s
        self.keepalive_ms = keepalive_ms
        self.insecure = insecure
        self.t1 = t1
        self.user_agent = user_agent
        # attestation at call set-up (docs/attestation.md "Evidence in SIP"): our INVITE and 2xx
        # wait for evidence (EvidenceNeeded), incoming INVITEs wait for ring() (CallOffered)
        self.attest = attest


def _rand_hex(n):
    return compat.random_bytes(n).hex()


class Call:
    def __init__(self, call_id, direction, local_media):
        self.call_id = call_id
        self.direction = direction
        self.local_media = local_media
        self.state = "new"
        self.dialog = None
        self.local_tag = _rand_hex(6)
        self.invite = None          # our INVITE (UAC) or the peer's (UAS)
        self.invite_tx = None
        self.offered = None         # our Crypto list (UAC)
        self.media = None
        self.remote = None
        self.ack = None             # ACK bytes for the 2xx (resent on 2xx retransmission)
        self.cancel_pending = False
        self.provisional = False
        self.auth_tries = 0
        self.answer_sdp = None
        self.offer_sdp = None       # the SDP offer's bytes (ours, or the SDP part of the peer's)
        self.held = None            # our 2xx waiting for evidence (attest mode)
        self.offered_event = None   # the CallOffered being screened (attest mode)
        self.evidence_sent = False  # our INVITE carried evidence (multipart/mixed)
        self.peer_accepts_multipart = False   # the INVITE's Accept lists multipart/mixed


class UserAgent:
    def __init__(self, config, now):
        self.config = config
        self.aor = "sip:%s@%s" % (config.user, config.domain)
        self.reliable = config.transport in RELIABLE
        self.signalling_secure = config.transport == "TLS"
        self._framer = StreamFramer() if self.reliable else None
        self._out = []
        self._events = []
        self.client_txs = []
        self.server_txs = []
        self.calls = {}
        # registration state
        self.registered = False
        self.reg_expires = 0
        self._reg_call_id = _rand_hex(12)
        self._reg_tag = _rand_hex(6)
        self._reg_cseq = 0
        self._reg_tx = None
        self._reg_auth_nonce = None
        self._reg_stale_retries = 0
        # the realm of the registrar's own challenge to our REGISTER, on our verified TLS flow:
        # the only realm our credentials are ever computed for (RFC 3261 §22.1, §22.3)
        self.registrar_realm = None
        self._reg_wanted = 0
        self._reg_refresh_at = None
        self._reg_unregistering = False
        self._ka_at = None
        self._pong_deadline = None
        self.pongs = 0
        self.rejected = 0
        self._collecting = False
        self._collect_again = False

    # --- public API ------------------------------------------------------------------------------

    def register(self, now, expires=None):
        self._reg_wanted = self.config.expires if expires is None else expires
        self._reg_unregistering = self._reg_wanted == 0
        self._reg_auth_nonce = None
        self._reg_stale_retries = 0
        self._send_register(now, None)
        if self.reliable and self._ka_at is None:
            self._schedule_keepalive(now)

    def unregister(self, now):
        self.register(now, 0)

    def call(self, target, local_media, now):
        """Start an outgoing call to `target` (a SIP URI text); returns the Call-ID."""
        uri = SipUri.parse(target, "target")
        self._check_mode(local_media)
        call = Call(_rand_hex(12), "out", local_media)
        call.remote = str(uri)
        body, call.offered = sdp.create_offer(local_media, self.signalling_secure)
        self.calls[call.call_id] = call
        req = self._new_request("INVITE", uri, str(NameAddr(uri)), call.call_id, call.local_tag, 1)
        req.add("Contact", self._contact())
        call.offer_sdp = body.serialize()
        call.invite = req
        if self.config.attest:
            # RFC 3261 §20.1: the bodies we accept in responses; the callee attaches its evidence
            # to the 2xx only when multipart/mixed is listed
            req.add("Accept", ACCEPT)
            call.state = "attesting"
            nonce = callbind.evidence_nonce("offer", call.call_id, call.local_tag, "",
                                            callbind.aor(self.aor), callbind.aor(uri),
                                            callbind.sdp_cryptos(call.offer_sdp))
            self._events.append(EvidenceNeeded(call.call_id, nonce, "offer"))
            return call.call_id
        _set_body(req, call.offer_sdp, None)
        call.state = "calling"
        call.invite_tx = self._start_client(req, now)
        return call.call_id

    def provide_evidence(self, call_id, evidence, now):
        """Send the INVITE or 2xx that waits for evidence (EvidenceNeeded): with `evidence`
        (bytes) as a multipart/mixed part beside the SDP, or plain SDP when it is None."""
        call = self.calls.get(call_id)
        if call is None or call.state not in ("attesting", "answering"):
            raise ValueError("no call %s waits for evidence" % call_id)
        if call.state == "attesting":
            _set_body(call.invite, call.offer_sdp, evidence)
            call.evidence_sent = evidence is not None
            call.state = "calling"
            call.invite_tx = self._start_client(call.invite, now)
        else:
            resp, media = call.held
            call.held = None
            _set_body(resp, call.answer_sdp, evidence)
            call.state = "connected"
            call.invite_tx.respond(resp, now)
            self._events.append(CallAnswered(call.call_id, media))
        self._collect(now)

    def ring(self, call_id, now):
        """Attest mode: the application accepted the caller (CallOffered): 180 and ring."""
        call = self._call(call_id, "screening")
        call.state = "incoming"
        r = self._response(call.invite, 180, "Ringing", call.local_tag)
        r.add("Contact", self._contact())
        call.invite_tx.respond(r, now)
        e = call.offered_event
        call.offered_event = None
        self._events.append(IncomingCall(call_id, e.caller, e.display, e.secure, e.evidence,
                                         e.evidence_nonce))
        self._collect(now)

    def answer(self, call_id, local_media, now):
        call = self._call(call_id, "incoming")
        self._check_mode(local_media)
        try:
            body, media = sdp.create_answer(call.offer_sdp, local_media, self.signalling_secure)
        except (sdp.NegotiationError, sdp.SdpError) as e:
            self._respond(call.invite_tx, call.invite, 488, "Not Acceptable Here", now, call.local_tag,
                          warning=_warning_text(e))
            self._end(call, 488, str(e), "error")
            self._collect(now)   # the 488 must leave now, not with the next received message
            return
        call.local_media = local_media
        call.media = media
        resp = self._response(call.invite, 200, "OK", call.local_tag)
        resp.add("Contact", self._contact())
        call.answer_sdp = body.serialize()
        call.dialog = Dialog.from_uas(call.invite, call.local_tag)
        # RFC 3261 §20.1: evidence only for a caller whose Accept lists multipart/mixed (no quote
        # is made for one that could not read it)
        if self.config.attest and call.peer_accepts_multipart:
            call.state = "answering"
            call.held = (resp, media)
            try:
                nonce = callbind.evidence_nonce("answer", call.call_id, call.invite.from_.tag,
                                                call.local_tag, callbind.aor(self.aor),
                                                callbind.aor(call.remote),
                                                callbind.sdp_cryptos(call.answer_sdp))
            except ValueError:
                nonce = None    # the caller's URI is no SIP AOR: nothing to bind evidence to
            self._events.append(EvidenceNeeded(call.call_id, nonce, "answer"))
            return
        _set_body(resp, call.answer_sdp, None)
        call.state = "connected"
        call.invite_tx.respond(resp, now)
        self._events.append(CallAnswered(call.call_id, media))
        self._collect(now)

    def reject(self, call_id, now, status=486, reason="Busy Here", warning=None):
        """Refuse a ringing (or, in attest mode, a screened) call; `warning` is the text of a
        Warning header (RFC 3261 §20.43) saying why."""
        call = self.calls.get(call_id)
        if call is None or call.state not in ("incoming", "screening", "answering"):
            raise ValueError("no incoming call %s" % call_id)
        self._respond(call.invite_tx, call.invite, status, reason, now, call.local_tag,
                      warning=None if warning is None else _printable(warning, 200))
        self._end(call, status, reason, "local")
        self._collect(now)

    def hangup(self, call_id, now, reason=None):
        """End a call in any state. `reason`: a Reason header value (RFC 3326) for the BYE."""
        call = self.calls.get(call_id)
        if call is None:
            raise ValueError("no call %s" % call_id)
        if call.state == "connected":
            self._send_bye(call, now, reason)
            self._end(call, 200, "local hangup", "local")
        elif call.state == "attesting":
            self._end(call, 487, "cancelled before the INVITE was sent", "local")
        elif call.state in ("calling", "early"):
            if call.provisional:
                self._send_cancel(call, now)
            else:
                call.cancel_pending = True   # §9.1: CANCEL only after a provisional response
            call.state = "cancelling"
        elif call.state in ("incoming", "screening", "answering"):
            self.reject(call_id, now, 603, "Decline")
        self._collect(now)

    def _check_mode(self, local_media):
        # the insecure test mode is a property of the whole UA, never of one call's media
        if local_media.insecure and not self.config.insecure:
            raise ValueError("insecure media needs UaConfig(insecure=True) (test mode)")

    def status(self):
        """What a console shows: registration and, per call, state, peer and protection.
        `locked` (encrypted media over TLS signalling) is what the user's padlock shows; the I/O
        layer only opens TLS flows whose server certificate verified."""
        calls = []
        for call in self.calls.values():
            suite = call.media.suite if call.media is not None else None
            calls.append({"call_id": call.call_id, "state": call.state, "direction": call.direction,
                          "peer": call.remote, "suite": suite,
                          "locked": suite is not None and self.signalling_secure})
        return {"registered": self.registered, "aor": self.aor, "expires": self.reg_expires,
                "transport": self.config.transport, "calls": calls}

    def connection_lost(self, now):
        """The transport flow broke: registration is gone until register() succeeds again."""
        self.registered = False
        self._framer = StreamFramer() if self.reliable else None
        self._pong_deadline = None

    # --- I/O -------------------------------------------------------------------------------------

    def receive(self, data, now):
        """Bytes from the flow. Nothing a peer sends makes this raise: malformed messages are
        answered (400/488 with the reason) or dropped, and counted in `rejected`."""
        try:
            self._receive(data, now)
        except Exception as e:     # a bug reached by remote input: log it, keep the UA alive
            self.rejected += 1
            self._events.append(MessageRejected("internal error on received data: %s: %s"
                                                % (e.__class__.__name__, _printable(str(e)))))
        try:
            self._collect(now)
        except Exception as e:
            self.rejected += 1
            self._events.append(MessageRejected("internal error after received data: %s: %s"
                                                % (e.__class__.__name__, _printable(str(e)))))

    def _receive(self, data, now):
        if self._framer is None:
            self._receive_message(data, now, False)
        else:
            try:
                items = self._framer.feed(data)
            except SipParseError as e:
                # a corrupt stream cannot be re-synchronised: the flow must be re-opened
                self.rejected += 1
                self._events.append(MessageRejected(str(e)))
                self._events.append(FlowFailed("corrupt stream: %s" % e))
                self._framer = StreamFramer()
                items = []
            for kind, raw in items:
                if kind == "ping":
                    self._out.append(b"\r\n")
                elif kind == "pong":
                    self.pongs += 1
                    self._pong_deadline = None
                else:
                    self._receive_message(raw, now, True)

    def handle_timer(self, now):
        for tx in self.client_txs + self.server_txs:
            t = tx.next_timer()
            if t is not None and t <= now:
                tx.handle_timer(now)
        if self._reg_refresh_at is not None and self._reg_refresh_at <= now:
            self._reg_refresh_at = None
            self._reg_auth_nonce = None
            self._send_register(now, None)
        if self._pong_deadline is not None and self._pong_deadline <= now:
            self._pong_deadline = None
            self.registered = False
            self._events.append(FlowFailed("no keep-alive pong within 10 s"))
        if self._ka_at is not None and self._ka_at <= now:
            self._out.append(b"\r\n\r\n")
            self._pong_deadline = now + 10000   # RFC 5626 §4.4.1: pong within 10 s
            self._schedule_keepalive(now)
        self._collect(now)

    def get_timer(self):
        times = [tx.next_timer() for tx in self.client_txs + self.server_txs]
        times += [self._reg_refresh_at, self._ka_at, self._pong_deadline]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def data_to_send(self):
        out = self._out
        self._out = []
        return out

    def next_event(self):
        if self._events:
            return self._events.pop(0)
        return None

    # --- building messages -------------------------------------------------------------------------

    def _via(self):
        c = self.config
        via = "SIP/2.0/%s %s:%d;branch=z9hG4bK%s;rport" % (c.transport, c.local_host, c.local_port,
                                                             _rand_hex(8))
        if self.reliable:
            via += ";alias"   # RFC 5923: reuse this connection for requests to us
        return via

    def _contact(self, expires=None):
        c = self.config
        uri = "sip:%s@%s:%d;transport=%s" % (c.user, c.local_host, c.local_port, c.transport.lower())
        if self.reliable:
            uri += ";ob"      # RFC 5626 §5.4: reach us over the flow this came in on
        s = "<%s>" % uri
        if expires is not None:
            s += ";expires=%d" % expires
        return s

    def _from(self, tag):
        c = self.config
        na = '"%s" <%s>' % (c.display, self.aor) if c.display else "<%s>" % self.aor
        return na + ";tag=" + tag

    def _new_request(self, method, uri, to, call_id, tag, cseq):
        req = Request(method, uri)
        req.add("Via", self._via())
        req.add("Max-Forwards", "70")
        req.add("From", self._from(tag))
        req.add("To", to)
        req.add("Call-ID", call_id)
        req.add("CSeq", "%d %s" % (cseq, method))
        req.add("User-Agent", self.config.user_agent)
        return req

    def _response(self, req, status, reason, to_tag=None):
        """§8.2.6.2: copy Via, From, Call-ID, CSeq; To gets our tag unless it has one (or 100)."""
        resp = Response(status, reason)
        for v in req.get_all("Via"):
            resp.add("Via", v)
        resp.add("From", req.get("From"))
        to = req.get("To")
        if to_tag and status > 100 and NameAddr.parse(to, "To").tag is None:
            to = to + ";tag=" + to_tag
        resp.add("To", to)
        resp.add("Call-ID", req.call_id)
        resp.add("CSeq", req.get("CSeq"))
        if req.method == "INVITE" and 100 < status < 300:
            for rr in req.get_all("Record-Route"):   # §12.1.1: the UAS copies Record-Route
                resp.add("Record-Route", rr)
        return resp

    def _respond(self, tx, req, status, reason, now, to_tag=None, warning=None):
        resp = self._response(req, status, reason, to_tag or _rand_hex(6))
        if status == 405:
            resp.add("Allow", ALLOW)
        if warning is not None:
            resp.add("Warning", self._warning(warning))
        if tx is None:
            self._out.append(resp.serialize())
        else:
            tx.respond(resp, now)
        return resp

    def _warning(self, text):
        """RFC 3261 §20.43: `399 <warn-agent> "<text>"` (399: miscellaneous warning)."""
        return '399 %s "%s"' % (self.config.local_host, text)

    def _start_client(self, req, now):
        tx = ClientTransaction(req, self.reliable, now, self.config.t1)
        self.client_txs.append(tx)
        self._collect(now)
        return tx

    # --- registration (§10.2) ----------------------------------------------------------------------

    def _send_register(self, now, authorization):
        self._reg_cseq += 1
        c = self.config
        reg_uri = SipUri("sip", c.domain)
        req = self._new_request("REGISTER", reg_uri, "<%s>" % self.aor, self._reg_call_id,
                                self._reg_tag, self._reg_cseq)
        req.add("Contact", self._contact(self._reg_wanted))
        req.add("Expires", str(self._reg_wanted))
        # No "Supported: outbound": full RFC 5626 needs +sip.instance/reg-id, which this UA does not
        # send; flow reuse rests on ;alias (RFC 5923), rport and the registrar's NAT handling.
        if authorization is not None:
            req.add(authorization[0], authorization[1])
        self._reg_tx = self._start_client(req, now)

    def _on_register_response(self, tx, resp, now):
        code = resp.status
        if code < 200:
            return
        if code in (401, 407):
            if not self._may_send_credentials():
                self._reg_failed(code, "challenge not answered: signalling is not verified TLS", now)
                return
            hdr = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
            try:
                chals = [digest.parse_challenge(v, hdr) for v in resp.get_all(hdr)]
            except SipParseError as e:
                self._reg_failed(code, "bad challenge: %s" % e, now)
                return
            ch = digest.choose(chals)
            if ch is None:
                self._reg_failed(code, "no supported digest challenge", now)
                return
            if self._reg_auth_nonce is not None:
                # RFC 7616 §3.3: stale=true means "same credentials, new nonce" - retry once per
                # request; a second stale (or any non-stale) challenge is a refusal
                if not ch.stale or self._reg_stale_retries >= MAX_STALE_RETRIES:
                    self._reg_failed(code, "credentials rejected" if not ch.stale else
                                     "stale nonce again after %d retry" % self._reg_stale_retries, now)
                    return
                if self.registrar_realm is not None and ch.realm != self.registrar_realm:
                    self._reg_failed(code, "registrar changed its realm", now)
                    return
                self._reg_stale_retries += 1
            else:
                self._reg_stale_retries = 0
            self.registrar_realm = ch.realm
            self._reg_auth_nonce = ch.nonce
            cred = digest.authorization(ch, self.config.auth_user, self.config.password, "REGISTER",
                                        "sip:%s" % self.config.domain)
            self._send_register(now, ("Authorization" if code == 401 else "Proxy-Authorization", cred))
            return
        if code == 423:
            mn = resp.get("Min-Expires")
            if mn is not None and mn.isdigit() and int(mn) > self._reg_wanted and not self._reg_unregistering:
                self._reg_wanted = int(mn)
                self._reg_auth_nonce = None
                self._send_register(now, None)
                return
        if 200 <= code < 300:
            self._reg_auth_nonce = None
            self._reg_stale_retries = 0
            if self._reg_unregistering:
                self.registered = False
                self._reg_refresh_at = None
                self._events.append(Unregistered())
                return
            expires = self._granted_expires(resp)
            if expires <= 0:
                self._reg_failed(code, "registrar kept no binding for our Contact", now)
                return
            self.registered = True
            self.reg_expires = expires
            # refresh at half the granted time, so a lost refresh can be retried before expiry
            self._reg_refresh_at = now + expires * 500
            self._events.append(Registered(expires))
            return
        self._reg_failed(code, resp.reason, now)

    def _granted_expires(self, resp):
        mine = self._contact()
        mine_uri = NameAddr.parse(mine, "Contact").uri
        try:
            contacts = resp.contacts()
        except SipParseError:
            contacts = []
        for c in contacts:
            if c.uri is not None and c.uri.user == mine_uri.user and c.uri.host == mine_uri.host and \
                    c.uri.port == mine_uri.port:
                e = c.param("expires")
                if e is not None and e.isdigit():
                    return int(e)
        e = resp.get("Expires")
        if e is not None and e.isdigit():
            return int(e)
        if contacts:
            # a registrar that rewrote our Contact (e.g. received/alias): take its expiry
            e = contacts[0].param("expires")
            if e is not None and e.isdigit():
                return int(e)
        return self._reg_wanted

    def _may_send_credentials(self):
        """Credentials only travel on the verified TLS flow to the registrar (the I/O layer opens
        TLS flows only after the server certificate verified); plain transports only in the
        explicit insecure test mode."""
        return self.signalling_secure or self.config.insecure

    def _reg_failed(self, status, reason, now):
        self.registered = False
        self._reg_auth_nonce = None
        self._reg_stale_retries = 0
        self._events.append(RegistrationFailed(status, reason))
        self._reg_refresh_at = now + 60000   # try again in a minute

    # --- keep-alive --------------------------------------------------------------------------------

    def _schedule_keepalive(self, now):
        iv = self.config.keepalive_ms
        if iv is None:
            # 80-100% of 120 s, randomised so phones behind one NAT do not ping together
            iv = 96000 + int.from_bytes(compat.random_bytes(2), "big") % 24000
        self._ka_at = now + iv

    # --- receiving ---------------------------------------------------------------------------------

    def _receive_message(self, raw, now, stream):
        try:
            msg = parse_message(raw, stream)
        except SipParseError as e:
            self.rejected += 1
            self._reject_bad(raw, e)
            return
        try:
            if isinstance(msg, Response):
                self._on_response(msg, now)
            else:
                self._on_request(msg, now)
        except SipParseError as e:
            # a value the dispatcher needed is malformed: answer 400 (bad SIP) or 488 (bad SDP,
            # RFC 3261 §21.4.26) with the reason in a Warning (§20.43); drop responses
            self.rejected += 1
            status = 488 if isinstance(e, sdp.SdpError) else 400
            self._answer_error(msg, status, e, now)
            self._events.append(MessageRejected(str(e), status if isinstance(msg, Request) else None))
        except Exception as e:
            # not a parse error: a bug reached by remote input. Answer 500 (§21.5.1), keep going.
            self.rejected += 1
            self._answer_error(msg, 500, e, now)
            self._events.append(MessageRejected("internal error on %s: %s: %s" % (
                msg.method if isinstance(msg, Request) else "response %d" % msg.status,
                e.__class__.__name__, _printable(str(e))), 500 if isinstance(msg, Request) else None))

    def _answer_error(self, msg, status, err, now):
        if not isinstance(msg, Request) or msg.method == "ACK":
            return
        phrase = {400: _reason_text(err), 488: "Not Acceptable Here",
                  500: "Server Internal Error"}[status]
        try:
            resp = self._response(msg, status, phrase, _rand_hex(6))
            resp.add("Warning", self._warning(_warning_text(err)))
            data = resp.serialize()
        except Exception:
            return    # the headers a response must copy are themselves unusable: log only
        # the server transaction (if one was made) must not answer a second time
        for tx in self.server_txs:
            if tx.request is msg and not tx.terminated:
                try:
                    tx.respond(resp, now)
                    return
                except Exception:
                    pass
        self._out.append(data)

    def _reject_bad(self, raw, err):
        """RFC 4475 §3.1.2: answer a malformed request 400 with the reason, when its Via, From, To,
        Call-ID and CSeq can still be copied; malformed responses are dropped."""
        status = getattr(err, "status", 400)
        line = bytes(raw[:raw.find(b"\r\n")]) if b"\r\n" in raw else b""
        if line.startswith(b"SIP/") or not line:
            self._events.append(MessageRejected(str(err)))
            return
        fields = _salvage_headers(raw)
        needed = ("Via", "From", "To", "Call-ID", "CSeq")
        if line.split(b" ")[0] == b"ACK" or any(n not in fields for n in needed):
            self._events.append(MessageRejected(str(err)))
            return
        reason = _reason_text(err)
        out = ["SIP/2.0 %d %s" % (status, "Version Not Supported" if status == 505 else reason)]
        for n in needed:
            for v in fields[n]:
                out.append("%s: %s" % (n, v))
        if status == 505:
            out.append("Warning: 399 %s \"%s\"" % (self.config.local_host, reason))
        out.append("Content-Length: 0")
        self._out.append(("\r\n".join(out) + "\r\n\r\n").encode())
        self._events.append(MessageRejected(str(err), status))

    def _on_response(self, resp, now):
        if len(resp.get_all("Via")) != 1:
            # §8.1.3.3: a response for this UA carries exactly our one Via; others were misrouted
            self.rejected += 1
            self._events.append(MessageRejected("response with %d Via values dropped" % len(resp.get_all("Via"))))
            return
        for tx in self.client_txs:
            if tx.matches(resp):
                tx.receive_response(resp, now)
                return
        # §17.1.3: no transaction - a 2xx retransmission for an INVITE whose transaction ended
        if resp.cseq.method == "INVITE" and 200 <= resp.status < 300:
            call = self.calls.get(resp.call_id)
            if call is not None and call.ack is not None:
                self._out.append(call.ack)

    def _on_request(self, req, now):
        for tx in self.server_txs:
            if tx.matches(req):
                tx.receive_request(req, now)
                if req.method == "ACK":
                    self._on_ack(req, now, tx)
                return
        m = req.method
        if m == "ACK":
            self._on_ack(req, now, None)
            return
        if m == "CANCEL":
            self._on_cancel(req, now)
            return
        tx = ServerTransaction(req, self.reliable, now, self.config.t1)
        self.server_txs.append(tx)
        if not isinstance(req.uri, SipUri):
            # §8.2.2.1 (RFC 4475 §3.3.3): a scheme we cannot route on
            self._respond(tx, req, 416, "Unsupported URI Scheme", now)
            return
        required = []
        for v in req.get_all("Require"):
            required.extend([x.strip() for x in v.split(",") if x.strip()])
        unsupported = [x for x in required if x.lower() not in SUPPORTED]
        if unsupported:
            # §8.2.2.3 (RFC 4475 §3.3.7): refuse extensions we do not implement
            r = self._response(req, 420, "Bad Extension", _rand_hex(6))
            r.add("Unsupported", ", ".join(unsupported))
            tx.respond(r, now)
            return
        to_tag = req.to.tag
        if to_tag is not None:
            self._in_dialog(req, tx, now)
        elif m == "INVITE":
            self._on_invite(req, tx, now)
        elif m == "OPTIONS":
            r = self._response(req, 200, "OK", _rand_hex(6))
            r.add("Allow", ALLOW)
            tx.respond(r, now)
        elif m == "BYE":
            self._respond(tx, req, 481, "Call/Transaction Does Not Exist", now)
        else:
            self._respond(tx, req, 405, "Method Not Allowed", now)

    def _on_invite(self, req, tx, now):
        call_id = req.call_id
        if call_id in self.calls:
            self._respond(tx, req, 482, "Loop Detected", now)
            return
        call = Call(call_id, "in", None)
        call.invite = req
        call.invite_tx = tx
        if not req.body:
            # an offer-less INVITE would put our keys in the 2xx before we know the peer's: refuse
            self._respond(tx, req, 488, "Not Acceptable Here", now)
            self._events.append(CallEnded(call_id, 488, "INVITE without an SDP offer", "error"))
            return
        try:
            contacts = req.contacts()
        except SipParseError:
            contacts = []
        if len(contacts) != 1 or not isinstance(contacts[0].uri, SipUri) or req.from_.tag is None:
            # §8.1.1.8 / §12.1.1: a dialog needs the caller's single SIP Contact and From tag
            self._respond(tx, req, 400, "Bad Request: INVITE needs one SIP Contact and a From tag", now)
            self._events.append(MessageRejected("INVITE without one SIP Contact or From tag", 400))
            return
        try:
            offer_sdp, evidence, ctype = multipart.sdp_and_evidence(req.get("Content-Type"), req.body)
        except multipart.BodyError as e:
            # RFC 5621 §9.1: 415 for a required part we do not understand, else 400
            r = self._response(req, e.status, "Unsupported Media Type" if e.status == 415
                               else _reason_text(e), _rand_hex(6))
            if e.status == 415:
                r.add("Accept", "application/sdp, multipart/mixed")
            r.add("Warning", self._warning(_warning_text(e)))
            tx.respond(r, now)
            self._events.append(CallEnded(call_id, e.status, str(e), "error"))
            return
        if offer_sdp is None:
            r = self._response(req, 415, "Unsupported Media Type", _rand_hex(6))
            r.add("Accept", "application/sdp, multipart/mixed")
            tx.respond(r, now)
            self._events.append(CallEnded(call_id, 415, "offer is %s, not SDP" % (ctype or "")[:40],
                                          "error"))
            return
        call.offer_sdp = offer_sdp
        call.peer_accepts_multipart = _accepts(req, "multipart/mixed")
        try:
            offer = sdp.SessionDescription.parse(offer_sdp)
            # Refuse insecure offers now, before the phone rings (RFC 3261 §13.3.1.3: 488).
            probe = sdp.LocalMedia("0.0.0.0", 9, insecure=self.config.insecure)
            sdp.create_answer(offer, probe, self.signalling_secure)
        except sdp.SdpError as e:
            # RFC 3261 §21.4.26: the session description is not acceptable; the Warning names
            # the line (§20.43)
            self._respond(tx, req, 488, "Not Acceptable Here", now, warning=_warning_text(e))
            self._events.append(MessageRejected(str(e), 488))
            return
        except sdp.NegotiationError as e:
            self._respond(tx, req, 488, "Not Acceptable Here", now, warning=_warning_text(e))
            self._events.append(CallEnded(call_id, 488, e.reason, "error"))
            return
        self.calls[call_id] = call
        call.remote = str(req.from_.uri)
        caller = req.from_
        secure = offer.media[0].proto == "RTP/SAVP"
        if self.config.attest:
            try:
                nonce = callbind.evidence_nonce("offer", call_id, caller.tag, "",
                                                callbind.aor(caller.uri), callbind.aor(self.aor),
                                                callbind.sdp_cryptos(offer_sdp))
            except ValueError:
                nonce = None    # a caller URI that is no SIP AOR cannot be bound
            # the application judges the caller before anything rings (ring() / reject())
            call.state = "screening"
            call.offered_event = CallOffered(call_id, str(caller.uri), caller.display, secure,
                                             evidence, nonce)
            self._events.append(call.offered_event)
            return
        call.state = "incoming"
        r = self._response(req, 180, "Ringing", call.local_tag)
        r.add("Contact", self._contact())
        tx.respond(r, now)
        self._events.append(IncomingCall(call_id, str(caller.uri), caller.display, secure, evidence))

    def _on_cancel(self, req, now):
        # §9.2: a CANCEL matches the INVITE server transaction by branch; answer it either way
        tx = None
        for t in self.server_txs:
            if t.invite and t.branch == req.via.branch:
                tx = t
        cancel_tx = ServerTransaction(req, self.reliable, now, self.config.t1)
        self.server_txs.append(cancel_tx)
        if tx is None:
            self._respond(cancel_tx, req, 481, "Call/Transaction Does Not Exist", now)
            return
        self._respond(cancel_tx, req, 200, "OK", now)
        call = self.calls.get(req.call_id)
        if call is not None and call.state in ("incoming", "screening", "answering"):
            self._respond(tx, call.invite, 487, "Request Terminated", now, call.local_tag)
            self._end(call, 487, "cancelled by caller", "remote")

    def _on_ack(self, req, now, tx):
        call = self.calls.get(req.call_id)
        if call is not None and call.direction == "in" and call.invite_tx is not None:
            call.invite_tx.ack_received(now)

    def _in_dialog(self, req, tx, now):
        call = self.calls.get(req.call_id)
        d = call.dialog if call is not None else None
        if d is None or req.to.tag != d.local_tag or req.from_.tag != d.remote_tag:
            self._respond(tx, req, 481, "Call/Transaction Does Not Exist", now)
            return
        if not d.check_remote_cseq(req):
            self._respond(tx, req, 500, "CSeq Out of Order", now)
            return
        if req.method == "BYE":
            tx.respond(self._response(req, 200, "OK"), now)
            self._end(call, 200, "remote hangup", "remote")
        elif req.method == "INVITE":
            # re-INVITE (hold, refresh): keep the media we have; session changes are not supported
            self._respond(tx, req, 488, "Not Acceptable Here", now)
        elif req.method == "OPTIONS":
            tx.respond(self._response(req, 200, "OK"), now)
        else:
            self._respond(tx, req, 405, "Method Not Allowed", now)

    # --- transaction events ----------------------------------------------------------------------

    def _collect(self, now):
        """Move transaction output to the send queue and route their events; drop finished ones.
        Event handlers may start new transactions; a nested call only asks the outer loop to
        run again."""
        if self._collecting:
            self._collect_again = True
            return
        self._collecting = True
        try:
            self._collect_loop(now)
        finally:
            self._collecting = False

    def _collect_loop(self, now):
        changed = True
        while changed:
            changed = self._collect_again
            self._collect_again = False
            changed = False
            for tx in list(self.client_txs):
                if tx.outgoing:
                    self._out.extend(tx.outgoing)
                    tx.outgoing = []
                while tx.events:
                    kind, val = tx.events.pop(0)
                    changed = True
                    if kind == "response":
                        self._client_response(tx, val, now)
                    elif kind == "timeout":
                        self._client_timeout(tx, now)
                if tx.terminated and not tx.events and not tx.outgoing and tx in self.client_txs:
                    self.client_txs.remove(tx)
            for tx in list(self.server_txs):
                if tx.outgoing:
                    self._out.extend(tx.outgoing)
                    tx.outgoing = []
                while tx.events:
                    kind, val = tx.events.pop(0)
                    changed = True
                    if kind == "timeout" and val == "L":
                        call = self.calls.get(tx.request.call_id)
                        if call is not None and call.state == "connected":
                            # §13.3.1.4: no ACK for our 2xx - end the call with BYE
                            self._send_bye(call, now)
                            self._end(call, 408, "no ACK for 200 OK", "error")
                if tx.terminated and not tx.events and not tx.outgoing and tx in self.server_txs:
                    self.server_txs.remove(tx)

    def _client_response(self, tx, resp, now):
        m = tx.method
        if m == "REGISTER":
            if tx is self._reg_tx:
                self._on_register_response(tx, resp, now)
            return
        call = self.calls.get(resp.call_id)
        if call is None:
            return
        if m == "INVITE":
            self._on_invite_response(call, tx, resp, now)
        elif m == "BYE" or m == "CANCEL":
            pass

    def _client_timeout(self, tx, now):
        if tx.method == "REGISTER" and tx is self._reg_tx:
            self._reg_failed(408, "registrar did not answer (timer F)", now)
            return
        call = self.calls.get(tx.request.call_id)
        if call is not None and tx.method == "INVITE" and tx is call.invite_tx:
            self._end(call, 408, "no answer from the network (timer B)", "error")

    def _on_invite_response(self, call, tx, resp, now):
        if tx is not call.invite_tx:
            return
        code = resp.status
        if code < 200:
            call.provisional = True          # any 1xx, 100 Trying included, allows CANCEL (§9.1)
            if code > 100 and call.state == "calling":
                call.state = "early"
                if code in (180, 183):
                    self._events.append(CallRinging(call.call_id))
            elif code > 100 and call.state == "early" and code == 180:
                self._events.append(CallRinging(call.call_id))
            if call.cancel_pending:
                call.cancel_pending = False
                self._send_cancel(call, now)
            return
        if code < 300:
            if call.dialog is None:
                self._on_invite_2xx(call, resp, now)
            elif call.ack is not None:
                self._out.append(call.ack)    # 2xx retransmission: ACK again (§13.2.2.4)
            return
        if code in (401, 407):
            ch = self._invite_challenge(call, resp)
            if ch is not None:
                call.auth_tries += 1
                old = call.invite
                req = self._new_request("INVITE", old.uri, old.get("To"), call.call_id, call.local_tag,
                                        old.cseq.seq + 1)
                req.add("Contact", self._contact())
                for v in old.get_all("Accept"):
                    req.add("Accept", v)
                req.add("Content-Type", old.get("Content-Type"))
                req.add("Proxy-Authorization",
                        digest.authorization(ch, self.config.auth_user, self.config.password, "INVITE",
                                             str(old.uri)))
                req.body = old.body
                call.invite = req
                call.provisional = False     # a new INVITE transaction: CANCEL waits for its 1xx
                call.invite_tx = self._start_client(req, now)
                return
        if code in EVIDENCE_RETRY and call.evidence_sent and call.state in ("calling", "early"):
            # RFC 3261 §21.4.13 / RFC 5621 §9.1: the callee cannot take our multipart body (415;
            # baresip 1.0 answers 500): once more with the SDP alone, CSeq + 1 (§8.1.3.5). The
            # callee then judges us unattested, which is all it can do.
            old = call.invite
            req = self._new_request("INVITE", old.uri, old.get("To"), call.call_id, call.local_tag,
                                    old.cseq.seq + 1)
            for name in ("Contact", "Accept", "Proxy-Authorization"):
                for v in old.get_all(name):
                    req.add(name, v)
            _set_body(req, call.offer_sdp, None)
            call.evidence_sent = False
            call.invite = req
            call.state = "calling"
            call.provisional = False
            call.auth_tries = 0     # the proxy may challenge the new INVITE again
            self._events.append(MessageRejected("callee refused our evidence body (%d %s): "
                                                "INVITE sent again without evidence"
                                                % (code, _printable(resp.reason, 60))))
            call.invite_tx = self._start_client(req, now)
            return
        if call.state == "cancelling":
            self._end(call, 487, "cancelled", "local")
        else:
            reason = resp.reason
            warning = _warning_of(resp)
            if warning:
                reason += " (%s)" % warning     # §20.43: the callee's why, e.g. an integrity level
            self._end(call, code, reason, "remote")

    def _invite_challenge(self, call, resp):
        """The challenge to answer for our initial INVITE, or None (the call then ends with the
        401/407). Our credentials belong to the registrar: only its proxy's 407 (RFC 3261 §22.3:
        proxies challenge with 407; a 401 to an INVITE comes from the far end, i.e. the callee)
        in the realm our REGISTER was challenged in, on the verified TLS flow, once per call,
        before any far end answered (a 1xx with a To tag), and never inside a dialog."""
        if resp.status != 407 or call.auth_tries != 0 or call.state != "calling":
            return None
        if call.dialog is not None or not self._may_send_credentials():
            return None
        if self.registrar_realm is None:
            return None
        try:
            chals = [digest.parse_challenge(v, "Proxy-Authenticate")
                     for v in resp.get_all("Proxy-Authenticate")]
        except SipParseError:
            return None
        chals = [c for c in chals if c.realm == self.registrar_realm]
        return digest.choose(chals)

    def _on_invite_2xx(self, call, resp, now):
        try:
            call.dialog = Dialog.from_uac(call.invite, resp, call.local_tag)
        except SipParseError as e:
            # without one SIP Contact (and a To tag) there is no dialog to ACK or BYE in
            self._events.append(MessageRejected(str(e)))
            self._end(call, 502, "unusable 2xx: %s" % e.reason, "error")
            return
        ack = call.dialog.create_request("ACK", call.invite.cseq.seq)
        ack.headers.insert(0, ["Via", self._via()])
        call.ack = ack.serialize()
        self._out.append(call.ack)
        if call.state == "cancelling":
            # §9.1: the 2xx crossed our CANCEL - the call is up, so end it with BYE
            self._send_bye(call, now)
            self._end(call, 487, "cancelled", "local")
            return
        evidence = nonce = None
        try:
            answer_sdp = resp.body
            if resp.get("Content-Type") is not None:
                answer_sdp, evidence, _ = multipart.sdp_and_evidence(resp.get("Content-Type"),
                                                                     resp.body)
                if answer_sdp is None:
                    raise sdp.NegotiationError("2xx has no SDP answer")
            call.media = sdp.accept_answer(answer_sdp, call.offered, call.local_media,
                                           self.signalling_secure)
            call.answer_sdp = answer_sdp
        except (sdp.NegotiationError, SipParseError) as e:
            self._send_bye(call, now, "SIP;cause=488;text=\"%s\"" % _reason_text(e))
            self._end(call, 488, "unacceptable answer: %s" % e, "error")
            return
        if self.config.attest:
            try:
                nonce = callbind.evidence_nonce("answer", call.call_id, call.local_tag,
                                                call.dialog.remote_tag, callbind.aor(call.remote),
                                                callbind.aor(self.aor),
                                                callbind.sdp_cryptos(answer_sdp))
            except ValueError:
                nonce = None
        call.state = "connected"
        self._events.append(CallAnswered(call.call_id, call.media, evidence, nonce))

    def _send_bye(self, call, now, reason=None):
        req = call.dialog.create_request("BYE")
        req.headers.insert(0, ["Via", self._via()])
        req.add("User-Agent", self.config.user_agent)
        if reason:
            req.add("Reason", reason)
        self._start_client(req, now)

    def _send_cancel(self, call, now):
        # §9.1: same Request-URI, Call-ID, From, To, CSeq number and top Via as the INVITE
        inv = call.invite
        req = Request("CANCEL", inv.uri)
        req.add("Via", inv.get_all("Via")[0])
        for r in inv.get_all("Route"):
            req.add("Route", r)
        req.add("Max-Forwards", "70")
        req.add("From", inv.get("From"))
        req.add("To", inv.get("To"))
        req.add("Call-ID", inv.call_id)
        req.add("CSeq", "%d CANCEL" % inv.cseq.seq)
        self._start_client(req, now)

    def _end(self, call, status, reason, by):
        if call.state == "ended":
            return
        call.state = "ended"
        self.calls.pop(call.call_id, None)
        self._events.append(CallEnded(call.call_id, status, reason, by))

    def _call(self, call_id, state):
        call = self.calls.get(call_id)
        if call is None or call.state != state:
            raise ValueError("no %s call %s" % (state, call_id))
        return call


def _warning_of(resp):
    """The text of a response's first Warning (RFC 3261 §20.43 warn-text), printable, or None."""
    w = resp.get("Warning")
    if not w:
        return None
    q = w.find('"')
    text = w[q + 1:w.rfind('"')] if q >= 0 and w.rfind('"') > q else w
    return _printable(text, 200)


def _accepts(req, mtype):
    """Whether the request's Accept (RFC 3261 §20.1) lists `mtype` (or a matching wildcard)."""
    kind = mtype.split("/")[0]
    for v in req.get_all("Accept"):
        for item in v.split(","):
            t = item.split(";")[0].strip().lower()
            if t in (mtype, kind + "/*", "*/*"):
                return True
    return False


def _set_body(msg, sdp_bytes, evidence):
    """The SDP alone, or SDP + evidence as multipart/mixed (firmware.sip.multipart)."""
    if evidence is None:
        msg.set("Content-Type", multipart.SDP_TYPE)
        msg.body = sdp_bytes
    else:
        ctype, msg.body = multipart.build(sdp_bytes, evidence)
        msg.set("Content-Type", ctype)


def _printable(text, limit=100):
    out = []
    for ch in text[:limit]:
        out.append(ch if " " <= ch <= "~" and ch != '"' and ch != "\\" else "?")
    return "".join(out)


def _warning_text(err):
    """The Warning's quoted text (RFC 3261 §20.43, quoted-string): printable, bounded."""
    return _printable(str(err))


def _reason_text(err):
    """A reason phrase from an error: printable ASCII only, bounded (it goes back to the peer)."""
    text = getattr(err, "reason", None) or str(err)
    out = []
    for ch in text[:100]:
        out.append(ch if " " <= ch <= "~" and ch != '"' else "?")
    return "Bad Request: " + "".join(out)


def _salvage_headers(raw):
    """The raw values of the headers a 400 must copy, read leniently from a message that failed
    to parse. Values are kept only when they hold no control characters."""
    from firmware.sip.message import canonical_name

    out = {}
    end = raw.find(b"\r\n\r\n")
    head = raw[:end] if end >= 0 else raw
    try:
        text = bytes(head).decode("utf-8")
    except UnicodeError:
        return out
    lines = text.split("\r\n")[1:]
    merged = []
    for ln in lines:
        if ln[:1] in (" ", "\t") and merged:
            merged[-1] += " " + ln.strip()
        else:
            merged.append(ln)
    for ln in merged:
        name, colon, value = ln.partition(":")
        if not colon:
            continue
        n = canonical_name(name.strip())
        if n in ("Via", "From", "To", "Call-ID", "CSeq"):
            v = value.strip()
            if v and all(" " <= ch or ch == "\t" for ch in v):
                out.setdefault(n, []).append(v)
    return out
