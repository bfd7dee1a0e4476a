"""The device's side of A/B updates on files standing in for its partitions: the slot record's two
copies on the data partition (firmware/update/partition_flash.py), the loader's bank choice
before measuring (firmware/boot/slot_boot.py), and the broker's slot operations over the real
request/answer encoding (firmware/boot/broker.py + broker_slots.py) driven by the phone's SMP
server through BrokerBackend (firmware/update/brokered.py): the staged upload is checked again
by root before it reaches a bank; refusals leave the inactive bank's bytes untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.boot import broker, broker_io, broker_slots, signature, slot_boot
from firmware.smp import cbor
from firmware.smp import header as H
from firmware.smp.server import SmpServer
from firmware.update import partition_flash as PF
from firmware.update import slots as S
from firmware.update.brokered import BrokerBackend
from firmware.update.upload import Upload
from host_tools.image import bundle as B

BOARD = "qemu-x86_64"
BANK = 1 << 20
VENDOR = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()


def make_bundle(version: str, counter: int, board: str = BOARD,
                key: Ed25519PrivateKey = VENDOR) -> bytes:
    comps = [B.Component("phone-app", version, bytes([counter]) * 30000),
             B.Component("config", version, json.dumps({"v": version}).encode())]
    man = B.manifest(board, version, counter, comps)
    return B.pack(man, B.sign(key, man), comps)


def verifier() -> Any:
    pem = VENDOR.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return signature.openssl_verifier(signature.raw_public_key(pem))


class FakeFloorTpm:
    """Only the anti-rollback NV bits (TPM_NT_BITS: set bits only OR in)."""

    def __init__(self) -> None:
        self.bits = 0

    def nv_read_u64(self, index: int) -> int:
        return self.bits

    def nv_set_bits(self, index: int, bits: int) -> None:
        self.bits |= bits


def partitions(tmp: Path, factory: bytes) -> PF.PartitionFlash:
    for name, data in (("a", factory), ("b", b""), ("data", b"")):
        (tmp / name).write_bytes(data + bytes(BANK - len(data)) if name != "data" else bytes(2 * BANK))
    return PF.PartitionFlash({"a": str(tmp / "a"), "b": str(tmp / "b")}, str(tmp / "data"))


def test_record_copies_alternate_and_a_torn_copy_falls_back(tmp_path: Path) -> None:
    flash = partitions(tmp_path, b"")
    assert flash.load_state() is None
    flash.save_state(b'{"n":1}')
    flash.save_state(b'{"n":2}')
    assert flash.load_state() == b'{"n":2}'
    raw = bytearray((tmp_path / "data").read_bytes())
    # the newer copy (sequence 1; the first save is 0) went to the second area; tear it: the first one is used
    assert PF.decode_copy(raw[PF.RECORD_OFFSET + PF.RECORD_COPY:][:PF.RECORD_COPY]) == (1, b'{"n":2}')
    raw[PF.RECORD_OFFSET + PF.RECORD_COPY + PF.HEAD] ^= 1
    (tmp_path / "data").write_bytes(bytes(raw))
    assert flash.load_state() == b'{"n":1}'
    flash.save_state(b'{"n":3}')  # overwrites the torn copy, not the good one
    assert flash.load_state() == b'{"n":3}'


def test_fresh_device_boots_bank_a_and_the_record_is_saved_before_booting(tmp_path: Path) -> None:
    factory = make_bundle("1.0.0", 1)
    flash = partitions(tmp_path, factory)
    bank, slots, note = slot_boot.choose_bank(flash, print)
    assert (bank, note) == ("a", None)
    info = slots.rec["banks"]["a"]
    assert (info["version"], info["counter"]) == ("1.0.0", 1)
    assert info["hash"] == hashlib.sha256(factory).hexdigest()  # tarfile pads to its record
    assert S.parse(flash.load_state())["confirmed"] == "a"


class Direct:
    """The phone's BrokerChannel, with the broker's handle() in place of the socket."""

    def __init__(self, core: broker.Broker) -> None:
        self.core = core

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        answer, _ = self.core.handle(broker.request(op, **fields))
        return broker.parse_answer(answer)


def device(tmp_path: Path) -> tuple[SmpServer, broker_slots.SlotOps, FakeFloorTpm, PF.PartitionFlash]:
    flash = partitions(tmp_path, make_bundle("1.0.0", 1))
    _, slots, _ = slot_boot.choose_bank(flash, print)
    tpm = FakeFloorTpm()
    tpm.nv_set_bits(0, 1)  # floor 1
    staged = str(tmp_path / "staged.bundle")
    ops = broker_slots.SlotOps(slots, verifier(), BOARD, 14, tpm, staged)
    core = broker.Broker(broker_io.TpmOps(tpm, str(tmp_path), None, ops))
    backend = BrokerBackend(Direct(core), staged)

    def new_upload(sink: object, n: int, sha: bytes | None) -> Upload:
        return Upload(sink, n, sha, verifier(), BOARD, 1, backend.capacity(), 14)
    return SmpServer(backend, new_upload), ops, tpm, flash


def smp(server: SmpServer, group: int, command: int, body: dict[str, Any], write: bool = True
        ) -> dict[str, Any]:
    payload = cbor.encode(body)
    req = H.Header(H.OP_WRITE if write else H.OP_READ, H.V2, 0, len(payload), group, 1, command)
    answer = server.handle(req.pack() + payload)
    assert answer is not None
    out = cbor.decode(answer[H.SIZE:])
    assert isinstance(out, dict)
    return out


def upload(server: SmpServer, image: bytes) -> dict[str, Any]:
    off, last = 0, {}
    sha = hashlib.sha256(image).digest()
    while off < len(image):
        body: dict[str, Any] = {"off": off, "data": image[off:off + 1500]}
        if off == 0:
            body.update({"len": len(image), "sha": sha, "image": 0})
        last = smp(server, H.GROUP_IMAGE, H.IMG_UPLOAD, body)
        if "off" not in last:
            return last
        off = last["off"]
    return last


def test_upload_through_the_broker_test_boot_confirm_raises_the_floor(tmp_path: Path) -> None:
    server, ops, tpm, flash = device(tmp_path)
    new = make_bundle("1.1.0", 2)
    assert upload(server, new).get("match") is True
    assert flash.read_bundle("b")[:len(new)] == new
    sha = hashlib.sha256(new).digest()
    st = smp(server, H.GROUP_IMAGE, H.IMG_STATE, {"hash": sha, "confirm": False})
    assert [i.get("pending", False) for i in st["images"]] == [False, True]
    # the next boot: the loader's choice on the saved record
    bank, slots, note = slot_boot.choose_bank(flash, print)
    assert bank == "b" and note and "trial boot of bank b" in note
    assert slot_boot.summary(slots.rec)["trial"] is True
    ops2 = broker_slots.SlotOps(slots, verifier(), BOARD, 14, tpm, ops.staged_path)
    out = broker_io.TpmOps(tpm, str(tmp_path), None, ops2).slot_state(None, True)
    assert out["confirmed_counter"] == 2 and "floor_error" not in out
    assert tpm.bits == 0b11  # floor 2: counters 0 and 1 revoked only now
    assert out["slot"] == {"running": "b", "trial": False, "confirmed": "b", "pending": None,
                           "last": "confirmed bank b (version 1.1.0)", "floor": 2}


def test_trial_never_confirmed_reverts_and_says_why(tmp_path: Path) -> None:
    server, _, tpm, flash = device(tmp_path)
    new = make_bundle("1.1.0", 2)
    upload(server, new)
    smp(server, H.GROUP_IMAGE, H.IMG_STATE, {"hash": hashlib.sha256(new).digest(), "confirm": False})
    assert slot_boot.choose_bank(flash, print)[0] == "b"
    bank, slots, note = slot_boot.choose_bank(flash, print)  # rebooted without confirming
    assert bank == "a"
    assert note == ("reverted to bank a (version 1.0.0): trial image bank b (version 1.1.0) "
                    "was never confirmed")
    assert slot_boot.summary(slots.rec)["last"] == note
    assert tpm.bits == 1  # the floor never moved


@pytest.mark.parametrize("image,why", [
    (make_bundle("0.9.0", 0), "anti-rollback: bundle counter 0 is below this device's floor 1"),
    (make_bundle("1.1.0", 2, board="qemu-aarch64"), "bundle is for board 'qemu-aarch64'"),
    (make_bundle("1.1.0", 2, key=OTHER), "manifest signature does not verify"),
])
def test_refused_before_the_bank_is_written(tmp_path: Path, image: bytes, why: str) -> None:
    server, _, _, flash = device(tmp_path)
    before = flash.read_bundle("b")
    out = upload(server, image)
    assert out["err"]["group"] == H.GROUP_IMAGE
    assert any(why in e for e in server.events), server.events
    assert flash.read_bundle("b") == before


def test_broker_rechecks_the_staged_file(tmp_path: Path) -> None:
    """The phone checks as it stages; root must not trust that: a staged file swapped after the
    phone's checks (a compromised phone) is refused by the broker, the bank untouched."""
    _, ops, _, flash = device(tmp_path)
    good, evil = make_bundle("1.1.0", 2), make_bundle("1.1.0", 2, key=OTHER)
    Path(ops.staged_path).write_bytes(evil)
    core = broker.Broker(broker_io.TpmOps(None, str(tmp_path), None, ops))
    before = flash.read_bundle("b")
    with pytest.raises(broker.BrokerError) as e:
        Direct(core).call("slot_install", length=len(evil), sha=hashlib.sha256(good).hexdigest())
    assert e.value.rc == 22 and e.value.reason == "manifest signature does not verify with the vendor key"
    assert flash.read_bundle("b") == before
    Path(ops.staged_path).write_bytes(good)
    with pytest.raises(broker.BrokerError, match="announced sha"):
        Direct(core).call("slot_install", length=len(good), sha="00" * 32)
    assert ops.slots.rec["banks"]["b"]["state"] != S.BOOTABLE


