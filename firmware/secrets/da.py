# The TPM's dictionary-attack (DA) state, for the console (`status` "da", the `pin` answer): how
# many authorization failures the TPM has counted, how many it allows before lockout, and whether
# it is locked out now. Read with TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES) (Part 3 §30.2) from
# TPM_PT_PERMANENT on (Part 2 §6.13, the PT_VAR group):
#
#   TPM_PT_PERMANENT         TPMA_PERMANENT (Part 2 §8.6); bit 9 inLockout
#   TPM_PT_LOCKOUT_COUNTER   failedTries: the current count of authorization failures
#   TPM_PT_MAX_AUTH_FAIL     maxTries: failures before lockout (TPM2_DictionaryAttackParameters)
#   TPM_PT_LOCKOUT_INTERVAL  recoveryTime: seconds (of TPM power-on time) per failure forgiven
#   TPM_PT_LOCKOUT_RECOVERY  lockoutRecovery: seconds after a failed lockoutAuth
#
# Metadata only: nothing here is secret.

from firmware.errors import ParseError
from firmware.tpm import constants as C

_FIELDS = (
    (C.TPM_PT_LOCKOUT_COUNTER, "counter"),
    (C.TPM_PT_MAX_AUTH_FAIL, "max_tries"),
    (C.TPM_PT_LOCKOUT_INTERVAL, "recovery_s"),
    (C.TPM_PT_LOCKOUT_RECOVERY, "lockout_recovery_s"),
)
_LAST = C.TPM_PT_LOCKOUT_RECOVERY


def read_properties(tpm):
    """{TPM_PT: value} for TPM_PT_PERMANENT .. TPM_PT_LOCKOUT_RECOVERY. The TPM may return fewer
    properties than asked (moreData): ask again from the next one. Raises ParseError when the
    TPM leaves one out (then the state is unknown: callers must not guess a count)."""
    out = {}
    first = C.TPM_PT_PERMANENT
    while first <= _LAST:
        more, items = tpm.get_capability(C.TPM_CAP_TPM_PROPERTIES, first, _LAST - first + 1)
        for prop, value in items:
            if first <= prop <= _LAST:
                out[prop] = value
        if not more or not items or items[-1][0] >= _LAST:
            break
        first = items[-1][0] + 1
    for prop in (C.TPM_PT_PERMANENT,) + tuple(p for p, _ in _FIELDS):
        if prop not in out:
            raise ParseError("the TPM did not report property 0x%x" % prop, field="TPM_PT")
    return out


def state(tpm):
    """{"counter", "max_tries", "recovery_s", "lockout_recovery_s", "in_lockout"} of the TPM."""
    props = read_properties(tpm)
    out = {}
    for prop, key in _FIELDS:
        out[key] = props[prop]
    out["in_lockout"] = bool(props[C.TPM_PT_PERMANENT] & C.TPMA_PERMANENT_INLOCKOUT)
    return out
