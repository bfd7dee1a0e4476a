# The stage loader's anti-rollback floor, read from the TPM (docs/image-format.md, docs/sealing.md).
#
# firmware/secrets/rollback.py keeps a TPM_NT_BITS NV index (TPM 2.0 Part 1 §37.2.4): bit v set
# means "anti-rollback counter v is revoked"; after a release of counter v the boot hook sets bits
# 0..v-1 (TPM2_NV_SetBits only ORs, so the field never goes back). The loader's floor is one past
# the highest set bit: a bundle whose counter is below it is refused. Every counter whose bit is set
# is below that floor, so the loader refuses at least what the TPM's PolicyNV(BITCLEAR) refuses.
#
# An absent index (TPM_RC_HANDLE: never provisioned) or one never written (TPM_RC_NV_UNINITIALIZED)
# means nothing is revoked: floor 0. Any other failure is returned as an error and the loader
# refuses the bundle (fail closed); a missing TPM fails earlier, when measuring.

FLOOR_INDEX = 0x01000A50  # firmware.secrets.rollback.DEFAULT_INDEX (owner range)
_RC_FMT1 = 0x080          # TPM 2.0 Part 2 §6.6.3: format-one codes
_RC_VER1 = 0x100
TPM_RC_HANDLE = _RC_FMT1 + 0x00B
TPM_RC_NV_UNINITIALIZED = _RC_VER1 + 0x04A
ABSENT = (TPM_RC_HANDLE, TPM_RC_NV_UNINITIALIZED)


def floor_from_bits(bits):
    """One past the highest set bit of the revocation field (0 when no bit is set)."""
    if bits < 0:
        raise ValueError("bit field must be non-negative")
    n = 0
    while bits:
        bits >>= 1
        n += 1
    return n


def read_floor(tpm, index=FLOOR_INDEX):
    """(floor, None) or (0, error text). `tpm` has nv_read_u64(index) (firmware.tpm.client.Tpm);
    a TPM error with a `base` of TPM_RC_HANDLE or TPM_RC_NV_UNINITIALIZED means no floor."""
    try:
        bits = tpm.nv_read_u64(index)
    except Exception as e:  # typed TpmError or transport failure: decide below, fail closed
        if getattr(e, "base", None) in ABSENT:
            return 0, None
        return 0, "NV index 0x%08x: %s: %s" % (index, e.__class__.__name__, e)
    return floor_from_bits(bits), None
