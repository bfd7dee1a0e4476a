# What the stage loader does to the TPM besides measuring (issue 9): close PCR 14 whatever
# happens, and take the platform hierarchy away from everything that runs after it.
#
# PCR 14 is the phone's measurement register; the loader closes it with a separator, after which
# nothing extends it (docs/pcr-map.md). If measuring fails half way (a TPM error, out of memory),
# PCR 14 holds a prefix of the sequence and could be completed later into the golden value by
# whoever reaches the TPM next. So the loader's extends go through Pcr14, and on any failure
# close() extends the separator before anything else runs; a PCR 14 ending in a separator that
# is not after the whole golden sequence can never become golden (the hash chain only grows).
#
# The platform hierarchy (TPM 2.0 Part 1 §13.4): TPM2_Startup(CLEAR) enables it with an empty
# platformAuth; the platform firmware is expected to set a random platformAuth or disable it.
# If it did neither, anyone with the TPM could use platform authority: TPM2_Clear,
# TPM2_HierarchyChangeAuth of every hierarchy, NV indices of the platform. The loader then
# disables it with TPM2_HierarchyControl(TPM_RH_PLATFORM, TPM_RH_PLATFORM, NO) (Part 3 §24.2)
# until the next TPM2_Startup(CLEAR), i.e. the next boot. phEnableNV stays SET: the
# platform-created anti-rollback index must stay readable and writable (Part 3 §24.2: with
# phEnableNV CLEAR such indices answer TPM_RC_HANDLE).

from firmware.tpm import constants as C
from firmware.tpm.errors import TpmError

# outcomes of lock_platform
PLATFORM_DISABLED = "disabled"  # phEnable was SET with an empty platformAuth: now CLEAR
PLATFORM_ALREADY_OFF = "already-disabled"  # the firmware cleared phEnable itself
PLATFORM_AUTH_SET = "auth-set"  # the firmware set a platformAuth we do not know: phEnable left


class PlatformLockError(RuntimeError):
    """The TPM accepted TPM2_HierarchyControl but still reports phEnable SET."""


class Pcr14:
    """The loader's extends of the phone PCR; remembers whether the last one was the separator."""

    def __init__(self, tpm, pcr, separator_digests):
        self.tpm = tpm
        self.pcr = pcr
        self.separator = separator_digests  # {bank: digest} of the EV_SEPARATOR
        self.extends = 0
        self.closed = False

    def extend(self, pcr, digests):
        if pcr != self.pcr:
            raise ValueError("the stage loader extends PCR %d only, not %d" % (self.pcr, pcr))
        if self.closed:
            raise ValueError("PCR %d is closed by its separator" % self.pcr)
        self.tpm.pcr_extend(pcr, digests)
        self.extends += 1
        self.closed = dict(digests) == self.separator

    def close(self):
        """Extend the separator unless it was the last extend; -> True if this call did."""
        if self.closed:
            return False
        self.tpm.pcr_extend(self.pcr, self.separator)
        self.closed = True
        return True


class Pcr14OpenError(RuntimeError):
    """PCR 14 could not be closed after a failed measurement: nothing may start."""


def measure_closed(pcr14, measure, note=None):
    """measure() (which extends through pcr14.extend) with PCR 14 closed by a separator if it
    raises half way; the exception propagates (after `note(text)` says so), or Pcr14OpenError
    when the separator itself failed."""
    try:
        return measure()
    except BaseException as e:
        try:
            done = pcr14.close()
        except BaseException as e2:
            raise Pcr14OpenError("PCR %d left open after %s: the separator failed: %s: %s" % (
                pcr14.pcr, e.__class__.__name__, e2.__class__.__name__, e2))
        if done and note is not None:
            note("measurement failed (%s): PCR %d closed with a separator after %d extends"
                 % (e.__class__.__name__, pcr14.pcr, pcr14.extends))
        raise


def startup_flags(tpm):
    """TPMA_STARTUP_CLEAR (Part 2 §8.7) -> {phEnable, shEnable, ehEnable, phEnableNV: bool}."""
    v = tpm.startup_clear_flags()
    return {"phEnable": bool(v & C.TPMA_STARTUP_CLEAR_PHENABLE),
            "shEnable": bool(v & C.TPMA_STARTUP_CLEAR_SHENABLE),
            "ehEnable": bool(v & C.TPMA_STARTUP_CLEAR_EHENABLE),
            "phEnableNV": bool(v & C.TPMA_STARTUP_CLEAR_PHENABLENV)}


def lock_platform(tpm):
    """Disable the platform hierarchy if the firmware left it usable with an empty
    platformAuth; -> (PLATFORM_* outcome, flags after). The probe is the disabling command itself
    (TPM2_HierarchyControl with the empty password): a platformAuth the firmware set makes it
    fail with TPM_RC_BAD_AUTH (not DA-counted) and changes nothing. Any other TPM error
    propagates (the caller fails closed)."""
    if not startup_flags(tpm)["phEnable"]:
        return PLATFORM_ALREADY_OFF, startup_flags(tpm)
    try:
        tpm.hierarchy_control(C.TPM_RH_PLATFORM, False, auth_handle=C.TPM_RH_PLATFORM)
    except TpmError as e:
        if e.name in ("TPM_RC_BAD_AUTH", "TPM_RC_AUTH_FAIL"):
            return PLATFORM_AUTH_SET, startup_flags(tpm)
        raise
    flags = startup_flags(tpm)
    if flags["phEnable"]:
        raise PlatformLockError("TPM2_HierarchyControl accepted but TPMA_STARTUP_CLEAR.phEnable "
                                "is still SET")
    return PLATFORM_DISABLED, flags
