# The anti-rollback field: a TPM NV index of type TPM_NT_BITS (Part 1 §37.2.4). TPM2_NV_SetBits
# only ORs bits in, so it is monotonic like a counter, and bit v set means "anti-rollback version v
# is revoked". Unlike a TPM_NT_COUNTER (which may start at any value on a real TPM) a bit number
# means the same on every device, so one vendor-signed policy serves the whole fleet.
#
# A signed policy for version v contains PolicyNV(index, BITCLEAR, 1<<v): it holds until bit v is
# set. Committing version v sets bits 0..v-1, which revokes every older signed policy.

from firmware import compat
from firmware.secrets import flows
from firmware.tpm import constants as C
from firmware.tpm import nv

DEFAULT_INDEX = 0x01000A50  # owner range (TCG handle registry: 0x01000000-0x013FFFFF)

# Anyone on the device may set bits (empty auth): the worst an attacker can do with that is
# revoke the current version (denial of service); it can never clear a bit. noDA so these writes
# never touch the PIN's lockout counter.
#
# Nobody may delete it (docs/sealing.md): deleting and re-defining the index with the same Name
# would clear every revocation bit and make old signed policies valid again. So the index is
# created by the platform at provisioning (TPMA_NV_PLATFORMCREATE: TPM2_Clear and the owner cannot
# touch it, Part 3 §24.6 and §31.4) with TPMA_NV_POLICY_DELETE (TPM2_NV_UndefineSpace refuses it
# with TPM_RC_ATTRIBUTES, even with platformAuth; only TPM2_NV_UndefineSpaceSpecial with its
# authPolicy may, Part 3 §31.4/§31.5). Part 3 §31.3: POLICY_DELETE is only accepted on a
# platform-created index. The authPolicy is NO_DELETE_POLICY: a digest no policy session reaches.
BASE_ATTRIBUTES = ((C.TPM_NT_BITS << C.TPMA_NV_TPM_NT_SHIFT) | C.TPMA_NV_AUTHWRITE | C.TPMA_NV_AUTHREAD
                   | C.TPMA_NV_OWNERREAD | C.TPMA_NV_NO_DA)
ATTRIBUTES = BASE_ATTRIBUTES | C.TPMA_NV_PLATFORMCREATE | C.TPMA_NV_POLICY_DELETE
# A policy digest is only ever H(previous digest || command-specific data) (Part 1 §19.7), so
# reaching this value needs a SHA-256 preimage of it: the hash of a label, not the output of any
# policy command chain.
NO_DELETE_POLICY = compat.digest("sha256", b"trusted-phone/anti-rollback: never deleted")


def public_area(index=DEFAULT_INDEX):
    """TPMS_NV_PUBLIC as defined (before the first write)."""
    return nv.nv_public(index, ATTRIBUTES, 8, auth_policy=NO_DELETE_POLICY)


def legacy_public_area(index=DEFAULT_INDEX):
    """The owner-created form of devices provisioned before the index became undeletable."""
    return nv.nv_public(index, BASE_ATTRIBUTES, 8)


def written_name(index=DEFAULT_INDEX):
    """The Name PolicyNV uses: with TPMA_NV_WRITTEN set (the index is written once at creation)."""
    return nv.nv_name(nv.written(public_area(index)))


def revoked(tpm, index=DEFAULT_INDEX):
    """The field's value (bit v set: version v revoked)."""
    return tpm.nv_read_u64(index)


def commit(tpm, version, index=DEFAULT_INDEX):
    """Revoke every version older than `version` (call only after `version` unsealed)."""
    bits = flows.revoke_bits(version)
    if bits:
        tpm.nv_set_bits(index, bits)
