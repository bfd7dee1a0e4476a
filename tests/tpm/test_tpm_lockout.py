"""Dictionary-attack protection (TPM 2.0 Part 1 §19.8.6, Part 3 §25) on a fresh swtpm: wrong PINs
count, the TPM locks out at the limit set with DictionaryAttackParameters, and
DictionaryAttackLockReset clears it."""

from __future__ import annotations

import pytest

from firmware.tpm import constants as C
from firmware.tpm import errors as E
from firmware.tpm import policy, public
from firmware.tpm.client import Tpm
from firmware.tpm.errors import TpmError
from tests.tpm.helpers import connect

SEL = policy.pcr_selection("sha256", [7])
PIN = b"2468"


def _unseal(tpm: Tpm, h: int, pin: bytes) -> bytes:
    s = tpm.start_auth_session(C.TPM_SE_POLICY)
    try:
        tpm.policy_pcr(s, SEL)
        tpm.policy_auth_value(s)
        return tpm.unseal(h, s, pin)
    finally:
        tpm.flush_context(s.handle)


def test_wrong_pin_lockout_and_reset(fresh_swtpm) -> None:  # type: ignore[no-untyped-def]
    tpm = connect(fresh_swtpm.uri)
    tpm.dictionary_attack_parameters(3, 1000, 1000)
    props = tpm.properties(C.TPM_PT_VAR, 64)
    assert props[C.TPM_PT_MAX_AUTH_FAIL] == 3 and props[C.TPM_PT_LOCKOUT_COUNTER] == 0
    srk = tpm.create_primary(C.TPM_RH_OWNER, public.srk_template_ecc())["handle"]
    pol = policy.seal_policy({7: tpm.pcr_read_all("sha256")[7]}, with_pin=True)
    blob = tpm.create(srk, public.sealed_template(pol), b"media key", PIN)
    h = tpm.load(srk, blob["private"], blob["public"])
    assert _unseal(tpm, h, PIN) == b"media key"
    for i in range(3):
        with pytest.raises(TpmError) as ei:
            _unseal(tpm, h, b"0000")
        assert ei.value.base in (E.TPM_RC_AUTH_FAIL, E.TPM_RC_LOCKOUT)
    assert tpm.properties(C.TPM_PT_VAR, 64)[C.TPM_PT_LOCKOUT_COUNTER] >= 3
    with pytest.raises(TpmError) as ei:
        _unseal(tpm, h, PIN)  # right PIN, but locked out
    assert ei.value.base == E.TPM_RC_LOCKOUT and ei.value.name == "TPM_RC_LOCKOUT"
    tpm.dictionary_attack_lock_reset()
    assert tpm.properties(C.TPM_PT_VAR, 64)[C.TPM_PT_LOCKOUT_COUNTER] == 0
    assert _unseal(tpm, h, PIN) == b"media key"
    tpm.transport.close()  # type: ignore[attr-defined]
