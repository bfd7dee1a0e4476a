# The console's call commands (firmware.console.calls + core): `call`, `answer`, `hangup` and the
# call in `status`, driven through Console.handle() over real PhoneApp cores that register and call
# each other through the registrar/proxy core of test_sip_ua (in-memory network, time explicit).
# Also: a phone whose credentials stayed sealed refuses to call, and device-config parsing.
# Runs under pytest and MicroPython.
import json

from firmware.console.calls import REFUSED_SEALED, CallControl, parse_options, parse_uri
from firmware.console.core import Console
from firmware.console.netconfig import phone_settings
from tests.unit.firmware.check import raises
from tests.unit.firmware.test_console import Device
from tests.unit.firmware.test_phone_app import World
from tests.unit.firmware.test_sip_ua import REALM


class PhoneConsoleDevice(Device):
    """test_console's in-memory device plus the real call control, as phone.PhoneDevice has."""

    def __init__(self, world=None):
        Device.__init__(self)
        self.world = world
        self.calls = CallControl()

    def _now(self):
        return self.world.now if self.world is not None else 0

    def status(self):
        out = Device.status(self)
        out.update(self.calls.status())
        return out

    def call(self, uri, tone):
        return self.calls.call(uri, tone, self._now())

    def answer(self, tone):
        return self.calls.answer(tone, self._now())

    def hangup(self):
        return self.calls.hangup(self._now())


def _status(con):
    text, _ = con.handle(b"status")
    return json.loads(text)


def _run(w, devices, ms):
    end = w.now + ms
    while w.now < end:
        w.run(10)
        for d in devices:
            d.calls.tick(w.now)


def test_sealed_phone_cannot_register_or_call():
    d = PhoneConsoleDevice()
    d.calls.refuse(REFUSED_SEALED, "credentials are sealed: PCR 14 differs")
    con = Console(d)
    st = _status(con)
    assert st["registered"] is False and st["call"] is None
    assert st["registered_reason"] == "credentials are sealed: PCR 14 differs"
    assert st["registration_error"] == REFUSED_SEALED
    for line in (b"call sip:bob@example.test", b"answer", b"hangup"):
        text, _ = con.handle(line)
        assert text == "error: integrity-failed: credentials are sealed\n", text
    text, _ = con.handle(b"call bob")
    assert text == "error: call: call needs a sip: or sips: URI, got 'bob'\n"
    assert _status(con)["registered"] is False   # and the console still answers


def test_phone_not_started_says_why():
    d = PhoneConsoleDevice()
    d.calls.detach("registrar 10.0.2.2:5061 not reachable: timed out")
    con = Console(d)
    text, _ = con.handle(b"call sip:bob@example.test")
    assert text == "error: phone not ready: registrar 10.0.2.2:5061 not reachable: timed out\n"
    assert _status(con)["registered_reason"].startswith("registrar 10.0.2.2:5061")


def test_bad_arguments_are_answered_and_console_keeps_running():
    w = World()
    for app in w.apps.values():
        app.register(0)
    w.pump()
    d = PhoneConsoleDevice(w)
    d.calls.attach(w.apps["alice"])
    con = Console(d)
    cases = [
        (b"call", "error: call needs a URI: call sip:user@host [tone=HZ]\n"),
        (b"call bob", "error: call: call needs a sip: or sips: URI, got 'bob'\n"),
        (b"call sip:bob", "error: call: URI 'sip:bob' needs user@host\n"),
        (b"call sip:bob@x tone=abc", "error: call: tone=abc: not a whole number of Hz\n"),
        (b"call sip:bob@x tone=5000", "error: call: tone=5000: outside 50..3900 Hz\n"),
        (b"call sip:bob@x loud", "error: call: unknown option 'loud' (tone=HZ)\n"),
        (b"call sip:bob@x tone=1 tone=2", "error: call takes at most 2 arguments\n"),
        (b"answer", "error: answer: no incoming call to answer\n"),
        (b"answer now", "error: answer: unknown option 'now' (tone=HZ)\n"),
        (b"hangup", "error: hangup: no call to hang up\n"),
        (b"hangup now", "error: hangup takes no arguments\n"),
    ]
    for line, want in cases:
        text, _ = con.handle(line)
        assert text == want, (line, text)
    st = _status(con)
    assert st["registered"] is True and st["call"] is None
    text, _ = con.handle(b"help")
    for cmd in ("call URI", "answer", "hangup"):
        assert "\n  " + cmd in text


