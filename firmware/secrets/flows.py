# The sealing policies of docs/sealing.md, computed offline (for provisioning and update signing)
# and replayed in a TPM policy session (at release). Both sides are one description, so the
# digest the host seals to and the commands the device runs cannot drift apart.
#
#   policy "pcr":        PolicyPCR(bank, pcrs) [+ PolicyAuthValue for PIN objects]
#   policy "authorized": approved = PolicyPCR(bank, pcrs) + PolicyNV(rollback bits, BITCLEAR 1<<v)
#                        object   = PolicyAuthorize(vendor key, policyRef) [+ PolicyAuthValue]
#
# The TPM evaluates all of it; nothing here decides whether a secret is released.

from firmware.tpm import constants as C
from firmware.tpm import policy
from firmware.tpm.public import object_name


def version_operand(version):
    """PolicyNV operandB for anti-rollback version v: bit v of the 64-bit field (big-endian, the
    NV data's byte order, Part 1 §37.2.4). BITCLEAR holds while bit v is not yet revoked."""
    if version < 0 or version > 63:
        raise ValueError("anti-rollback version %d outside 0..63" % version)
    return (1 << version).to_bytes(8, "big")


def revoke_bits(version):
    """Bits to set in the NV field when version `version` is committed: every older version."""
    return (1 << version) - 1


def pcr_policy(expected, bank="sha256"):
    return policy.policy_pcr(expected, bank)


def approved_policy(expected, nv_name, version, bank="sha256"):
    """What the vendor signs for one image: its predicted PCRs and its anti-rollback bit."""
    return policy.policy_nv(nv_name, version_operand(version), C.TPM_EO_BITCLEAR,
                            prev=policy.policy_pcr(expected, bank))


def object_policy(meta_or_mode, with_pin, expected=None, key_public=None, policy_ref=b"", bank="sha256"):
    """authPolicy of a sealed object. `meta_or_mode` is the store metadata (its fields are used)
    or the mode string with the other arguments given."""
    if isinstance(meta_or_mode, dict):
        m = meta_or_mode
        mode, bank = m["policy"], m["pcr_bank"]
        expected = dict((int(k), bytes.fromhex(v)) for k, v in m["expected"].items())
        if mode == "authorized":
            key_public = bytes.fromhex(m["authorized"]["key"])
            policy_ref = bytes.fromhex(m["authorized"]["policy_ref"])
    else:
        mode = meta_or_mode
    if mode == "pcr":
        d = pcr_policy(expected, bank)
    elif mode == "authorized":
        d = policy.policy_authorize(object_name(key_public), policy_ref)
    else:
        raise ValueError("unknown policy mode %r" % (mode,))
    if with_pin:
        d = policy.policy_auth_value(d)
    return d


def run_pcr(tpm, session, pcrs, bank="sha256"):
    """PolicyPCR with an empty pcrDigest: the TPM takes its own current values, so a mismatch
    shows up as TPM_RC_POLICY_FAIL at Unseal, decided by the TPM alone."""
    tpm.policy_pcr(session, policy.pcr_selection(bank, pcrs))


def verify_signed(tpm, key_public, approved, policy_ref, r, s):
    """Load the vendor key, have the TPM check its signature over H(approved || policyRef), and
    return the TPMT_TK_VERIFIED ticket (the key is flushed: swtpm has three object slots)."""
    h = tpm.load_external(key_public, C.TPM_RH_OWNER)
    try:
        return tpm.verify_signature(h, policy.authorize_digest(approved, policy_ref),
                                    {"sigAlg": C.TPM_ALG_ECDSA, "hash": C.TPM_ALG_SHA256, "r": r, "s": s})
    finally:
        tpm.flush_context(h)


def run_authorized(tpm, session, pcrs, bank, nv_index, version, approved, policy_ref, key_public, ticket):
    tpm.policy_pcr(session, policy.pcr_selection(bank, pcrs))
    tpm.policy_nv(session, nv_index, version_operand(version), C.TPM_EO_BITCLEAR)
    tpm.policy_authorize(session, approved, policy_ref, object_name(key_public), ticket)
