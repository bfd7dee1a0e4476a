# Host-side policy digests (TPM 2.0 Part 3 §23) against values from tpm2-tools and swtpm.
from firmware.tpm import policy
from tests.unit.firmware.check import raises, unhex

PCRS = {
    4: bytes(range(32)),
    7: b"\x07" * 32,
    11: b"\xab" * 32,
    14: unhex("8878b15a7d6a3a4f464e8f9f42591dbc0cf4bedea0ec309003d2b2ee53655ef8"),
}


def test_pcr_selection_bytes():
    # Part 2 §10.9.7: count, hash TPM_ALG_SHA256, sizeofSelect 3, bitmap for PCRs 4,7 | 11,14
    assert policy.marshal_pcr_selection(policy.pcr_selection("sha256", [14, 4, 11, 7])) == unhex(
        "00000001 000b 03 904800")
    assert policy.marshal_pcr_selection(policy.pcr_selection("sha1", [0, 23])) == unhex(
        "00000001 0004 03 010080")


def test_policy_pcr_matches_tpm2_createpolicy():
    # tpm2_createpolicy 5.4 --policy-pcr -l sha256:4,7,11,14 -f pcrs.bin (the values above)
    assert policy.policy_pcr(PCRS) == unhex(
        "bbf62df27275b417a83b980eeae942c6a41d689cc7b762dd0592ceea6e34a905")


def test_policy_auth_value_from_empty():
    # The well-known PolicyAuthValue digest (H(0^32 || 0000016B)), as tpm2_policyauthvalue prints.
    assert policy.policy_auth_value() == unhex(
        "8fcd2169ab92694e0c633f1ab772842b8241bbc20288981fc7ac1eddc1fddb0e")
    assert policy.policy_password() == policy.policy_auth_value()


def test_seal_policy_pcr_then_pin():
    # PolicyGetDigest from swtpm after PolicyPCR(sha256:4,7,11,14) + PolicyAuthValue (tests/tpm)
    assert policy.seal_policy(PCRS, with_pin=True) == unhex(
        "e7c67c4a69536520c6afb045c649d214579461f848f50e1e4b16da61fc35fa2b")


def test_policy_authorize_formula():
    name = unhex("000b") + b"\x55" * 32
    from firmware import compat

    inner = compat.sha256(b"\x00" * 32 + unhex("0000016a") + name)
    assert policy.policy_authorize(name, b"ref") == compat.sha256(inner + b"ref")


def test_wrong_pcr_size_rejected():
    e = raises(ValueError, policy.policy_pcr, {0: b"\x00" * 20})
    assert "PCR 0" in str(e)
