# Release of sealed credentials at boot (docs/sealing.md "Release"): recreate the SRK, load each
# sealed object, satisfy its policy in ONE salted policy session with parameter encryption
# (response: the secret; the PIN only keys the HMAC), unseal. Every refusal is the TPM's: the
# code never compares PCRs before asking; it reads them only afterwards, to explain a refusal.
#
# Secrets come back as bytearrays in a Released object; call wipe() when done. CPython cannot
# scrub the immutable intermediates the TPM client builds (decrypted response bytes): they are
# dropped at once and die with the garbage collector. Nothing here prints or logs a secret.

from firmware.errors import ParseError
from firmware.secrets import diagnose, flows, store
from firmware.tpm import constants as C
from firmware.tpm import errors as E
from firmware.tpm.client import AES128_CFB
from firmware.tpm.errors import TpmError
from firmware.tpm.public import srk_template_ecc

STATE_UNSEALED = "unsealed"
STATE_INTEGRITY_FAILED = "integrity-failed"
STATE_PIN_REFUSED = "pin-refused"
STATE_LOCKED_OUT = "locked-out"
STATE_NO_CREDENTIALS = "no-credentials"

# Policy refusals: the measured state (or the anti-rollback field) is not what the policy demands.
POLICY_REFUSALS = (E.TPM_RC_POLICY_FAIL, E.TPM_RC_POLICY, E.TPM_RC_VALUE, E.TPM_RC_PCR_CHANGED)


class Released:
    """Unsealed secrets by object name, as bytearrays. repr() shows names only."""

    unsealed = True
    state = STATE_UNSEALED

    def __init__(self, secrets, version=None):
        self._secrets = secrets
        self.version = version  # anti-rollback version of the signed policy used (authorized mode)

    def names(self):
        return sorted(self._secrets)

    def get(self, name):
        return self._secrets[name]

    def wipe(self):
        """Overwrite every secret with zeros and forget it."""
        for v in self._secrets.values():
            for i in range(len(v)):
                v[i] = 0
        self._secrets = {}

    def status(self):
        return {"unsealed": True, "state": self.state, "secrets": self.names()}

    def __repr__(self):
        return "Released(%s)" % ", ".join(self.names())


class Failure:
    unsealed = False
    state = "failed"

    def __init__(self, reason, pcrs_differ=(), components_differ=(), tpm_error=None):
        self.reason = reason
        self.pcrs_differ = list(pcrs_differ)
        self.components_differ = list(components_differ)
        self.tpm_error = tpm_error

    def status(self):
        out = {"unsealed": False, "state": self.state, "reason": self.reason}
        if self.pcrs_differ:
            out["pcrs_differ"] = self.pcrs_differ
        if self.components_differ:
            out["components_differ"] = self.components_differ
        if self.tpm_error is not None:
            out["tpm_rc"] = "0x%03x" % self.tpm_error.rc
        return out

    def __repr__(self):
        return "%s(%r)" % (self.__class__.__name__, self.reason)


class IntegrityFailure(Failure):
    """The TPM refused the policy (or could not use the blob): the device is not in the state the
    secrets were sealed to. The phone stays in `integrity-failed` and never registers."""
    state = STATE_INTEGRITY_FAILED


class PinFailure(Failure):
    state = STATE_PIN_REFUSED


class LockoutFailure(Failure):
    state = STATE_LOCKED_OUT


class StoreFailure(Failure):
    state = STATE_NO_CREDENTIALS


def _expected(values):
    return dict((int(k), bytes.fromhex(v)) for k, v in values.items())


def _candidates(meta):
    """Signed policies, newest anti-rollback version first (the TPM picks: an older one only
    works until the field revokes it)."""
    sig = meta["authorized"]["signed"]
    return sorted(sig, key=lambda s: -s["anti_rollback"])


def _explain(tpm, meta, err, measured, entry=None):
    bank, pcrs = meta["pcr_bank"], meta["pcrs"]
    src = entry if entry is not None else meta
    try:
        actual = tpm.pcr_read_all(bank, pcrs)
    except (TpmError, ParseError, OSError) as e:
        actual = None
        err_read = " (PCRs unreadable: %s)" % e
    else:
        err_read = ""
    pd = diagnose.pcr_differences(_expected(src["expected"]), actual)
    cd = diagnose.component_differences(src["components"], measured)
    what = "%s at %s" % (err.name, err.command) if isinstance(err, TpmError) else str(err)
    text = diagnose.reason_text(what, pd, cd) + err_read
    if entry is not None and isinstance(err, TpmError) and err.command == "TPM2_PolicyNV":
        text += "; anti-rollback: the signed policy for version %d is revoked on this TPM" % entry["anti_rollback"]
    return IntegrityFailure(text, pd, cd,
                            err if isinstance(err, TpmError) else None)


def _refusal(tpm, meta, e, measured, entry=None):
    if e.base == E.TPM_RC_LOCKOUT:
        return LockoutFailure("the TPM is in dictionary-attack lockout (%s); try again after the "
                              "recovery time" % e.name, tpm_error=e)
    if e.base in (E.TPM_RC_AUTH_FAIL, E.TPM_RC_BAD_AUTH):
        return PinFailure("wrong PIN (%s); each wrong PIN counts toward the TPM's lockout" % e.name,
                          tpm_error=e)
    return _explain(tpm, meta, e, measured, entry)


