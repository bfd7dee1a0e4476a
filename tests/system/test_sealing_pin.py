"""The PIN-bound user secret through the real image (QEMU + OVMF + swtpm, the console's `pin`):

* wrong PINs lock the TPM out after the provisioned 5 tries (TPM_RC_AUTH_FAIL, then
  TPM_RC_LOCKOUT even for the right PIN), and a clean power cycle (`poweroff`: TPM2_Shutdown)
  keeps the lockout;
* a clean power cycle leaves the DA counter alone; an unclean reset (QEMU killed with a PIN used
  in that boot) counts one failure (libtpms USE_DA_USED, docs/sealing.md "PIN guessing");
* a store copied from another device's flash is refused on this device: it names the other
  device's persistent SRK (its Name), so nothing is loaded (with the SRK reference stripped the
  TPM itself refuses the fixedTPM blobs: TPM2_Load TPM_RC_INTEGRITY,
  tests/tpm/test_secrets_release.py), and it costs no PIN guess.

The counts are the TPM's own (status/pin "da": TPM_PT_LOCKOUT_COUNTER, TPMA_PERMANENT.inLockout,
firmware/secrets/da.py). Two devices provisioned separately (own swtpm state, own flash);
five boots in all."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from host_tools.console import Console
from host_tools.provision import disk
from tests.system.sealing_support import PIN, USER_SECRET, SealedDevice, assert_no_secret

pytestmark = pytest.mark.slow

RIGHT = PIN.decode()
WRONG = ["%06d" % (100001 + 111 * i) for i in range(5)]
DA_PROVISIONED = {"max_tries": 5, "recovery_s": 600, "lockout_recovery_s": 86400}
TPM_RC_AUTH_FAIL = "0x98e"   # with the session bits of session 1 (DESIGN.md, TPM trials)
TPM_RC_LOCKOUT = "0x921"


@pytest.fixture(scope="module")
def devices(built_image: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[SealedDevice, SealedDevice]]:
    base = tmp_path_factory.mktemp("sealing-pin")
    a = SealedDevice(built_image, base / "a", "pin-a")
    b = SealedDevice(built_image, base / "b", "pin-b")
    a.provision()
    b.provision()
    yield a, b


class Session:
    """One boot's console: sends commands, keeps what was typed (for assert_no_secret)."""

    def __init__(self, con: Console) -> None:
        self.con = con
        self.typed: list[str] = []

    def status(self) -> dict[str, Any]:
        self.typed.append("status")
        return self.con.status()

    def pin(self, pin: str) -> dict[str, Any]:
        line = f"pin {pin}"
        self.typed.append(line)
        text = self.con.command(line).strip()
        assert pin not in text, f"the firmware echoed the PIN: {text!r}"
        obj = json.loads(text)
        assert isinstance(obj, dict), text
        return obj

    def command(self, line: str) -> str:
        self.typed.append(line)
        return self.con.command(line).strip()


def _da(counter: int, in_lockout: bool) -> dict[str, Any]:
    return dict(DA_PROVISIONED, counter=counter, in_lockout=in_lockout)


def _check_log(dev: SealedDevice, s: Session) -> None:
    assert_no_secret(dev.console_text(), dev.device.disk.read_bytes(), s.typed)


def test_wrong_pins_lock_out_and_a_clean_power_cycle_keeps_the_lockout(
        devices: tuple[SealedDevice, SealedDevice]) -> None:
    a, _ = devices
    t0 = time.monotonic()
    with a.booted() as con:
        s = Session(con)
        st = s.status()
        assert st["unsealed"] is True and st["credentials_state"] == "unsealed", st
        assert st["da"] == _da(0, False), st["da"]
        ok = s.pin(RIGHT)
        assert ok == {"unlocked": True, "name": "user-secret", "length": len(USER_SECRET),
                      "da": _da(0, False)}, ok
        # malformed input never reaches the TPM: one error line, no try spent
        for bad in ("pin", "pin 12", "pin 12ab56", "pin 1234 5678"):
            assert s.command(bad).startswith("error: pin"), bad
        for i, wrong in enumerate(WRONG):
            r = s.pin(wrong)
            assert r["unlocked"] is False and r["state"] == "pin-refused", r
            assert r["tpm_rc"] == TPM_RC_AUTH_FAIL and "wrong PIN" in r["reason"], r
            assert r["da"] == _da(i + 1, i + 1 == 5), r["da"]
        r = s.pin(RIGHT)
        assert r["unlocked"] is False and r["state"] == "locked-out", r
        assert r["tpm_rc"] == TPM_RC_LOCKOUT and "lockout" in r["reason"], r
        assert r["da"] == _da(5, True), r["da"]
        st = s.status()
        # the SIP account's policy has no auth value: a PIN lockout does not seal it
        assert st["unsealed"] is True and st["da"] == _da(5, True), st
    _check_log(a, s)
    t1 = time.monotonic()

    with a.booted() as con:  # `poweroff` above sent TPM2_Shutdown: a clean power cycle
        s = Session(con)
        st = s.status()
        assert st["da"] == _da(5, True), st["da"]
        r = s.pin(RIGHT)
        assert r["unlocked"] is False and r["state"] == "locked-out", r
        assert r["tpm_rc"] == TPM_RC_LOCKOUT and r["da"] == _da(5, True), r
    _check_log(a, s)
    print(f"lockout boot {t1 - t0:.1f} s, power-cycled boot {time.monotonic() - t1:.1f} s")


def test_unclean_reset_counts_one_failure_and_a_copied_store_is_refused(
        devices: tuple[SealedDevice, SealedDevice]) -> None:
    a, b = devices
    t0 = time.monotonic()
    with b.booted() as con:
        s = Session(con)
        assert s.status()["da"] == _da(0, False)
        r = s.pin(WRONG[0])
        assert r["state"] == "pin-refused" and r["da"] == _da(1, False), r
    _check_log(b, s)

    with b.booted(clean=False) as con:
        s = Session(con)
        assert s.status()["da"] == _da(1, False)  # the clean power cycle kept the count
        # a DA-protected use in this boot: libtpms counts an unclean reset only after one
        ok = s.pin(RIGHT)
        assert ok["unlocked"] is True and ok["da"] == _da(1, False), ok
    # QEMU was killed with the phone running: no `poweroff`, no TPM2_Shutdown
    assert "powering off" not in b.console_text()
    _check_log(b, s)

    # device A's sealed store (its data partition) copied into B's flash
    offset, size = disk.find_partition(b.device.disk)
    a_store = disk.read_partition(a.device.disk)
    assert len(a_store) == size and a_store != disk.read_partition(b.device.disk)
    with b.device.disk.open("r+b") as f:
        f.seek(offset)
        f.write(a_store)
    with b.booted() as con:
        s = Session(con)
        st = s.status()
        assert st["da"] == _da(2, False), st["da"]  # the unclean reset cost one try
        assert st["unsealed"] is False and st["state"] == "integrity-failed", st
        assert st["credentials_state"] == "integrity-failed", st
        # A's store names A's persistent SRK (its Name); B's SRK at that handle is another key
        assert "the storage root key at 0x81000001 is not the one the store was sealed under" \
            in st["unsealed_reason"], st
        assert "sealed on another TPM" in st["unsealed_reason"], st
        r = s.pin(RIGHT)
        assert r["unlocked"] is False and r["state"] == "integrity-failed", r
        assert "sealed on another TPM" in r["reason"], r
        assert r["da"] == _da(2, False), r["da"]  # refused before any authorization
    _check_log(b, s)
    print(f"three boots of device B: {time.monotonic() - t0:.1f} s")
