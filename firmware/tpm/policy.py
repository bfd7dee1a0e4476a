# Policy digests computed on the host, without a TPM (TPM 2.0 Part 3 §23), so provisioning can
# seal to PCR values predicted from an image rather than to whatever a TPM holds now.

from firmware import compat
from firmware.tcg_alg import HASH_ALG_IDS, HASH_SIZES
from firmware.tpm import constants as C
from firmware.tpm.marshal import Writer
from firmware.tpm.structures import PCR_SELECTION


def pcr_selection(bank, pcrs):
    """A one-bank selection [(alg id, sorted indices)] as commands take it."""
    return [(HASH_ALG_IDS[bank] if isinstance(bank, str) else bank, sorted(pcrs))]


def marshal_pcr_selection(selection):
    """TPML_PCR_SELECTION bytes, e.g. sha256 {4,7,11,14}: 00000001 000b 03 904800."""
    w = Writer()
    PCR_SELECTION.write(w, selection)
    return w.bytes()


def empty_digest(hash_name="sha256"):
    """The policyDigest a fresh policy session starts from: all zeros (Part 1 §19.7.4)."""
    return b"\x00" * HASH_SIZES[hash_name]


def pcr_values_digest(pcr_values, pcr_bank="sha256", policy_hash="sha256"):
    """pcrDigest of PolicyPCR: H_policy(concatenation of the selected PCR values in index order)."""
    size = HASH_SIZES[pcr_bank]
    h = compat.new_hash(policy_hash)
    for i in sorted(pcr_values):
        v = pcr_values[i]
        if len(v) != size:
            raise ValueError("PCR %d value has %d bytes, %s needs %d" % (i, len(v), pcr_bank, size))
        h.update(v)
    return h.digest()


def policy_pcr(pcr_values, pcr_bank="sha256", prev=None, policy_hash="sha256"):
    """Part 3 §23.7: policyDigest' = H(policyDigest || TPM_CC_PolicyPCR || pcrs || pcrDigest) for
    the expected values {index: digest} of bank `pcr_bank`."""
    if prev is None:
        prev = empty_digest(policy_hash)
    sel = marshal_pcr_selection(pcr_selection(pcr_bank, pcr_values.keys()))
    digest = pcr_values_digest(pcr_values, pcr_bank, policy_hash)
    return compat.digest(policy_hash, prev + C.TPM_CC_PolicyPCR.to_bytes(4, "big") + sel + digest)


def policy_auth_value(prev=None, policy_hash="sha256"):
    """Part 3 §23.17: policyDigest' = H(policyDigest || TPM_CC_PolicyAuthValue)."""
    if prev is None:
        prev = empty_digest(policy_hash)
    return compat.digest(policy_hash, prev + C.TPM_CC_PolicyAuthValue.to_bytes(4, "big"))


def policy_password(prev=None, policy_hash="sha256"):
    """Part 3 §23.18: PolicyPassword extends with TPM_CC_PolicyAuthValue, so both give one digest."""
    return policy_auth_value(prev, policy_hash)


def policy_authorize(key_name, policy_ref=b"", prev=None, policy_hash="sha256"):
    """Part 3 §23.16: policyDigest' = H(H(policyDigest || TPM_CC_PolicyAuthorize || keySign.Name)
    || policyRef). The TPM resets policyDigest to zeros before extending (the approved policy is
    replaced), so `prev` is normally left at its default."""
    if prev is None:
        prev = empty_digest(policy_hash)
    inner = compat.digest(policy_hash, prev + C.TPM_CC_PolicyAuthorize.to_bytes(4, "big") + key_name)
    return compat.digest(policy_hash, inner + policy_ref)


def authorize_digest(approved_policy, policy_ref=b"", policy_hash="sha256"):
    """Part 3 §23.16: aHash = H(approvedPolicy || policyRef), what the authorizing key signs."""
    return compat.digest(policy_hash, approved_policy + policy_ref)


def policy_nv(nv_name, operand_b, operation, offset=0, prev=None, policy_hash="sha256"):
    """Part 3 §23.9: args = H(operandB || offset || operation); policyDigest' =
    H(policyDigest || TPM_CC_PolicyNV || args || nvIndex.Name)."""
    if prev is None:
        prev = empty_digest(policy_hash)
    args = compat.digest(policy_hash, bytes(operand_b) + offset.to_bytes(2, "big") + operation.to_bytes(2, "big"))
    return compat.digest(policy_hash, prev + C.TPM_CC_PolicyNV.to_bytes(4, "big") + args + nv_name)


def seal_policy(pcr_values, pcr_bank="sha256", with_pin=False):
    """The sealing policy of the design: PolicyPCR over the expected values, then PolicyAuthValue
    when the secret also needs the PIN. Sessions must run the same commands in the same order."""
    d = policy_pcr(pcr_values, pcr_bank)
    if with_pin:
        d = policy_auth_value(d)
    return d