def release(tpm, meta, pin=None, measured=None, names=None):
    """Unseal the objects of the store metadata `meta` (from store.unpack/read_file).

    `names`: objects to unseal (default: those without a PIN, plus the PIN ones when `pin` is
    given). `measured`: the components measured at this boot ([{name, version, sha256 hex}]) for
    the diagnosis. Returns Released or a Failure (IntegrityFailure, PinFailure, LockoutFailure,
    StoreFailure); raises only on transport errors."""
    try:
        store.validate(meta)
    except ParseError as e:
        return StoreFailure("sealed store unusable: %s" % e)
    objects = [o for o in meta["objects"]
               if (names is None and (not o["pin"] or pin is not None)) or (names is not None and o["name"] in names)]
    if names is not None and len(objects) != len(names):
        return StoreFailure("no sealed object named %s" % ", ".join(n for n in names if n not in
                                                                    [o["name"] for o in objects]))
    if not objects:
        return StoreFailure("no sealed object to release")
    if pin is None and any(o["pin"] for o in objects):
        return PinFailure("a PIN is needed for %s" % ", ".join(o["name"] for o in objects if o["pin"]))
    out = {}
    try:
        primary, persistent = _srk(tpm, meta)
    except TpmError as e:
        if e.warning:
            return Failure("the TPM cannot give the storage root key now (%s)" % e.name, tpm_error=e)
        return IntegrityFailure("no storage root key at 0x%08x (%s): sealed on another TPM, or "
                                "this TPM was not provisioned" % (meta["srk"]["handle"], e.name),
                                tpm_error=e)
    if primary is None:
        return IntegrityFailure("sealed on another TPM: the storage root key at 0x%08x is not the "
                                "one the store was sealed under (its Name differs)" % meta["srk"]["handle"])
    srk = primary["handle"]
    session = None
    try:
        # the SRK's public area as CreatePrimary returned it (checked against its Name) spares a
        # ReadPublic round trip
        session = tpm.start_auth_session(C.TPM_SE_POLICY, salt_key=srk, symmetric=AES128_CFB,
                                         attributes=C.TPMA_SESSION_ENCRYPT, salt_public=primary["parsed"])
        tickets = []
        if meta["policy"] == store.POLICY_AUTHORIZED:
            a = meta["authorized"]
            key = bytes.fromhex(a["key"])
            ref = bytes.fromhex(a["policy_ref"])
            for entry in _candidates(meta):
                try:
                    t = flows.verify_signed(tpm, key, bytes.fromhex(entry["approved"]), ref,
                                            bytes.fromhex(entry["r"]), bytes.fromhex(entry["s"]))
                except TpmError:
                    continue  # not signed by the key the objects are sealed to: the TPM says no
                tickets.append((entry, t))
            if not tickets:
                return IntegrityFailure("no signed policy in the store verifies with the vendor key")
        version = None
        for i, o in enumerate(objects):
            try:
                h = tpm.load(srk, bytes.fromhex(o["private"]), bytes.fromhex(o["public"]))
            except TpmError as e:
                _wipe(out)
                if e.warning:  # out of memory, retry, ...: a TPM condition, not the blob's fault
                    return Failure("the TPM cannot load sealed object %s now (%s)" % (o["name"], e.name),
                                   tpm_error=e)
                return IntegrityFailure("the TPM cannot load sealed object %s (%s): sealed on another "
                                        "TPM or damaged" % (o["name"], e.name), tpm_error=e)
            try:
                if tickets:
                    entry, err = _authorize(tpm, session, meta, tickets)
                    if entry is None:
                        _wipe(out)
                        newest = tickets[0][0]
                        return _refusal(tpm, meta, err, measured, newest)
                    version = entry["anti_rollback"]
                else:
                    flows.run_pcr(tpm, session, meta["pcrs"], meta["pcr_bank"])
                if o["pin"]:
                    tpm.policy_auth_value(session)
                secret = tpm.unseal(h, session, pin if o["pin"] else b"")
                out[o["name"]] = bytearray(secret)
                secret = None
            except TpmError as e:
                _wipe(out)
                return _refusal(tpm, meta, e, measured, tickets[0][0] if tickets else None)
            finally:
                tpm.flush_context(h)
                if i + 1 < len(objects):  # the last object's session is flushed below instead
                    tpm.policy_restart(session)
        return Released(out, version)
    finally:
        if session is not None:
            tpm.flush_context(session.handle)
        if not persistent:
            tpm.flush_context(srk)


def _srk(tpm, meta):
    """The storage root key: the persistent one the store names (provisioned with random owner
    authorization, host_tools/provision/core.py SRK_HANDLE; checked against the Name recorded at
    provisioning, so another key planted at that handle is not used), or for stores from before,
    a primary re-created under the owner. -> (dict handle, parsed, or None on a Name mismatch;
    persistent?)"""
    ref = meta.get("srk")
    if ref is None:
        return tpm.create_primary(C.TPM_RH_OWNER, srk_template_ecc()), False
    info = tpm.read_public(ref["handle"])
    if info["name"] != bytes.fromhex(ref["name"]):
        return None, True
    return {"handle": ref["handle"], "parsed": info["parsed"]}, True


def _authorize(tpm, session, meta, tickets):
    """Run the approved policy of each verified signed entry until the TPM accepts one;
    -> (entry, None) or (None, the TpmError of the newest entry: the one meant for this image)."""
    first = None
    for entry, ticket in tickets:
        a = meta["authorized"]
        try:
            flows.run_authorized(tpm, session, meta["pcrs"], meta["pcr_bank"], a["nv_index"],
                                 entry["anti_rollback"], bytes.fromhex(entry["approved"]),
                                 bytes.fromhex(a["policy_ref"]), bytes.fromhex(a["key"]), ticket)
            return entry, None
        except TpmError as e:
            if first is None:
                first = e
            tpm.policy_restart(session)
    return None, first


def _wipe(secrets):
    for v in secrets.values():
        for i in range(len(v)):
            v[i] = 0
    secrets.clear()
