# The remote party's integrity at call set-up (docs/attestation.md "Evidence in SIP"), sans-I/O:
# RemoteJudge turns the evidence a peer sent in its INVITE or 2xx (firmware.sip.multipart) and the
# nonce this call binds it to (firmware.sip.callbind) into the `remote` object status shows, and
# says whether the call may go on under the phone's minimum level (device-config
# min_remote_integrity; levels in firmware.attest.levels).
#
# Fail closed: evidence that does not decode, does not carry this call's nonce, or was accepted
# before (the same INVITE replayed: the callee has no round trip to add a challenge of its own)
# is `failed`, which is below every minimum (failed < unattested). No evidence at all is
# `unattested` (an ordinary SIP phone), accepted by the default minimum.

SEEN_KEEP = 256   # nonces of accepted evidence remembered (replay of an earlier call's message)


def judgement(level, why, image_version=None, differs=()):
    return {"level": level, "image_version": image_version, "differs": list(differs), "why": why}


class RemoteJudge:
    """trust: firmware.attest.trust's loaded trust anchors (device CA + vendor-signed references);
    min_level: the device-config floor; appraise: firmware.attest.appraise.appraise (injected for
    the host's unit tests of this glue; the phone uses the real one)."""

    def __init__(self, trust, min_level="unattested", appraise=None, clock=None):
        from firmware.attest import levels
        self._levels = levels
        levels.rank(min_level)     # raises ValueError naming the levels
        self.trust = trust
        self.floor = min_level
        self.min_level = min_level
        from firmware.attest.appraise import Memo
        if appraise is None:
            from firmware.attest.appraise import appraise
        self._appraise = appraise
        # what does not change between a peer's calls (its AK chain, its replayed logs) is
        # checked once (firmware/attest/appraise.py Memo)
        self.memo = Memo()
        self._warm()
        # seconds since the epoch for certificate validity (RFC 5280 §4.1.2.5)
        if clock is None:
            from firmware.compat import wall_time as clock
        self._clock = clock
        self._seen = []

    def _warm(self):
        """Load the device CAs and check their self-signatures once now, at phone start: the
        first use of X.509 and ECDSA verification (OpenSSL fetches its implementations then)
        would otherwise land in the first call's set-up (~70 ms under TCG). Nothing is decided
        here: a CA that fails is judged, with its reason, when a peer's chain needs it."""
        from firmware.attest import pki
        if not pki.available():
            return
        for pem in getattr(self.trust, "device_cas", ()):
            try:
                ca = pki.load_cert(pem, "device CA")
                if ca.issuer == ca.subject:
                    pki._verify_cert_signature(ca, ca)
            except Exception:  # noqa: BLE001  see above
                pass

    def require(self, level):
        """Raise the minimum for this boot (console `integrity`); never below the device-config
        floor: the signed configuration is the least a user can ask for."""
        if self._levels.rank(level) < self._levels.rank(self.floor):
            raise ValueError("minimum remote integrity cannot go below %s (device-config)" % self.floor)
        self.min_level = level

    def judge(self, evidence, nonce):
        """The remote object for evidence bytes (or None) bound to `nonce` (bytes, or None when
        the call has nothing to bind to)."""
        if evidence is None:
            return judgement("unattested", "the peer sent no attestation evidence")
        if nonce is None:
            return judgement("failed", "evidence cannot be bound to this call (peer URI is no SIP AOR)")
        if nonce in self._seen:
            return judgement("failed", "evidence replayed: its call binding was accepted before")
        # appraise decodes the bytes itself: malformed evidence is `failed` with the field named
        j = self._appraise(evidence, nonce, self.trust, self._clock(), memo=self.memo)
        out = judgement(j.level, _one_line(j.why), j.image_version, j.differs)
        if j.level != "failed":
            self._seen.append(nonce)
            if len(self._seen) > SEEN_KEEP:
                self._seen.pop(0)
        return out

    def acceptable(self, remote):
        return self._levels.rank(remote["level"]) >= self._levels.rank(self.min_level)

    def refusal(self, remote):
        """One printable line for a Warning (RFC 3261 §20.43) or Reason (RFC 3326) text."""
        text = "remote integrity %s, below %s" % (remote["level"], self.min_level)
        if remote["differs"]:
            text += "; differs: %s" % ", ".join(remote["differs"])
        if remote["why"]:
            text += "; %s" % remote["why"]
        return _one_line(text, 200)


def describe(peer, remote):
    """The console's one line about the remote party."""
    text = "remote %s is %s" % (peer, remote["level"])
    if remote["image_version"]:
        text += " (image %s)" % remote["image_version"]
    if remote["differs"]:
        text += "; differs: %s" % ", ".join(remote["differs"])
    if remote["level"] != "verified" and remote["why"]:
        text += "; %s" % remote["why"]
    return _one_line(text, 240)


def _one_line(text, limit=160):
    out = []
    for ch in text[:limit]:
        out.append(ch if " " <= ch <= "~" and ch != '"' and ch != "\\" else "?")
    return "".join(out)
