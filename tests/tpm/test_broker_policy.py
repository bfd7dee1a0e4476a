# mypy: disable-error-code="no-untyped-call"
"""A signed PCR policy delivered over SMP, end to end on the host's swtpm without QEMU: the stock
MCUmgr client (smpclient's file upload, group 8) -> the phone's SMP server and PolicyFiles (the
device's code behind a pty, tests/interop/smp_device.py) -> the broker channel (a real
SOCK_SEQPACKET socketpair) -> the root broker's `policy_install` (firmware/boot/broker_policy.py)
-> the TPM's signature check -> the store on a file standing in for the data partition. Then the
new image's boot unseals with it. Bad files are refused with their reason and the store's bytes
stay the same. (On the booted image: tests/system/test_flash_policy.py.)"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from smpclient import SMPClient
from smpclient.exceptions import SMPUploadError
from smpclient.transport.serial import SMPSerialTransport

from firmware.boot import broker, broker_io, broker_policy
from firmware.console.tpm_broker import BrokerChannel
from firmware.secrets import hook, release, store
from firmware.update.flash_dir import FileSink
from firmware.update.policy_upload import PolicyFiles
from host_tools.provision import reference
from host_tools.update import policy_file, policy_key
from tests.interop.smp_device import PtyDevice
from tests.tpm import test_secrets_support as S
from tests.tpm.helpers import connect

V1 = S.make_reference()
V2 = S.make_reference("2.0.0", 2, app="phone-app code v2")


class Phone:
    def __init__(self, tpm: Any, data: Path, dev: PtyDevice, channel: BrokerChannel, log: list[str]) -> None:
        self.tpm, self.data, self.dev, self.channel, self.log = tpm, data, dev, channel, log


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


VENDOR_POLICY_KEY = _key()


@pytest.fixture
def phone(fresh_swtpm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Phone]:  # type: ignore[no-untyped-def]
    tpm = connect(fresh_swtpm.uri)
    meta = S.provision(tpm, V1, mode=store.POLICY_AUTHORIZED, key=VENDOR_POLICY_KEY)
    S.boot(tpm, V1)
    data = tmp_path / "phone-data"  # the data partition: the store at 0, zeros to 2 MiB
    data.write_bytes(store.pack(meta) + bytes((2 << 20) - len(store.pack(meta))))
    monkeypatch.setenv("PHONE_DATA_DEV", str(data))
    run = tmp_path / "run"
    (run / "upload").mkdir(parents=True)
    broker_end, phone_end = broker_io.channel()
    log: list[str] = []
    t = threading.Thread(target=broker_io.serve, args=(
        broker_end, broker.Broker(broker_io.TpmOps(tpm, str(run), hook)), log.append), daemon=True)
    t.start()
    channel = BrokerChannel(phone_end)
    files = PolicyFiles(lambda: FileSink(str(run / broker_policy.STAGED_NAME)),
                        lambda n, sha: channel.call("policy_install", length=n, sha=sha))
    dev = _pty(tmp_path, files)
    yield Phone(tpm, data, dev, channel, log)
    dev.close()
    phone_end.close()
    t.join(10)
    hook.forget()
    tpm.transport.close()


def _pty(tmp_path: Path, files: PolicyFiles) -> PtyDevice:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    pem = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "banks").mkdir()
    return PtyDevice(tmp_path / "banks", pem, "qemu-x86_64", 1, files=files)


def _file(doc: dict[str, Any] | None = None, key: Any = None) -> dict[str, Any]:
    return doc or policy_file.build(reference.parse(V2), key or VENDOR_POLICY_KEY)


def _upload(dev: PtyDevice, data: bytes, name: str = "/policy/2.0.0.json") -> list[int]:
    async def go() -> list[int]:
        c = SMPClient(SMPSerialTransport(), dev.path)
        await c.connect()
        try:
            return [off async for off in c.upload_file(data, name)]
        finally:
            await c.disconnect()
    out: list[int] = asyncio.run(asyncio.wait_for(go(), 60))
    return out


def test_smpclient_file_upload_adds_the_entry_and_the_new_image_unseals(phone: Phone) -> None:
    data = policy_file.dumps(_file())
    assert _upload(phone.dev, data)[-1] == len(data)
    meta = store.read_file(str(phone.data))
    assert [s["anti_rollback"] for s in meta["authorized"]["signed"]] == [1, 2]  # v1 kept
    assert meta["image_version"] == "2.0.0"
    assert any("signed PCR policy for version 2.0.0 (anti-rollback 2) added" in e
               for e in phone.dev.seen_events)
    S.boot(phone.tpm, V2)  # the new image's measurements
    res = release.release(phone.tpm, meta, measured=S.measured(V2))
    assert res.unsealed and res.version == 2
    res.wipe()


def _tampered_signature(doc: dict[str, Any]) -> None:
    s = bytearray.fromhex(doc["entry"]["s"])
    s[-1] ^= 1
    doc["entry"]["s"] = s.hex()


def _older(doc: dict[str, Any]) -> None:
    doc.update(policy_file.build(reference.parse(S.make_reference("0.9.0", 0)), VENDOR_POLICY_KEY))


def _other_key(doc: dict[str, Any]) -> None:
    other = _key()
    doc.update(policy_file.build(reference.parse(V2), other))
    doc["key"] = policy_key.tpm_public(VENDOR_POLICY_KEY).hex()  # claims the device's key


CASES = [
    ("signature", _tampered_signature, "policy signature does not verify with this device's policy key"),
    ("board", lambda d: d.update(board="qemu-aarch64"), "policy is for board 'qemu-aarch64', this is 'qemu-x86_64'"),
    ("older", _older, "policy version 0 is older than this device's newest signed policy (1)"),
    ("key", _other_key, "policy signature does not verify with this device's policy key"),
    ("approved", lambda d: d["entry"].update(expected=V1["pcrs"]["sha256"]),
     "policy entry's approved digest does not match its PCRs and version"),
    ("nv", lambda d: d.update(nv_name="000b" + "00" * 32),
     "policy is bound to another anti-rollback NV index than this device's"),
    ("form", lambda d: d["entry"].pop("r"), "policy file: entry must have exactly"),
    ("json", None, "policy file is not UTF-8 JSON"),
]


@pytest.mark.parametrize("case,change,why", CASES, ids=[c[0] for c in CASES])
def test_a_bad_policy_is_refused_with_its_reason_and_the_store_unchanged(phone: Phone, case: str,
                                                                         change: Any, why: str) -> None:
    before = phone.data.read_bytes()
    if change is None:
        data = b"{not json"
    else:
        doc = _file()
        change(doc)
        data = policy_file.dumps(doc)
    with pytest.raises(SMPUploadError):
        _upload(phone.dev, data)
    assert phone.data.read_bytes() == before
    assert any(e.startswith("policy refused: ") and why in e for e in phone.dev.seen_events), \
        phone.dev.seen_events
    assert any(why in line for line in phone.log)


def test_only_policy_names_are_taken(phone: Phone) -> None:
    before = phone.data.read_bytes()
    with pytest.raises(SMPUploadError):
        _upload(phone.dev, policy_file.dumps(_file()), "/etc/passwd")
    assert phone.data.read_bytes() == before
    assert any("this phone takes only /policy/<version>.json" in e for e in phone.dev.seen_events)
