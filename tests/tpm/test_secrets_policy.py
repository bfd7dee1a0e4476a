# mypy: disable-error-code="no-untyped-call"
"""The offline policy digests of firmware.secrets.flows against the TPM itself as the oracle
(trial sessions, Part 3 §23.9 PolicyNV, §23.16 PolicyAuthorize), the NV bit field's Name and
monotonic behaviour (Part 3 §31.10), and VerifySignature refusing a wrong signature."""

from __future__ import annotations

from typing import Iterator

import pytest

from firmware.secrets import flows, rollback
from firmware.tpm import constants as C
from firmware.tpm import errors as E
from firmware.tpm.client import Tpm
from firmware.tpm.errors import TpmError
from host_tools.update import policy_key
from tests.tpm.helpers import connect, flush_all

INDEX = 0x01000A5F
PCRS = [4, 7, 11, 14]


@pytest.fixture
def tpm(fresh_swtpm) -> Iterator[Tpm]:  # type: ignore[no-untyped-def]
    t = connect(fresh_swtpm.uri)
    yield t
    flush_all(t)
    t.transport.close()


def test_nv_bits_index_name_and_monotonic(tpm: Tpm) -> None:
    tpm.nv_define_space(rollback.public_area(INDEX), hierarchy=C.TPM_RH_PLATFORM)
    assert tpm.nv_read_public(INDEX)["public"] == rollback.public_area(INDEX)
    tpm.nv_set_bits(INDEX, 0)
    info = tpm.nv_read_public(INDEX)
    assert info["name"] == rollback.written_name(INDEX)
    assert info["parsed"]["attributes"] & C.TPMA_NV_WRITTEN
    rollback.commit(tpm, 3, INDEX)
    assert rollback.revoked(tpm, INDEX) == 0b111
    rollback.commit(tpm, 1, INDEX)  # an older commit clears nothing
    assert rollback.revoked(tpm, INDEX) == 0b111
    assert tpm.nv_read_public(INDEX)["name"] == rollback.written_name(INDEX)  # data is not in the Name
    # nobody deletes it (Part 3 §31.4: POLICY_DELETE -> TPM_RC_ATTRIBUTES), not even the
    # platform, whose authorization is empty on this fresh TPM, nor the owner
    for hierarchy in (C.TPM_RH_PLATFORM, C.TPM_RH_OWNER):
        with pytest.raises(TpmError) as ei:
            tpm.nv_undefine_space(INDEX, hierarchy=hierarchy)
        assert (ei.value.name, ei.value.handle) == ("TPM_RC_ATTRIBUTES", 2)
    assert rollback.revoked(tpm, INDEX) == 0b111
    # Part 3 §31.3: POLICY_DELETE only on a platform-created index
    with pytest.raises(TpmError) as ei:
        tpm.nv_define_space(rollback.public_area(INDEX + 1))
    assert ei.value.name == "TPM_RC_ATTRIBUTES"


def test_approved_and_object_policies_match_the_tpm(tpm: Tpm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tpm.nv_define_space(rollback.public_area(INDEX), hierarchy=C.TPM_RH_PLATFORM)
    tpm.nv_set_bits(INDEX, 0)
    key = policy_key.load_or_create(tmp_path / "k.pem")
    kpub = policy_key.tpm_public(key)
    expected = tpm.pcr_read_all("sha256", PCRS)
    name = rollback.written_name(INDEX)
    approved = flows.approved_policy(expected, name, 5)
    ref = b"trusted-phone/test"
    s = tpm.start_auth_session(C.TPM_SE_TRIAL)
    flows.run_pcr(tpm, s, PCRS)
    tpm.policy_nv(s, INDEX, flows.version_operand(5), C.TPM_EO_BITCLEAR)
    assert tpm.policy_get_digest(s) == approved
    r, sig_s = policy_key.sign(key, approved, ref)
    ticket = flows.verify_signed(tpm, kpub, approved, ref, r, sig_s)
    assert ticket["tag"] == C.TPM_ST_VERIFIED and ticket["hierarchy"] == C.TPM_RH_OWNER
    tpm.policy_authorize(s, approved, ref, policy_key_name(kpub), ticket)
    assert tpm.policy_get_digest(s) == flows.object_policy("authorized", False, key_public=kpub, policy_ref=ref)
    tpm.policy_auth_value(s)
    assert tpm.policy_get_digest(s) == flows.object_policy("authorized", True, key_public=kpub, policy_ref=ref)
    tpm.flush_context(s.handle)
    # a signature over another policyRef is refused by the TPM (TPM_RC_SIGNATURE)
    with pytest.raises(TpmError) as ei:
        flows.verify_signed(tpm, kpub, approved, b"other", r, sig_s)
    assert ei.value.name == "TPM_RC_SIGNATURE"


def policy_key_name(kpub: bytes) -> bytes:
    from firmware.tpm.public import object_name
    name: bytes = object_name(kpub)
    return name


def test_revoked_version_fails_policy_nv(tpm: Tpm) -> None:
    tpm.nv_define_space(rollback.public_area(INDEX), hierarchy=C.TPM_RH_PLATFORM)
    rollback.commit(tpm, 4, INDEX)
    s = tpm.start_auth_session(C.TPM_SE_POLICY)
    tpm.policy_nv(s, INDEX, flows.version_operand(4), C.TPM_EO_BITCLEAR)  # 4 itself is live
    with pytest.raises(TpmError) as ei:
        tpm.policy_nv(s, INDEX, flows.version_operand(3), C.TPM_EO_BITCLEAR)
    assert ei.value.base == E.TPM_RC_POLICY
    tpm.flush_context(s.handle)
