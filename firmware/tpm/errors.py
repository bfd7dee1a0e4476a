# TPM response codes (TPM 2.0 Part 2 §6.6) decoded into a typed exception that names the code,
# and for format-1 codes which handle, parameter or session it refers to.

RC_VER1 = 0x100
RC_FMT1 = 0x080
RC_WARN = 0x900

# Format-0 errors: TPM_RC_VER1 + n (Part 2 §6.6.3)
_FMT0 = {
    0x000: ("TPM_RC_INITIALIZE", "TPM not initialized by TPM2_Startup or already initialized"),
    0x001: ("TPM_RC_FAILURE", "the TPM is in failure mode"),
    0x003: ("TPM_RC_SEQUENCE", "improper use of a sequence handle"),
    0x00B: ("TPM_RC_PRIVATE", "not currently used"),
    0x019: ("TPM_RC_HMAC", "not currently used"),
    0x020: ("TPM_RC_DISABLED", "the command is disabled"),
    0x021: ("TPM_RC_EXCLUSIVE", "command failed because audit sequence required exclusivity"),
    0x024: ("TPM_RC_AUTH_TYPE", "authorization handle is not correct for command"),
    0x025: ("TPM_RC_AUTH_MISSING", "command requires an authorization session for handle and it is not present"),
    0x026: ("TPM_RC_POLICY", "policy failure in math operation or an invalid authPolicy value"),
    0x027: ("TPM_RC_PCR", "PCR check fail"),
    0x028: ("TPM_RC_PCR_CHANGED", "PCR have changed since checked"),
    0x02D: ("TPM_RC_UPGRADE", "the TPM is in field upgrade mode"),
    0x02E: ("TPM_RC_TOO_MANY_CONTEXTS", "context ID counter is at maximum"),
    0x02F: ("TPM_RC_AUTH_UNAVAILABLE", "authValue or authPolicy is not available for selected entity"),
    0x030: ("TPM_RC_REBOOT", "a _TPM_Init and Startup(CLEAR) is required"),
    0x031: ("TPM_RC_UNBALANCED", "the protection algorithms (hash and symmetric) are not reasonably balanced"),
    0x042: ("TPM_RC_COMMAND_SIZE", "command commandSize value is inconsistent with contents"),
    0x043: ("TPM_RC_COMMAND_CODE", "command code not supported"),
    0x044: ("TPM_RC_AUTHSIZE", "the value of authorizationSize is out of range"),
    0x045: ("TPM_RC_AUTH_CONTEXT", "use of an authorization session with a context command"),
    0x046: ("TPM_RC_NV_RANGE", "NV offset+size is out of range"),
    0x047: ("TPM_RC_NV_SIZE", "requested allocation size is larger than allowed"),
    0x048: ("TPM_RC_NV_LOCKED", "NV access locked"),
    0x049: ("TPM_RC_NV_AUTHORIZATION", "NV access authorization fails in command actions"),
    0x04A: ("TPM_RC_NV_UNINITIALIZED", "an NV Index is used before being initialized"),
    0x04B: ("TPM_RC_NV_SPACE", "insufficient space for NV allocation"),
    0x04C: ("TPM_RC_NV_DEFINED", "NV Index or persistent object already defined"),
    0x050: ("TPM_RC_BAD_CONTEXT", "context in TPM2_ContextLoad() is not valid"),
    0x051: ("TPM_RC_CPHASH", "cpHash value already set or not correct for use"),
    0x052: ("TPM_RC_PARENT", "handle for parent is not a valid parent"),
    0x053: ("TPM_RC_NEEDS_TEST", "some function needs testing"),
    0x054: ("TPM_RC_NO_RESULT", "an internal function cannot process a request due to an unspecified problem"),
    0x055: ("TPM_RC_SENSITIVE", "the sensitive area did not unmarshal correctly after decryption"),
}

