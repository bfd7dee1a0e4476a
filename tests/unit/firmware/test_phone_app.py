# firmware.phone.app.PhoneApp: two real phone cores register and call each other through the
# registrar/proxy core of test_sip_ua (RFC 3261 §10.3, §16) over an in-memory network, media
# included (SRTP both ways, a tone each way). No sockets; time is an explicit `now`. Runs under
# pytest and MicroPython.
from firmware.phone.app import PhoneApp
from firmware.phone.tone import dominant_frequency, sine_pcm
from firmware.sip import ua as sipua
from tests.unit.firmware.check import raises
from tests.unit.firmware.test_sip_ua import REALM, MiniProxy

USERS = {"alice": "alicepw", "bob": "bobpw", "carol": "carolpw"}


class World:
    def __init__(self, verified=True, transport="TLS", insecure=False):
        self.proxy = MiniProxy(USERS)
        self.apps = {}
        self.ports = {}
        self.now = 0
        n = 0
        for name in ("alice", "bob", "carol"):
            n += 1
            cfg = sipua.UaConfig(name, REALM, USERS[name], transport, "10.0.0.%d" % n, 5060,
                                 keepalive_ms=30000, insecure=insecure)
            app = PhoneApp(cfg, "10.0.0.%d" % n, 40000 + 2 * n, 0, engine="pure",
                           tls_verified=verified, rtcp_interval_ms=1000, jitter_delay_ms=40)
            self.apps[name] = app
            self.ports[("10.0.0.%d" % n, 40000 + 2 * n)] = (app, False)
            self.ports[("10.0.0.%d" % n, 40001 + 2 * n)] = (app, True)
        self.events = dict([(k, []) for k in self.apps])

    def pump(self):
        moved = True
        while moved:
            moved = False
            for name in sorted(self.apps):
                app = self.apps[name]
                for data in app.sip_to_send():
                    moved = True
                    for flow, out in self.proxy.receive(name, data):
                        self.apps[flow].receive_sip(out, self.now)
                for kind, data, addr in app.datagrams_to_send():
                    moved = True
                    dst = self.ports.get(addr)
                    if dst is not None:
                        src = (app.media_address, app.media_port + (1 if kind == "rtcp" else 0))
                        dst[0].receive_media(data, src, self.now, dst[1])
            for name in self.apps:
                while True:
                    e = self.apps[name].next_event()
                    if e is None:
                        break
                    self.events[name].append(type(e).__name__)

    def run(self, ms):
        end = self.now + ms
        while self.now < end:
            self.now += 10
            for app in self.apps.values():
                t = app.get_timer()
                if t is not None and t <= self.now:
                    app.handle_timer(self.now)
            self.pump()


def _registered(*world_args, **world_kw):
    """(world, alice, bob) with every phone of the world registered."""
    w = World(*world_args, **world_kw)
    for app in w.apps.values():
        app.register(0)
    w.pump()
    return w, w.apps["alice"], w.apps["bob"]


def _connected(verified=True):
    w, a, b = _registered(verified)
    assert a.status()["registered"] and b.status()["registered"]
    cid = a.call("sip:bob@" + REALM, w.now)
    w.pump()
    st = b.status()["call"]
    assert st["state"] == "incoming" and st["peer"] == "sip:alice@" + REALM
    assert st["security"] == "unlocked" and st["why"] == "media keys not negotiated yet"
    assert a.status()["call"]["state"] == "early"
    assert b.answer(w.now) == cid
    w.pump()
    return w, a, b, cid


def test_call_locked_with_audio_both_ways_then_hangup():
    w, a, b, cid = _connected()
    sa, sb = a.status()["call"], b.status()["call"]
    assert sa["state"] == sb["state"] == "connected" and sa["call_id"] == cid
    assert sa["suite"] == sb["suite"] == "AEAD_AES_128_GCM" and sa["codec"] == "PCMU"
    assert sa["security"] == sb["security"] == "locked" and sa["why"] == ""
    assert sa["direction"] == "out" and sb["direction"] == "in" and sa["peer"] == "sip:bob@" + REALM
    a.send_pcm(sine_pcm(1000, 300))
    b.send_pcm(sine_pcm(500, 300))
    w.run(400)
    fa, _ = dominant_frequency(b.read_pcm()[:4000], step=50, max_samples=800)
    fb, _ = dominant_frequency(a.read_pcm()[:4000], step=50, max_samples=800)
    assert fa == 1000 and fb == 500
    assert a.status()["call"]["media"]["received"] >= 15
    a.hangup(w.now)
    w.pump()
    assert a.status()["call"] is None and b.status()["call"] is None
    assert b.last_call["by"] == "remote" and a.last_call["reason"] == "local hangup"
    assert a.last_call["media"]["rtcp_sent"] >= 1
    assert "CallEnded" in w.events["bob"]
    assert "no call to hang up" in str(raises(ValueError, a.hangup, w.now))