@pytest.mark.parametrize("req,why", [
    ({"op": "slot_state", "hash": "zz" * 32, "confirm": False}, "hash must be 64 hex digits"),
    ({"op": "slot_state", "hash": None, "confirm": 1}, "confirm must be true or false"),
    ({"op": "slot_erase", "slot": True}, "slot must be 0..3"),
    ({"op": "slot_erase", "slot": 4}, "slot must be 0..3"),
    ({"op": "uki_install", "length": 0, "sha": "00" * 32}, "uki_install: length must be"),
    ({"op": "uki_install", "length": 10, "sha": "00" * 32, "path": "/boot/x.efi"}, "unexpected field"),
    ({"op": "slot_install", "length": 0, "sha": "00" * 32}, "length must be"),
    ({"op": "slot_install", "length": 10, "sha": "00" * 31}, "sha must be 64 hex digits"),
    ({"op": "slot_install", "length": 10, "sha": "00" * 32, "path": "/etc/shadow"},
     "unexpected field"),
])
def test_slot_requests_are_validated(req: dict[str, Any], why: str) -> None:
    with pytest.raises(broker.RequestError, match=why):
        broker.parse_request(json.dumps(req).encode())


class Hook:
    def __init__(self, unsealed: bool, sip: bool) -> None:
        self.unsealed, self.sip = unsealed, sip

    def status_fields(self) -> dict[str, Any]:
        return {"unsealed": self.unsealed}

    def sip_account(self) -> tuple[str, str] | None:
        return ("alice", "pw") if self.sip else None