# Format-1 errors: TPM_RC_FMT1 + n (Part 2 §6.6.3)
_FMT1 = {
    0x001: ("TPM_RC_ASYMMETRIC", "asymmetric algorithm not supported or not correct"),
    0x002: ("TPM_RC_ATTRIBUTES", "inconsistent attributes"),
    0x003: ("TPM_RC_HASH", "hash algorithm not supported or not appropriate"),
    0x004: ("TPM_RC_VALUE", "value is out of range or is not correct for the context"),
    0x005: ("TPM_RC_HIERARCHY", "hierarchy is not enabled or is not correct for the use"),
    0x007: ("TPM_RC_KEY_SIZE", "key size is not supported"),
    0x008: ("TPM_RC_MGF", "mask generation function not supported"),
    0x009: ("TPM_RC_MODE", "mode of operation not supported"),
    0x00A: ("TPM_RC_TYPE", "the type of the value is not appropriate for the use"),
    0x00B: ("TPM_RC_HANDLE", "the handle is not correct for the use"),
    0x00C: ("TPM_RC_KDF", "unsupported key derivation function or function not appropriate for use"),
    0x00D: ("TPM_RC_RANGE", "value was out of allowed range"),
    0x00E: ("TPM_RC_AUTH_FAIL", "the authorization HMAC check failed and DA counter incremented"),
    0x00F: ("TPM_RC_NONCE", "invalid nonce size or nonce value mismatch"),
    0x010: ("TPM_RC_PP", "authorization requires assertion of PP"),
    0x012: ("TPM_RC_SCHEME", "unsupported or incompatible scheme"),
    0x015: ("TPM_RC_SIZE", "structure is the wrong size"),
    0x016: ("TPM_RC_SYMMETRIC", "unsupported symmetric algorithm or key size, or not appropriate for instance"),
    0x017: ("TPM_RC_TAG", "incorrect structure tag"),
    0x018: ("TPM_RC_SELECTOR", "union selector is incorrect"),
    0x01A: ("TPM_RC_INSUFFICIENT", "the TPM was unable to unmarshal a value because there were not enough octets in the input buffer"),
    0x01B: ("TPM_RC_SIGNATURE", "the signature is not valid"),
    0x01C: ("TPM_RC_KEY", "key fields are not compatible with the selected use"),
    0x01D: ("TPM_RC_POLICY_FAIL", "a policy check failed"),
    0x01F: ("TPM_RC_INTEGRITY", "integrity check failed"),
    0x020: ("TPM_RC_TICKET", "invalid ticket"),
    0x021: ("TPM_RC_RESERVED_BITS", "reserved bits not set to zero as required"),
    0x022: ("TPM_RC_BAD_AUTH", "authorization failure without DA implications"),
    0x023: ("TPM_RC_EXPIRED", "the policy has expired"),
    0x024: ("TPM_RC_POLICY_CC", "the commandCode in the policy is not the commandCode of the command or the command code in a policy command references a command that is not implemented"),
    0x025: ("TPM_RC_BINDING", "public and sensitive portions of an object are not cryptographically bound"),
    0x026: ("TPM_RC_CURVE", "curve not supported"),
    0x027: ("TPM_RC_ECC_POINT", "point is not on the required curve"),
}

# Warnings: TPM_RC_WARN + n (Part 2 §6.6.3)
_WARN = {
    0x001: ("TPM_RC_CONTEXT_GAP", "gap for context ID is too large"),
    0x002: ("TPM_RC_OBJECT_MEMORY", "out of memory for object contexts"),
    0x003: ("TPM_RC_SESSION_MEMORY", "out of memory for session contexts"),
    0x004: ("TPM_RC_MEMORY", "out of shared object/session memory or need space for internal operations"),
    0x005: ("TPM_RC_SESSION_HANDLES", "out of session handles; a session must be flushed before a new session may be created"),
    0x006: ("TPM_RC_OBJECT_HANDLES", "out of object handles; a reboot is required"),
    0x007: ("TPM_RC_LOCALITY", "bad locality"),
    0x008: ("TPM_RC_YIELDED", "the TPM has suspended operation on the command; forward progress was made and the command may be retried"),
    0x009: ("TPM_RC_CANCELED", "the command was canceled"),
    0x00A: ("TPM_RC_TESTING", "TPM is performing self-tests"),
    0x020: ("TPM_RC_NV_RATE", "the TPM is rate-limiting accesses to prevent wearout of NV"),
    0x021: ("TPM_RC_LOCKOUT", "authorizations for objects subject to DA protection are not allowed at this time because the TPM is in DA lockout mode"),
    0x022: ("TPM_RC_RETRY", "the TPM was not able to start the command"),
    0x023: ("TPM_RC_NV_UNAVAILABLE", "the command may require writing of NV and NV is not current accessible"),
}
for _i in range(7):
    _WARN[0x010 + _i] = ("TPM_RC_REFERENCE_H%d" % _i,
                         "handle %d of the command references a transient object or session that is not loaded" % (_i + 1))
    _WARN[0x018 + _i] = ("TPM_RC_REFERENCE_S%d" % _i,
                         "session %d of the command references a session that is not loaded" % (_i + 1))

# Warnings whose remedy is to send the same command again (Part 2 §6.6.3: TPM_RC_RETRY,
# TPM_RC_YIELDED and TPM_RC_TESTING mean the command was not executed or may be resumed).
RETRYABLE = (RC_WARN + 0x022, RC_WARN + 0x008, RC_WARN + 0x00A)

# Bits 16 and up are not TPM bits: TSS stacks put a "layer" there (e.g. 0x0B for the resource
# manager in tpm2-tss); a kernel resource manager can answer with one too.
LAYER_SHIFT = 16


