# mypy: disable-error-code="no-untyped-call"
"""The console's `pin` end to end on the host's swtpm, without QEMU: the real PhoneDevice (store
and state file in a run directory, the TPM over swtpm's socket) behind the real console core.
The user secret the TPM releases is wiped before the answer is printed; the answers carry
metadata only; the DA counts are the TPM's. (Through the booted image:
tests/system/test_sealing_pin.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from firmware.console.core import Console
from firmware.console.phone import PhoneDevice
from firmware.secrets import hook, store
from host_tools.provision import core
from tests.tpm import test_secrets_support as S
from tests.tpm.helpers import connect

GOLDEN = S.make_reference()


@pytest.fixture
def phone(fresh_swtpm, tmp_path: Path) -> Iterator[PhoneDevice]:  # type: ignore[no-untyped-def]
    tpm = connect(fresh_swtpm.uri)
    meta = S.provision(tpm, GOLDEN, da=core.DaParameters(max_tries=5, recovery_time=600))
    S.boot(tpm, GOLDEN)
    tpm.transport.close()  # swtpm serves one connection: the device opens its own
    (tmp_path / hook.STORE_COPY).write_bytes(store.pack(meta))
    (tmp_path / "state.json").write_text(json.dumps(
        {"state": "running", "bundle_version": "1.0.0", "components": S.measured(GOLDEN)}))
    dev = PhoneDevice(run_dir=str(tmp_path), tpm_device=fresh_swtpm.uri)
    dev.release_credentials()
    yield dev
    hook.forget()
    dev.tpm().transport.close()


def _answer(con: Console, line: str, out: list[str]) -> dict[str, Any]:
    text, _ = con.handle(line.encode())
    out.append(text)
    obj: dict[str, Any] = json.loads(text)
    return obj


def test_pin_unlocks_wipes_and_counts_wrong_pins(phone: PhoneDevice, monkeypatch: pytest.MonkeyPatch) -> None:
    released = []
    real_unlock = hook.unlock

    def spy(*args: Any, **kwargs: Any) -> Any:  # keeps what the TPM released, to look at it later
        res = real_unlock(*args, **kwargs)
        released.append(res[0])
        return res

    monkeypatch.setattr(hook, "unlock", spy)
    con = Console(phone)
    out: list[str] = []
    st = _answer(con, "status", out)
    assert st["unsealed"] is True and st["da"]["counter"] == 0, st
    ok = _answer(con, "pin " + S.PIN.decode(), out)
    assert ok == {"unlocked": True, "name": "user-secret", "length": len(S.USER_SECRET),
                  "da": {"counter": 0, "max_tries": 5, "recovery_s": 600,
                         "lockout_recovery_s": 86400, "in_lockout": False}}, ok
    # the TPM really released it, and it was overwritten before the answer went out
    assert released[0] is not None and released[0].names() == []
    for i in range(5):
        r = _answer(con, "pin 00000%d" % i, out)
        assert r["state"] == "pin-refused" and r["tpm_rc"] == "0x98e", r
        assert r["da"]["counter"] == i + 1 and r["da"]["in_lockout"] is (i == 4)
    r = _answer(con, "pin " + S.PIN.decode(), out)
    assert r["state"] == "locked-out" and r["tpm_rc"] == "0x921" and r["da"]["in_lockout"], r
    assert released[1:] == [None] * 6
    text = "".join(out)
    assert S.PIN.decode() not in text and S.USER_SECRET.decode() not in text
    assert S.SIP_PASSWORD not in text
    # the boot-time release (SIP account) is untouched by the PIN's lockout
    assert _answer(con, "status", out)["unsealed"] is True


def test_pin_on_a_refused_bundle_never_asks_the_tpm(phone: PhoneDevice, tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"state": "refused", "reason": "bad signature"}))
    dev = PhoneDevice(run_dir=str(tmp_path), tpm_device=phone.tpm_device)
    dev._tpm = phone.tpm()  # one swtpm connection for both
    dev.release_credentials()
    r = _answer(Console(dev), "pin " + S.PIN.decode(), [])
    assert r["unlocked"] is False and r["state"] == "unavailable", r
    assert "stage loader refused" in r["reason"]
    assert r["da"]["counter"] == 0, r