class Calls:
    def __init__(self) -> None:
        self.registered = False

    def status(self) -> dict[str, Any]:
        return {"registered": self.registered}


class PhoneStub:
    """What firmware.console.updates.PhoneUpdates reads of the phone (console/phone.py)."""

    def __init__(self, channel: Direct, run_dir: str) -> None:
        self.broker = channel
        self.run_dir = run_dir
        self._hook: Hook | None = None
        self.calls = Calls()

    def _state(self) -> dict[str, Any]:
        return {"anti_rollback_floor": 1, "component_pcr": 14, "slot": {"trial": True}}


def test_trial_confirms_itself_only_when_ready(tmp_path: Path) -> None:
    """Ready = credentials released and, with a SIP account, registered (issue 11 §1): before
    that tick() does nothing and the floor stays; then it confirms through the broker once."""
    from firmware.console.updates import PhoneUpdates
    server, ops, tpm, flash = device(tmp_path)
    new = make_bundle("1.1.0", 2)
    upload(server, new)
    smp(server, H.GROUP_IMAGE, H.IMG_STATE, {"hash": hashlib.sha256(new).digest(), "confirm": False})
    _, slots, _ = slot_boot.choose_bank(flash, print)
    ops = broker_slots.SlotOps(slots, verifier(), BOARD, 14, tpm, ops.staged_path)
    phone = PhoneStub(Direct(broker.Broker(broker_io.TpmOps(tpm, str(tmp_path), None, ops))),
                      str(tmp_path))
    up = PhoneUpdates(phone)
    assert up.tick() is None  # no credentials yet
    phone._hook = Hook(unsealed=False, sip=True)
    assert up.tick() is None and up.ready() == (False, "credentials not released")
    phone._hook = Hook(unsealed=True, sip=True)
    assert up.tick() is None and up.ready() == (False, "not registered")
    assert tpm.bits == 1 and slots.rec["trial"] == "b"
    phone.calls.registered = True
    line = up.tick()
    assert line == ("update: trial image confirmed (ready: credentials released, registered); "
                    "anti-rollback floor raised to 2")
    assert tpm.bits == 0b11 and slots.rec["trial"] is None and slots.rec["confirmed"] == "b"
    assert up.tick() is None and up.floor == 2
    assert up.status()["confirmed"] == "b"


