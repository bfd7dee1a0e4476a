# The console's call commands (`call`, `answer`, `hangup`) and the call/registration part of
# `status`, over a firmware.phone.app.PhoneApp. Sans-I/O: time comes in as `now` (ms) and the
# PhoneApp is handed in once the I/O shim has started it, so this runs under MicroPython too.
#
# Fail closed: until a PhoneApp is attached the commands are refused with the reason. A phone
# whose credentials the TPM did not release never gets one (refuse()), so it cannot register or
# call: `call` answers "integrity-failed: credentials are sealed".
#
# Audio checks from the console: `call URI tone=HZ` / `answer tone=HZ` send a sine instead of
# silence, and status shows the received audio's RMS and dominant frequency (Goertzel, tone.py)
# so a test on the host can tell that decoded audio arrived.

from firmware.phone.tone import dominant_frequency, rms, sine_pcm

REFUSED_SEALED = "integrity-failed: credentials are sealed"
TONE_MIN_HZ = 50
TONE_MAX_HZ = 3900          # below the 4 kHz Nyquist limit of 8 kHz G.711
TONE_CHUNK_MS = 100
TONE_QUEUE_BYTES = 3200     # keep ~200 ms queued: the 20 ms sender never runs dry
METER_BYTES = 1600          # the last 100 ms of received audio is measured (800 samples: cheap
                            # enough for a Goertzel sweep under TCG, 10 Hz bins)
TONE_AMPLITUDE = 8000


class Refused(Exception):
    """A command the phone refuses as a matter of state (sealed credentials, no phone); the
    console prints the message as is after "error: "."""


def parse_uri(text):
    """The callee from the console: a sip:/sips: URI with a user part and host. ValueError names
    what is wrong."""
    low = text.lower()
    if not (low.startswith("sip:") or low.startswith("sips:")):
        raise ValueError("call needs a sip: or sips: URI, got %r" % _short(text))
    rest = text[text.index(":") + 1:]
    if "@" not in rest or rest.startswith("@") or rest.endswith("@"):
        raise ValueError("URI %r needs user@host" % _short(text))
    for ch in "<>\"' ":
        if ch in rest:
            raise ValueError("URI %r contains %r" % (_short(text), ch))
    return text


def parse_options(args):
    """{"tone": hz or None} from words like tone=1000. ValueError for anything else."""
    out = {"tone": None}
    for a in args:
        if not a.startswith("tone="):
            raise ValueError("unknown option %r (tone=HZ)" % _short(a))
        try:
            hz = int(a[5:])
        except ValueError:
            raise ValueError("tone=%s: not a whole number of Hz" % _short(a[5:]))
        if not TONE_MIN_HZ <= hz <= TONE_MAX_HZ:
            raise ValueError("tone=%d: outside %d..%d Hz" % (hz, TONE_MIN_HZ, TONE_MAX_HZ))
        out["tone"] = hz
    return out


class AudioMeter:
    """The last METER_BYTES of received PCM; measured only when status asks."""

    def __init__(self):
        self.pcm = b""
        self.total_bytes = 0

    def feed(self, pcm):
        if pcm:
            self.total_bytes += len(pcm)
            self.pcm = (self.pcm + pcm)[-METER_BYTES:]

    def reset(self):
        self.pcm = b""
        self.total_bytes = 0

    def measure(self):
        out = {"samples": self.total_bytes // 2, "rms": rms(self.pcm), "dominant_hz": None,
               "tone_share": 0.0}
        if len(self.pcm) >= METER_BYTES // 2:
            hz, share = dominant_frequency(self.pcm, step=50, max_samples=METER_BYTES // 2)
            if out["rms"] > 0:
                out["dominant_hz"] = hz
                out["tone_share"] = int(share * 1000) / 1000.0
        return out


class CallControl:
    """What the console needs from the phone. `app` is None until attach(); `reason` says why."""

    def __init__(self):
        self.app = None
        self.reason = "the SIP phone is not started yet"
        self.refusal = None
        self.tone_hz = None
        self._tone_pos = 0          # samples of tone generated (phase continuity)
        self._tone_call = None
        self.meter = AudioMeter()
        self._meter_call = None

    # --- life cycle (the I/O shim) ----------------------------------------------------------------

    def attach(self, app):
        self.app = app
        self.reason = None

    def detach(self, reason):
        self.app = None
        self.reason = reason

    def refuse(self, refusal, reason):
        """The phone must not run (credentials sealed): every call command answers `refusal`."""
        self.app = None
        self.refusal = refusal
        self.reason = reason

    def tick(self, now):
        """Run from the I/O loop: keep the tone queued, collect received audio for the meter."""
        app = self.app
        if app is None:
            return
        media = app.media
        if media is None:
            return
        if self._meter_call != app.call_id:
            self._meter_call = app.call_id
            self.meter.reset()
        self.meter.feed(app.read_pcm())
        if self.tone_hz is not None and self._tone_call == app.call_id:
            while media.queued_pcm() < TONE_QUEUE_BYTES:
                chunk = sine_pcm(self.tone_hz, TONE_CHUNK_MS, amplitude=TONE_AMPLITUDE,
                                 phase=self._tone_pos)
                self._tone_pos += len(chunk) // 2
                app.send_pcm(chunk)

    # --- console commands ---------------------------------------------------------------------------

    def _app(self):
        if self.app is not None:
            return self.app
        if self.refusal is not None:
            raise Refused(self.refusal)
        raise Refused("phone not ready: %s" % self.reason)

    def call(self, uri, tone=None, now=None):
        uri = parse_uri(uri)     # a mistyped URI is answered as such, whatever the phone's state
        app = self._app()
        if not app.ua.registered:
            raise Refused("not registered: %s" % (app.registration_error or "registration pending"))
        cid = app.call(uri, now)
        self._set_tone(cid, tone)
        return cid

    def answer(self, tone=None, now=None):
        app = self._app()
        cid = app.answer(now)
        self._set_tone(cid, tone)
        return cid

    def hangup(self, now=None):
        app = self._app()
        cid = app.call_id
        app.hangup(now)
        return cid

    def _set_tone(self, cid, tone):
        self.tone_hz = tone
        self._tone_call = cid
        self._tone_pos = 0

    # --- status ------------------------------------------------------------------------------------

    def status(self):
        """The registration and call fields of the console's status JSON."""
        app = self.app
        if app is None:
            out = {"registered": False, "registered_reason": self.reason,
                   "registration_error": None, "call": None, "last_call": None}
            if self.refusal is not None:
                out["registration_error"] = self.refusal
            return out
        out = app.status()
        if not out["registered"]:
            out["registered_reason"] = out.get("registration_error") or "registration pending"
        call = out.get("call")
        if call is not None and call.get("media") is not None:
            audio = self.meter.measure()
            audio["tone_hz_sent"] = self.tone_hz if self._tone_call == call["call_id"] else None
            call["audio"] = audio
        return out


def _short(text):
    return text if len(text) <= 40 else text[:40] + "..."
