# mypy: disable-error-code="no-untyped-call"
"""PIN guessing against the sealed user secret on a fresh swtpm: dictionary-attack lockout after
the board's tries (TPM 2.0 Part 1 §19.8.6, Part 3 §25), and power cycles: a clean TPM2_Shutdown
leaves the failure counter alone, an unclean reset after a PIN use counts as one failure."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from firmware.secrets import da
from firmware.secrets import release as R
from firmware.tpm import constants as C
from firmware.tpm import errors as E
from firmware.tpm.client import Tpm
from host_tools.provision import core
from tests.tpm import test_secrets_support as S
from tests.tpm.helpers import connect

GOLDEN = S.make_reference()


@pytest.fixture
def device(fresh_swtpm) -> Iterator[tuple[Tpm, dict[str, Any]]]:  # type: ignore[no-untyped-def]
    tpm = connect(fresh_swtpm.uri)
    meta = S.provision(tpm, GOLDEN, da=core.DaParameters(max_tries=5, recovery_time=600))
    S.boot(tpm, GOLDEN)
    yield tpm, meta
    tpm.transport.close()


def test_da_parameters_set_by_provisioning(device) -> None:  # type: ignore[no-untyped-def]
    tpm, _ = device
    props = tpm.properties(C.TPM_PT_LOCKOUT_COUNTER, 4)
    assert props[C.TPM_PT_MAX_AUTH_FAIL] == 5
    assert props[C.TPM_PT_LOCKOUT_INTERVAL] == 600
    assert props[C.TPM_PT_LOCKOUT_RECOVERY] == 86400
    assert props[C.TPM_PT_LOCKOUT_COUNTER] == 0


def test_wrong_pins_lock_out_and_then_the_right_pin_is_refused(device) -> None:  # type: ignore[no-untyped-def]
    tpm, meta = device
    for i in range(5):
        res = R.release(tpm, meta, pin=b"00000%d" % i, names=[S.USER])
        assert isinstance(res, R.PinFailure) and res.state == "pin-refused"
        assert res.tpm_error is not None and res.tpm_error.base == E.TPM_RC_AUTH_FAIL
        assert S.lockout_counter(tpm) == i + 1
    res = R.release(tpm, meta, pin=S.PIN, names=[S.USER])
    assert isinstance(res, R.LockoutFailure) and res.state == "locked-out"
    assert res.tpm_error is not None and res.tpm_error.base == E.TPM_RC_LOCKOUT
    # the SIP account's policy uses no authValue, so lockout does not touch it: the phone can
    # still register while the PIN is locked out
    sip = R.release(tpm, meta)
    assert isinstance(sip, R.Released)
    sip.wipe()
    # the owner's lockout authorization clears it (Part 3 §25.2)
    tpm.dictionary_attack_lock_reset()
    res = R.release(tpm, meta, pin=S.PIN, names=[S.USER])
    assert isinstance(res, R.Released) and bytes(res.get(S.USER)) == S.USER_SECRET
    res.wipe()


def test_da_state_as_the_console_reports_it(device) -> None:  # type: ignore[no-untyped-def]
    """firmware.secrets.da.state (the console's `status` "da" and `pin` answer) on a real TPM:
    TPM_PT_LOCKOUT_COUNTER and TPMA_PERMANENT.inLockout move with wrong PINs (Part 2 §6.13, §8.6)."""
    tpm, meta = device
    assert da.state(tpm) == {"counter": 0, "max_tries": 5, "recovery_s": 600,
                             "lockout_recovery_s": 86400, "in_lockout": False}
    for i in range(5):
        assert isinstance(R.release(tpm, meta, pin=b"11111%d" % i, names=[S.USER]), R.PinFailure)
        st = da.state(tpm)
        assert st["counter"] == i + 1 == S.lockout_counter(tpm)
        assert st["in_lockout"] is (i == 4)
    tpm.dictionary_attack_lock_reset()
    assert da.state(tpm)["counter"] == 0 and da.state(tpm)["in_lockout"] is False


def test_clean_power_cycle_keeps_the_counter(device) -> None:  # type: ignore[no-untyped-def]
    tpm, meta = device
    assert isinstance(R.release(tpm, meta, pin=b"999999", names=[S.USER]), R.PinFailure)
    assert S.lockout_counter(tpm) == 1
    ok = R.release(tpm, meta, pin=S.PIN, names=[S.USER])  # a DA-protected use in this boot
    assert isinstance(ok, R.Released)
    ok.wipe()
    S.boot(tpm, GOLDEN, clean=True)
    assert S.lockout_counter(tpm) == 1
    assert isinstance(R.release(tpm, meta), R.Released)


def test_unclean_reset_counts_one_failure(device) -> None:  # type: ignore[no-untyped-def]
    tpm, meta = device
    ok = R.release(tpm, meta, pin=S.PIN, names=[S.USER])
    assert isinstance(ok, R.Released)
    ok.wipe()
    assert S.lockout_counter(tpm) == 0
    S.boot(tpm, GOLDEN, clean=False)  # power lost without TPM2_Shutdown
    assert S.lockout_counter(tpm) == 1
    # swtpm (libtpms, USE_DA_USED) counts an unclean reset only when a DA-protected object was
    # used since start-up: a boot that used none costs nothing even when cut off
    S.boot(tpm, GOLDEN, clean=False)
    assert S.lockout_counter(tpm) == 1