def test_call_answer_tone_both_ways_and_hangup_from_the_console():
    w = World()
    for app in w.apps.values():
        app.register(0)
    w.pump()
    da, db = PhoneConsoleDevice(w), PhoneConsoleDevice(w)
    da.calls.attach(w.apps["alice"])
    db.calls.attach(w.apps["bob"])
    ca, cb = Console(da), Console(db)
    text, _ = ca.handle(b"call sip:bob@" + REALM.encode() + b" tone=1000")
    assert text.startswith("calling sip:bob@%s (call " % REALM)
    cid = text.split("(call ")[1].rstrip(")\n")
    w.pump()
    sb = _status(cb)["call"]
    assert sb["state"] == "incoming" and sb["peer"] == "sip:alice@" + REALM
    assert sb["security"] == "unlocked" and sb["why"] == "media keys not negotiated yet"
    text, _ = ca.handle(b"call sip:carol@" + REALM.encode())
    assert text.startswith("error: call: already in a call")
    text, _ = cb.handle(b"answer tone=600")
    assert text == "answered call %s\n" % cid
    _run(w, (da, db), 600)
    sa, sb = _status(ca)["call"], _status(cb)["call"]
    assert sa["state"] == sb["state"] == "connected"
    assert sa["suite"] == "AEAD_AES_128_GCM" and sa["security"] == "locked" and sa["why"] == ""
    assert sa["audio"]["tone_hz_sent"] == 1000 and sb["audio"]["tone_hz_sent"] == 600
    assert sa["audio"]["dominant_hz"] == 600 and sb["audio"]["dominant_hz"] == 1000
    assert sa["audio"]["tone_share"] > 0.5 and sa["audio"]["rms"] > 1000
    assert sa["media"]["received"] >= 20 and sb["media"]["received"] >= 20
    text, _ = cb.handle(b"hangup")
    assert text == "hanging up call %s\n" % cid
    w.pump()
    sa, sb = _status(ca), _status(cb)
    assert sa["call"] is None and sb["call"] is None
    assert sa["last_call"]["by"] == "remote" and sb["last_call"]["reason"] == "local hangup"
    assert sa["registered"] is True   # the registration outlives the call


def test_call_refused_while_not_registered():
    w = World()
    d = PhoneConsoleDevice(w)
    d.calls.attach(w.apps["alice"])
    text, _ = Console(d).handle(b"call sip:bob@" + REALM.encode())
    assert text == "error: not registered: registration pending\n"


def test_uri_and_option_parsing():
    assert parse_uri("sip:bob@10.0.2.2") == "sip:bob@10.0.2.2"
    assert parse_uri("sips:bob@host;transport=tls") == "sips:bob@host;transport=tls"
    assert "contains" in str(raises(ValueError, parse_uri, "sip:bob@h<x>"))
    assert parse_options([]) == {"tone": None}
    assert parse_options(["tone=50"]) == {"tone": 50}


BOARD_CONFIG = {
    "account": "phone1",
    "sip": {"registrar": "10.0.2.2", "domain": "127.0.0.1", "transport": "tls", "port": 5061,
            "tls_server_name": "10.0.2.2",
            "srtp_profiles": ["AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80"]},
    "media": {"bind": "0.0.0.0", "port": 40000, "advertise": "127.0.0.1"},
    "network": {"address_map": {"127.0.0.1": "10.0.2.2"}},
}


def test_device_config_settings():
    s = phone_settings(BOARD_CONFIG)
    assert s["registrar"] == "10.0.2.2" and s["port"] == 5061 and s["domain"] == "127.0.0.1"
    assert s["suites"] == ("AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80")
    assert s["media_bind"] == "0.0.0.0" and s["media_port"] == 40000
    assert s["media_address"] == "127.0.0.1" and s["address_map"] == {"127.0.0.1": "10.0.2.2"}
    assert s["tls_server_name"] == "10.0.2.2" and s["keepalive_ms"] is None


def test_device_config_errors_name_the_field():
    def bad(patch, section="sip"):
        cfg = json.loads(json.dumps(BOARD_CONFIG))
        cfg[section].update(patch)
        return str(raises(ValueError, phone_settings, cfg))
    assert bad({"transport": "udp"}) == \
        "device-config: sip.transport 'udp': the phone signals over TLS only"
    assert bad({"port": "5061"}) == "device-config: sip.port must be an integer, got '5061'"
    assert bad({"port": 0}) == "device-config: sip.port 0 is not a port number"
    assert bad({"srtp_profiles": ["NULL"]}) == \
        "device-config: sip.srtp_profiles: unknown suite 'NULL'"
    assert bad({"port": 40001}, "media") == \
        "device-config: media.port 40001 must be even (RTCP is port + 1)"
    assert bad({"advertise": "0.0.0.0"}, "media") == \
        "device-config: media.advertise is needed when media.bind is 0.0.0.0"
    assert str(raises(ValueError, phone_settings, {"media": {}})) == \
        "device-config: device-config.sip is missing"
    assert str(raises(ValueError, phone_settings, [])) == "device-config: not a JSON object"


def test_phone_device_of_a_refused_bundle_never_starts_the_phone():
    # The real console device (firmware.console.phone) on a tree with no stage-loader state and
    # no TPM: the credentials are never asked for, so the phone may not run and binds nothing.
    from firmware.console.phone import PhoneDevice
    d = PhoneDevice(run_dir="/nonexistent/run/phone", tpm_device="/nonexistent/tpmrm0")
    d.release_credentials()
    assert d.prepare_phone(0) is False
    st = d.status()
    assert st["unsealed"] is False and st["registered"] is False and st["call"] is None
    assert st["registered_reason"] == ("credentials are sealed: the stage loader refused the "
                                       "bundle: credentials stay sealed")
    assert "media_port" not in st and d.sockets() == [] and d.next_deadline() is None
    text, _ = Console(d).handle(b"call sip:bob@127.0.0.1 tone=1000")
    assert text == "error: integrity-failed: credentials are sealed\n"