def decode(rc):
    """Decode a TPM_RC into a dict: name, description, fmt1, base, and handle/parameter/session
    (the number, or None) for format-1 codes, layer for codes with bits above 15 set."""
    out = {"rc": rc, "layer": rc >> LAYER_SHIFT, "handle": None, "parameter": None,
           "session": None, "warning": False, "fmt1": False}
    low = rc & 0xFFFF
    if low & RC_FMT1:
        # Part 2 §6.6.2 Figure 27: bits 5:0 error, bit 6 P, bits 11:8 N. With P set N is the
        # parameter number; else N 1..7 is a handle and 8..15 is session N-8.
        n = (low >> 8) & 0xF
        e = low & 0x3F
        out["fmt1"] = True
        out["base"] = RC_FMT1 + e
        name, desc = _FMT1.get(e, ("TPM_RC_FMT1_0x%03x" % (RC_FMT1 + e), "unknown format-1 error"))
        if low & 0x40:
            out["parameter"] = n
        elif n >= 8:
            out["session"] = n - 8
        elif n:
            out["handle"] = n
    elif low & RC_VER1:
        # Part 2 §6.6.2 Figure 26: bit 11 S (warning), bit 10 T (vendor), bits 6:0 error.
        e = low & 0x7F
        if low & 0x400:
            name, desc = "TPM_RC_VENDOR_0x%03x" % low, "vendor-defined response code"
        elif low & 0x800:
            out["warning"] = True
            name, desc = _WARN.get(e, ("TPM_RC_WARN_0x%03x" % low, "unknown warning"))
        else:
            name, desc = _FMT0.get(e, ("TPM_RC_0x%03x" % low, "unknown format-0 error"))
        out["base"] = low
    elif low == 0:
        name, desc = "TPM_RC_SUCCESS", "success"
        out["base"] = 0
    else:
        name, desc = "TPM_RC_0x%03x" % low, "TPM 1.2 response code"
        out["base"] = low
    out["name"] = name
    out["description"] = desc
    return out


class TpmError(Exception):
    """A TPM command answered with a non-success response code.

    Attributes: rc, command (spec name or None), name (e.g. "TPM_RC_POLICY_FAIL"), base (the code
    without handle/parameter/session bits, comparable with TPM_RC_* below), handle, parameter,
    session (1-based numbers as in the spec, or None), warning.
    """

    def __init__(self, rc, command=None):
        d = decode(rc)
        self.rc = rc
        self.command = command
        self.name = d["name"]
        self.description = d["description"]
        self.base = d["base"]
        self.handle = d["handle"]
        self.parameter = d["parameter"]
        self.session = d["session"]
        self.warning = d["warning"]
        self.layer = d["layer"]
        super().__init__(self._text())

    def _text(self):
        where = ""
        if self.handle is not None:
            where = " handle %d" % self.handle
        elif self.parameter is not None:
            where = " parameter %d" % self.parameter
        elif self.session is not None:
            where = " session %d" % self.session
        layer = " (layer 0x%x)" % self.layer if self.layer else ""
        text = "%s (0x%x)%s%s: %s" % (self.name, self.rc, layer, where, self.description)
        if self.command:
            text = "%s failed: %s" % (self.command, text)
        return text

    def __str__(self):
        return self._text()

    @property
    def retryable(self):
        return (self.rc & 0xFFFF) in RETRYABLE and not self.layer


# Base codes to compare with TpmError.base.
TPM_RC_SUCCESS = 0x000
TPM_RC_INITIALIZE = RC_VER1 + 0x000
TPM_RC_AUTH_MISSING = RC_VER1 + 0x025
TPM_RC_POLICY = RC_VER1 + 0x026
TPM_RC_PCR_CHANGED = RC_VER1 + 0x028
TPM_RC_COMMAND_CODE = RC_VER1 + 0x043
TPM_RC_VALUE = RC_FMT1 + 0x004
TPM_RC_ATTRIBUTES = RC_FMT1 + 0x002
TPM_RC_HIERARCHY = RC_FMT1 + 0x005
TPM_RC_NV_AUTHORIZATION = RC_VER1 + 0x049
TPM_RC_NV_DEFINED = RC_VER1 + 0x04C
TPM_RC_HANDLE = RC_FMT1 + 0x00B
TPM_RC_AUTH_FAIL = RC_FMT1 + 0x00E
TPM_RC_SCHEME = RC_FMT1 + 0x012
TPM_RC_SIZE = RC_FMT1 + 0x015
TPM_RC_SYMMETRIC = RC_FMT1 + 0x016
TPM_RC_POLICY_FAIL = RC_FMT1 + 0x01D
TPM_RC_BAD_AUTH = RC_FMT1 + 0x022
TPM_RC_OBJECT_MEMORY = RC_WARN + 0x002
TPM_RC_REFERENCE_H0 = RC_WARN + 0x010
TPM_RC_LOCKOUT = RC_WARN + 0x021
TPM_RC_RETRY = RC_WARN + 0x022