def test_broker_does_not_follow_a_symlink_planted_as_the_staged_file(tmp_path: Path) -> None:
    """The staging directory is the phone's: a compromised phone could make the staged name a
    symlink to a file only root reads (the broker would then read it for the phone, and its
    error reasons would tell something of it). The broker opens the name without following
    links and takes a regular file only."""
    _, ops, _, flash = device(tmp_path)
    secret = tmp_path / "root-only.bundle"
    secret.write_bytes(make_bundle("1.1.0", 2))
    Path(ops.staged_path).symlink_to(secret)
    core = broker.Broker(broker_io.TpmOps(None, str(tmp_path), None, ops))
    before = flash.read_bundle("b")
    with pytest.raises(broker.BrokerError) as e:
        Direct(core).call("slot_install", length=secret.stat().st_size,
                          sha=hashlib.sha256(secret.read_bytes()).hexdigest())
    assert e.value.reason is not None and e.value.reason.startswith("no staged image")
    assert flash.read_bundle("b") == before


def test_loader_chooses_before_measuring_and_falls_back_to_bank_a(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """firmware.boot.__main__.choose_bank on the partitions /init exports: with both banks and
    the data partition, the record decides (and is saved); without bank b, bank a and no slot
    operations (an image from before the second bank)."""
    from firmware.boot import __main__ as loader
    flash = partitions(tmp_path, make_bundle("1.0.0", 1))
    monkeypatch.setattr(loader, "say", lambda line: None)
    monkeypatch.setenv("PHONE_FW_DEV", str(tmp_path / "a"))
    monkeypatch.setenv("PHONE_DATA_DEV", str(tmp_path / "data"))
    monkeypatch.setenv("PHONE_FW_B_DEV", "/dev/missing")
    monkeypatch.setattr("firmware.boot.partitions.find_partition", lambda name, sys_block=None: None)
    assert loader.choose_bank(FakeFloorTpm()) == ("a", None)
    assert flash.load_state() is None  # nothing written without both banks
    monkeypatch.setenv("PHONE_FW_B_DEV", str(tmp_path / "b"))
    bank, ops = loader.choose_bank(FakeFloorTpm())
    assert bank == "a" and ops is not None and ops.slots.rec["confirmed"] == "a"
    assert S.parse(flash.load_state())["running"] == "a"


def test_every_allowed_operation_has_its_method_in_the_broker_process() -> None:
    # an op the request parser lets through but the root process cannot run answered
    # "uki_install failed: AttributeError" on the real image once
    from firmware.boot import broker_io
    missing = [op for op in broker.OPS if not callable(getattr(broker_io.TpmOps, op, None))]
    assert missing == [], missing