def test_unverified_tls_or_plain_signalling_is_unlocked():
    w, a, b, cid = _connected(verified=False)
    st = a.status()["call"]
    assert st["security"] == "unlocked" and st["why"] == "TLS server certificate was not verified"
    # SDES over TCP only happens in the insecure test mode, and is never locked
    w2, a2, b2 = _registered(True, "TCP", insecure=True)
    a2.call("sip:bob@" + REALM, 0)
    w2.pump()
    b2.answer(0)
    w2.pump()
    st = a2.status()["call"]
    assert st["state"] == "connected" and st["security"] == "unlocked"
    assert st["suite"] == "AEAD_AES_128_GCM"
    assert st["why"] == "signalling is TCP, not TLS: SDES keys were sent in the clear"


def test_second_incoming_call_gets_busy_and_api_errors():
    w, a, b, cid = _connected()
    c = w.apps["carol"]
    c.call("sip:bob@" + REALM, w.now)
    w.pump()
    assert c.last_call["status"] == 486 and c.status()["call"] is None
    assert b.status()["call"]["call_id"] == cid      # bob's call is untouched
    assert any("busy, declined call from sip:carol@" in ln for ln in b.log_lines)
    assert "already in a call" in str(raises(ValueError, a.call, "sip:carol@" + REALM, w.now))
    assert "no incoming call" in str(raises(ValueError, b.answer, w.now))


def test_bad_media_into_live_call_keeps_call_and_registration():
    w, a, b, cid = _connected()
    w.run(200)
    before = a.status()
    a.receive_media(b"\x80\x00\x00", ("10.6.6.6", 9), w.now, False)
    a.receive_media(b"\x80\x00" + b"\x01" * 40, ("10.6.6.6", 9), w.now, False)
    a.receive_media(b"\x80\xc8\x00\x06" + b"\x02" * 40, ("10.6.6.6", 9), w.now, True)
    w.run(200)
    after = a.status()
    assert after["registered"] and after["call"]["state"] == "connected"
    assert after["call"]["security"] == "locked"
    d = after["call"]["media"]["dropped"]
    assert d["parse"] == 1 and d["auth"] == 1 and after["call"]["media"]["rtcp_dropped"]["auth"] == 1
    assert after["call"]["media"]["received"] > before["call"]["media"]["received"] + 5
    dropped = [ln for ln in a.log_lines if "dropped" in ln]
    assert len(dropped) == 3 and "from 10.6.6.6:9" in dropped[0]


def test_auto_answer_and_media_outside_call_is_ignored():
    w, a, b = _registered()
    b.auto_answer = True
    b.receive_media(b"junk", ("10.6.6.6", 9), 0)
    assert "outside a call" in b.log_lines[-1]
    a.call("sip:bob@" + REALM, 0)
    w.pump()
    assert a.status()["call"]["state"] == "connected"
    assert w.events["alice"][-1] == "CallAnswered"


def test_answer_without_common_suite_sends_488_at_once():
    # found with baresip: the UA queued the 488 but did not send it until the next message came
    w, a, b = _registered()
    a.suites = ("AES_CM_128_HMAC_SHA1_32",)
    b.suites = ("AEAD_AES_128_GCM",)
    a.call("sip:bob@" + REALM, 0)
    w.pump()
    b.answer(0)
    w.pump()
    assert b.last_call["status"] == 488 and b.status()["call"] is None
    assert a.last_call["status"] == 488 and a.last_call["by"] == "remote"
    assert a.status()["registered"] and b.status()["registered"]


def test_registration_failure_shown_in_status():
    w = World()
    a = w.apps["alice"]
    a.ua.config.password = "wrong"
    a.register(0)
    w.pump()
    st = a.status()
    assert not st["registered"] and st["registration_error"].startswith("40")
    assert any("registration failed" in ln for ln in a.log_lines)
    a.ua.config.password = "alicepw"
    a.register(0)
    w.pump()
    assert a.status()["registered"] and a.status()["registration_error"] is None


def test_an_event_the_app_cannot_act_on_is_one_log_line_and_drops_only_that_call():
    # a peer's answer that breaks the app's media set-up (here: a simulated bug) must not stop the
    # phone: one log line, the call is hung up, registration stays
    w, a, b = _registered()
    real = a._on_event

    def broken(e, now):
        if isinstance(e, sipua.CallAnswered):
            raise TypeError("simulated bug")
        real(e, now)

    a._on_event = broken
    cid = a.call("sip:bob@" + REALM, w.now)
    w.pump()
    b.answer(w.now)
    w.pump()
    w.run(200)
    assert [ln for ln in a.log_lines if ln.startswith("phone: ")] == [
        "phone: CallAnswered failed: TypeError: simulated bug"]
    assert a.call_id is None and a.status()["call"] is None and a.status()["registered"]
    assert b.status()["call"] is None and b.last_call["reason"] == "remote hangup", b.last_call
    assert b.last_call["call_id"] == cid
