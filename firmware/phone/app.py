# The phone application core, sans-I/O: one SIP user agent (firmware.sip.ua) and, while a call is
# up, one CallMedia (firmware.phone.call) for it. The console calls register/call/answer/hangup
# and shows status(); the I/O shim (io_cpython.py on the QEMU image) feeds bytes and time in and
# sends what comes out. One call at a time: a second incoming call is answered 486 Busy Here.
#
# The security indicator (what the user's padlock shows): "locked" only when the call's media is
# SRTP AND the signalling that carried its keys is TLS AND the TLS server certificate verified
# against the provisioned CA (RFC 4568 §8.1: SDES keys are only as safe as the signalling).

from firmware import compat
from firmware.phone.call import CallMedia
from firmware.phone.remote import describe
from firmware.sip import ua as sipua
from firmware.sip.sdp import PREFERENCE, LocalMedia

LOG_KEEP = 64   # log lines kept in memory for status/console


def _now(now):
    return compat.monotonic_ms() if now is None else now


class PhoneApp:
    """config: firmware.sip.ua.UaConfig; media_address/media_port: where our RTP socket is bound
    (RTCP on media_port + 1); tls_verified: the shim's TLS flow verified the server certificate
    and name; log: callable(line); engine: SRTP engine for CallMedia; auto_answer: answer incoming
    calls at once (a test and bench convenience); address_map: {address in the peer's SDP: address
    to send media to} for a board whose network rewrites addresses (qemu-x86_64 with user-mode
    networking: a host peer at 127.0.0.1 is 10.0.2.2 seen from the guest).

    Attestation at call set-up (docs/attestation.md "Evidence in SIP"): attester(nonce bytes) ->
    evidence bytes (I/O: a TPM quote through the broker) is called for our INVITE and 2xx; judge
    (firmware.phone.remote.RemoteJudge) judges the caller before the phone rings and the callee
    on its 2xx before media flows. Either one switches the UA to attest mode."""

    def __init__(self, config, media_address, media_port, now=None, log=None, engine="auto",
                 tls_verified=False, suites=PREFERENCE, codecs=(0, 8), auto_answer=False,
                 rtcp_interval_ms=5000, jitter_delay_ms=60, address_map=None, attester=None,
                 judge=None):
        now = _now(now)
        self.address_map = dict(address_map or {})
        self.attester = attester
        self.judge = judge
        if attester is not None or judge is not None:
            config.attest = True
        self.remote = None          # the current call's remote judgement (dict) once known
        self.notices = []           # one-line notices for the console (remote level known)
        self.ua = sipua.UserAgent(config, now)
        self.config = config
        self.media_address = media_address
        self.media_port = media_port
        self.tls_verified = tls_verified
        self.engine = engine
        self.suites = suites
        self.codecs = codecs
        self.auto_answer = auto_answer
        self.rtcp_interval_ms = rtcp_interval_ms
        self.jitter_delay_ms = jitter_delay_ms
        self._log_cb = log
        self.log_lines = []
        self.call_id = None         # the current call (any state), or None when idle
        self.media = None           # its CallMedia once answered
        self._closing = []          # media of ended calls with a last RTCP BYE to send
        self.last_call = None       # how the previous call ended (dict), for status
        self.registration_error = None   # why the last REGISTER failed, until one succeeds
        self._events = []

    # --- console API -----------------------------------------------------------------------------

    def register(self, now=None):
        now = _now(now)
        self.ua.register(now)
        self._pump(now)

    def unregister(self, now=None):
        now = _now(now)
        self.ua.unregister(now)
        self._pump(now)

    def call(self, uri, now=None):
        """Call `uri` (e.g. "sip:bob@example.org"); returns the Call-ID. ValueError when a call is
        already up or the URI does not parse."""
        now = _now(now)
        if self.call_id is not None:
            raise ValueError("already in a call (%s); hang up first" % self.call_id)
        self.remote = None
        cid = self.ua.call(uri, self._local_media(), now)
        self.call_id = cid
        self.log("call %s: calling %s" % (cid, uri))
        self._pump(now)
        return cid

    def answer(self, now=None):
        """Answer the ringing incoming call; returns its Call-ID. ValueError when none rings."""
        now = _now(now)
        call = self._current()
        if call is None or call.state != "incoming":
            raise ValueError("no incoming call to answer")
        self.ua.answer(call.call_id, self._local_media(), now)
        self._pump(now)
        return call.call_id

    def hangup(self, now=None):
        """Hang up (or cancel, or decline) the current call. ValueError when idle."""
        now = _now(now)
        if self.call_id is None:
            raise ValueError("no call to hang up")
        self.ua.hangup(self.call_id, now)
        self._pump(now)

    def status(self):
        """One JSON-able dict: registration, the current call and its security indicator."""
        st = self.ua.status()
        out = {"registered": st["registered"], "aor": st["aor"], "expires": st["expires"],
               "transport": st["transport"], "tls_verified": self.tls_verified,
               "registration_error": self.registration_error, "call": None,
               "last_call": self.last_call}
        call = self._current()
        if call is not None:
            suite = call.media.suite if call.media is not None else None
            indicator, why = self.security(call)
            c = {"call_id": call.call_id, "state": call.state, "direction": call.direction,
                 "peer": call.remote, "suite": suite, "security": indicator, "why": why,
                 "remote": self.remote}
            if self.media is not None:
                c["codec"] = self.media.params.codec
                c["media"] = self.media.stats()
            out["call"] = c
        return out

    def security(self, call=None):
        """("locked", "") or ("unlocked", why) for `call` (default: the current call)."""
        if call is None:
            call = self._current()
        if call is None:
            return "unlocked", "no call"
        if call.media is None:
            return "unlocked", "media keys not negotiated yet"
        if call.media.suite is None:
            return "unlocked", "media is plain RTP (insecure test mode)"
        if not self.ua.signalling_secure:
            return "unlocked", "signalling is %s, not TLS: SDES keys were sent in the clear" \
                % self.config.transport
        if not self.tls_verified:
            return "unlocked", "TLS server certificate was not verified"
        return "locked", ""

    def next_event(self):
        """The next UA event (firmware.sip.ua: Registered, RegistrationFailed, Unregistered,
        IncomingCall, CallRinging, CallAnswered, CallEnded, MessageRejected, FlowFailed)."""
        if self._events:
            return self._events.pop(0)
        return None

    # --- audio -----------------------------------------------------------------------------------

    def send_pcm(self, pcm):
        """Queue 16-bit LE 8 kHz mono PCM to send in the current call."""
        if self.media is None:
            raise ValueError("no call with media")
        self.media.send_pcm(pcm)

    def read_pcm(self):
        """PCM received and decoded in the current call since the last read."""
        return self.media.read_pcm() if self.media is not None else b""

    # --- I/O shim side ---------------------------------------------------------------------------

    def flow_up(self, local_host, local_port, verified):
        """The shim opened a (new) TLS flow from local_host:local_port."""
        self.config.local_host = local_host
        self.config.local_port = local_port
        self.tls_verified = verified

    def connection_lost(self, now):
        self.tls_verified = False
        self.ua.connection_lost(now)
        self._pump(now)

    def receive_sip(self, data, now):
        self.ua.receive(data, now)
        self._pump(now)

    def sip_to_send(self):
        return self.ua.data_to_send()

    def receive_media(self, data, addr, now, rtcp=None):
        """A datagram from our RTP (rtcp=False) or RTCP (rtcp=True) socket."""
        if self.media is not None:
            self.media.receive(data, addr, now, rtcp)
        else:
            self.log("media: ignored %d-byte datagram from %s:%d outside a call"
                      % (len(data), addr[0], addr[1]))

    def datagrams_to_send(self):
        """[(kind, data, (host, port))] with kind "rtp" or "rtcp"."""
        out = []
        for m in self._closing:
            out.extend(m.datagrams_to_send())
        self._closing = []
        if self.media is not None:
            out.extend(self.media.datagrams_to_send())
        return out

    def get_timer(self):
        times = [self.ua.get_timer()]
        if self.media is not None:
            times.append(self.media.get_timer())
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def handle_timer(self, now):
        t = self.ua.get_timer()
        if t is not None and t <= now:
            self.ua.handle_timer(now)
            self._pump(now)
        if self.media is not None:
            t = self.media.get_timer()
            if t is not None and t <= now:
                self.media.handle_timer(now)
            m = self.media
            if m is not None and m.key_expired is not None and self.call_id is not None:
                # RFC 4568 §6.1: the key's lifetime is used up; re-keying would need a re-INVITE
                # with new a=crypto lines, which this phone does not send: end the call
                cid = self.call_id
                self.log("call %s: hanging up: %s" % (cid, m.key_expired))
                self.ua.hangup(cid, now)
                self._pump(now)

    # --- internals -------------------------------------------------------------------------------

    def _local_media(self):
        return LocalMedia(self.media_address, self.media_port, suites=self.suites,
                          codecs=self.codecs, insecure=self.config.insecure)

    def _current(self):
        if self.call_id is None:
            return None
        return self.ua.calls.get(self.call_id)

    def log(self, line):
        self.log_lines.append(line)
        if len(self.log_lines) > LOG_KEEP:
            self.log_lines.pop(0)
        if self._log_cb is not None:
            self._log_cb(line)

    def _pump(self, now):
        while True:
            e = self.ua.next_event()
            if e is None:
                return
            try:
                self._on_event(e, now)
            except Exception as err:
                # one event the app could not act on (e.g. media for a peer's odd answer) must
                # not stop the phone: log one line, drop that call, go on
                self.log("phone: %s failed: %s: %s" % (e.__class__.__name__, err.__class__.__name__,
                                                       _one_line(str(err))))
                self._drop_call(e, now)
            self._events.append(e)

    def _drop_call(self, e, now):
        cid = getattr(e, "call_id", None)
        if cid is None or cid != self.call_id:
            return
        try:
            if self.ua.calls.get(cid) is not None:
                self.ua.hangup(cid, now)
        except Exception as err:
            self.log("phone: hangup of %s failed: %s" % (cid, _one_line(str(err))))
        if self.media is not None:
            self._closing.append(self.media)
        self.media = None
        self.call_id = None

    def _judge(self, e):
        t0 = compat.monotonic_ms()
        remote = self.judge.judge(e.evidence, e.evidence_nonce)
        if e.evidence is not None:
            self.log("call %s: %d bytes of evidence appraised in %d ms"
                     % (e.call_id, len(e.evidence), compat.monotonic_ms() - t0))
        return remote

    def _remote_known(self, call_id, peer, remote):
        self.remote = remote
        line = "call %s: %s" % (call_id, describe(peer, remote))
        self.log(line)
        self.notices.append(line)

    def _on_event(self, e, now):
        if isinstance(e, sipua.EvidenceNeeded):
            data = None
            if self.attester is not None and e.nonce is not None:
                t0 = compat.monotonic_ms()
                try:
                    data = self.attester(e.nonce)
                    self.log("call %s: evidence of %d bytes in %d ms"
                             % (e.call_id, len(data), compat.monotonic_ms() - t0))
                except Exception as err:  # noqa: BLE001  the call goes on, judged unattested
                    self.log("call %s: sending no evidence: %s: %s"
                             % (e.call_id, err.__class__.__name__, _one_line(str(err))))
            self.ua.provide_evidence(e.call_id, data, now)
        elif isinstance(e, sipua.CallOffered):
            if self.call_id is not None and self.call_id != e.call_id:
                self.log("call %s: busy, declined call from %s" % (e.call_id, e.caller))
                self.ua.reject(e.call_id, now, 486, "Busy Here")
                return
            self.call_id = e.call_id
            self.remote = None
            if self.judge is None:
                self.ua.ring(e.call_id, now)
                return
            remote = self._judge(e)
            self._remote_known(e.call_id, e.caller, remote)
            if self.judge.acceptable(remote):
                self.ua.ring(e.call_id, now)
            else:
                # RFC 3261 §21.4.4 403: understood, refused; the Warning (§20.43) says why
                why = self.judge.refusal(remote)
                self.log("call %s: refused: %s" % (e.call_id, why))
                self.ua.reject(e.call_id, now, 403, "Forbidden", warning=why)
        elif isinstance(e, sipua.IncomingCall):
            if self.call_id is not None and self.call_id != e.call_id:
                self.log("call %s: busy, declined call from %s" % (e.call_id, e.caller))
                self.ua.reject(e.call_id, now, 486, "Busy Here")
                return
            if self.call_id != e.call_id:
                self.remote = None
            self.call_id = e.call_id
            self.log("call %s: incoming from %s" % (e.call_id, e.caller))
            if self.auto_answer:
                self.ua.answer(e.call_id, self._local_media(), now)
        elif isinstance(e, sipua.CallAnswered):
            if e.call_id != self.call_id:
                return
            call = self.ua.calls.get(e.call_id)
            if self.judge is not None and call is not None and call.direction == "out":
                # the callee is judged on its 2xx, before any media flows
                remote = self._judge(e)
                self._remote_known(e.call_id, call.remote, remote)
                if not self.judge.acceptable(remote):
                    why = self.judge.refusal(remote)
                    self.log("call %s: hanging up: %s" % (e.call_id, why))
                    # the 2xx was ACKed (RFC 3261 §13.2.2.4); BYE with the reason (RFC 3326)
                    self.ua.hangup(e.call_id, now, 'SIP;cause=403;text="%s"' % why)
                    return
            mapped = self.address_map.get(e.media.remote_address)
            if mapped is not None:
                self.log("call %s: media for %s sent to %s (board address map)"
                         % (e.call_id, e.media.remote_address, mapped))
                e.media.remote_address = mapped
            self.media = CallMedia(e.media, now, log=self.log, engine=self.engine,
                                   insecure=self.config.insecure,
                                   rtcp_interval_ms=self.rtcp_interval_ms,
                                   jitter_delay_ms=self.jitter_delay_ms, name=e.call_id[:12])
            indicator, why = self.security()
            self.log("call %s: connected, %s %s to %s:%d, %s%s"
                      % (e.call_id, e.media.codec, e.media.suite or "plain RTP",
                         e.media.remote_address, e.media.remote_port, indicator,
                         (" (" + why + ")") if why else ""))
        elif isinstance(e, sipua.CallEnded):
            if e.call_id != self.call_id:
                return
            stats = None
            if self.media is not None:
                self.media.close(now)
                stats = self.media.stats()
                self._closing.append(self.media)
            self.last_call = {"call_id": e.call_id, "status": e.status, "reason": e.reason,
                              "by": e.by, "media": stats, "remote": self.remote}
            self.remote = None
            self.log("call %s: ended by %s: %s %s" % (e.call_id, e.by, e.status, e.reason))
            self.media = None
            self.call_id = None
        elif isinstance(e, sipua.MessageRejected):
            self.log("sip: rejected bad message: %s" % e.reason)
        elif isinstance(e, sipua.FlowFailed):
            self.log("sip: flow failed: %s" % e.reason)
        elif isinstance(e, sipua.RegistrationFailed):
            self.registration_error = "%s %s" % (e.status, e.reason)
            self.log("sip: registration failed: %s %s" % (e.status, e.reason))
        elif isinstance(e, sipua.Registered):
            self.registration_error = None
            self.log("sip: registered as %s for %d s" % (self.ua.aor, e.expires))


def _one_line(text, limit=160):
    out = []
    for ch in text[:limit]:
        out.append(ch if " " <= ch <= "~" else "?")
    return "".join(out)
