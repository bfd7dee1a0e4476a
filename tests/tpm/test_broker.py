# mypy: disable-error-code="no-untyped-call"
"""The TPM broker end to end on the host's swtpm, without QEMU: the loader side
(firmware.boot.broker_io serving on a real SOCK_SEQPACKET socketpair, in a thread here, a root
process on the device) and the phone side (PhoneDevice with the broker channel, behind the real
console core). The phone process never connects to the TPM; what it asks is answered by the
TPM through the broker; anything else is refused and logged. (On the booted image:
tests/system/test_tpm_privilege.py.)"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from firmware.boot import broker, broker_io
from firmware.console.core import Console
from firmware.console.phone import PhoneDevice
from firmware.console.tpm_broker import BrokerChannel
from firmware.secrets import hook, store
from host_tools.provision import core
from tests.tpm import test_secrets_support as S
from tests.tpm.helpers import connect

GOLDEN = S.make_reference()


class Served:
    def __init__(self, dev: PhoneDevice, log: list[str], channel: BrokerChannel) -> None:
        self.dev, self.log, self.channel = dev, log, channel


@pytest.fixture
def served(fresh_swtpm, tmp_path: Path) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    tpm = connect(fresh_swtpm.uri)
    meta = S.provision(tpm, GOLDEN, da=core.DaParameters(max_tries=5, recovery_time=600))
    S.boot(tpm, GOLDEN)
    (tmp_path / hook.STORE_COPY).write_bytes(store.pack(meta))
    (tmp_path / "state.json").write_text(json.dumps(
        {"state": "running", "bundle_version": "1.0.0", "components": S.measured(GOLDEN)}))
    broker_end, phone_end = broker_io.channel()
    log: list[str] = []
    ops = broker_io.TpmOps(tpm, str(tmp_path), hook)
    ops.release(True)  # the broker unseals first, as after the separator on the device
    t = threading.Thread(target=broker_io.serve, args=(broker_end, broker.Broker(ops), log.append),
                         daemon=True)
    t.start()
    channel = BrokerChannel(phone_end)
    dev = PhoneDevice(run_dir=str(tmp_path), tpm_device="/nonexistent/tpmrm0", broker=channel)
    dev.release_credentials()
    yield Served(dev, log, channel)
    phone_end.close()
    t.join(10)
    hook.forget()
    tpm.transport.close()


def _answer(con: Console, line: str) -> dict[str, Any]:
    text, _ = con.handle(line.encode())
    obj: dict[str, Any] = json.loads(text)
    return obj


def test_phone_gets_credentials_pcrs_and_pin_through_the_broker(served: Served) -> None:
    dev = served.dev
    with pytest.raises(RuntimeError, match="the TPM is the broker's"):
        dev.tpm()
    st = dev.status()
    assert st["unsealed"] is True and st["credentials_state"] == "unsealed"
    assert st["pcr14"] == GOLDEN["pcrs"]["sha256"]["14"]
    assert st["da"]["counter"] == 0
    assert dev._hook is not None and dev._hook.sip_account()[0] == "phone1"
    con = Console(dev)
    assert _answer(con, "pin 000000")["unlocked"] is False
    ans = _answer(con, "pin " + S.PIN.decode())
    assert ans["unlocked"] is True and ans["length"] == len(S.USER_SECRET)
    assert ans["da"]["counter"] == 1  # the wrong PIN above, counted by the TPM
    assert served.log == []


def test_requests_beyond_the_allowed_ones_are_refused_and_logged(served: Served) -> None:
    for req, why in ((b'{"op": "extend", "pcr": 14}', "operation not allowed"),
                     (b'{"op": "dictionary_attack_lock_reset"}', "operation not allowed"),
                     (b'{"op": "unlock", "pin": "12; reset"}', "unlock: the PIN must be 4..16 digits")):
        served.channel.sock.send(req)
        ans = json.loads(served.channel.sock.recv(broker.MAX_ANSWER))
        assert ans == {"ok": False, "error": "refused: " + why}
    assert len(served.log) == 3 and all(line.startswith("broker: refused a request") for line in served.log)
    assert not any("12; reset" in line for line in served.log)


def test_a_refused_bundle_never_reaches_the_tpm(fresh_swtpm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tpm = connect(fresh_swtpm.uri, record=True)
    try:
        ops = broker_io.TpmOps(tpm, str(tmp_path), hook)
        ops.release(False, "component 'phone-app': sha256 differs from the signed manifest")
        b = broker.Broker(ops)
        ans = json.loads(b.handle(b'{"op": "unlock", "pin": "739104"}')[0])
        assert ans == {"ok": True, "unlocked": False, "state": "unavailable",
                       "reason": "component 'phone-app': sha256 differs from the signed manifest"}
        cred = json.loads(b.handle(b'{"op": "credentials"}')[0])
        assert cred["sip"] is None and cred["status"]["unsealed"] is False
        assert tpm.transport.commands == []  # type: ignore[attr-defined]
    finally:
        hook.forget()
        tpm.transport.close()
