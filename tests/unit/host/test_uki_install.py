"""The root broker's UKI install (firmware/boot/broker_uki.py UkiOps.install) with the real UKI
package and delta code (firmware/update/uki_package.py): a staged full package or a delta against
the running UKI lands in the inactive bank exactly as signed; a delta against another UKI, a
downgrade and a tampered payload are refused with their IMG_MGMT_ERR codes and the bank is never
made bootable. The ESP stands in as a directory of bank files (the UEFI side, uki_env, is built
elsewhere); the slot record is the real one (firmware/update/uki_slots.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.boot import broker_uki, pe_osrel, signature
from firmware.update import slots as S
from firmware.update import uki_package as U
from firmware.update import uki_slots
from firmware.update import upload as up
from host_tools.image import uki_delta, uki_package
from tests.unit.firmware.test_update_slots import MemFlash
from tests.unit.host.test_image_uki_package import NEW, OLD

BOARD = "qemu-x86_64"
VENDOR = Ed25519PrivateKey.generate()
VERIFY = signature.openssl_verifier(VENDOR.public_key().public_bytes_raw())


class DirEnv:
    """The ESP's bank files (bank a: the factory UKI)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, bank: str) -> bytes:
        return (self.root / bank).read_bytes()

    def write(self, bank: str, data: bytes) -> None:
        (self.root / bank).write_bytes(data)

    @staticmethod
    def version_of(data: bytes) -> str:
        return pe_osrel.image_version(data) or "?"


def device(tmp_path: Path) -> tuple[broker_uki.UkiOps, Path, list[str]]:
    (tmp_path / "a").write_bytes(OLD)
    parent = S.Slots(MemFlash(), S.initial("a", "0.1.0", 1, b"\x01" * 32))
    logs: list[str] = []
    ops = broker_uki.UkiOps(uki_slots.UkiSlots(parent), DirEnv(tmp_path), VERIFY, BOARD,
                            str(tmp_path / "staged"), logs.append)
    return ops, tmp_path, logs


def install(ops: broker_uki.UkiOps, root: Path, package: bytes, floor: int = 1) -> dict[str, object]:
    (root / "staged").write_bytes(package)
    out: dict[str, object] = ops.install(len(package), hashlib.sha256(package).hexdigest(), floor)
    return out


def full(counter: int = 2) -> bytes:
    return uki_package.build_package(VENDOR, BOARD, "0.2.0", counter, NEW)


@pytest.mark.parametrize("kind", ["full", "delta"])
def test_package_installs_the_signed_uki_into_bank_b(tmp_path: Path, kind: str) -> None:
    ops, root, logs = device(tmp_path)
    pkg = full() if kind == "full" else uki_delta.make_delta(full(), OLD)
    assert install(ops, root, pkg) == {"version": "0.2.0", "counter": 2, "bank": "b"}
    assert (root / "b").read_bytes() == NEW
    assert ops.has(hashlib.sha256(NEW).digest())
    assert logs[-1] == "broker: UKI bank b holds version 0.2.0, verified, bootable"


def test_refusals_carry_their_codes_and_leave_no_bootable_bank(tmp_path: Path) -> None:
    other_base = OLD[:-1] + b"\x01"
    man, sig, _, _ = U.split(full())
    tampered = uki_package.pack(man, sig, U.FULL_NAME, NEW[:-1] + b"\x01")
    wrong_delta = uki_package.pack(man, sig, U.DELTA_NAME, uki_delta.delta_payload(NEW[:-1] + b"\x01", OLD))
    cases = [
        (uki_delta.make_delta(full(), other_base), up.IMG_INVALID_IMAGE_HEADER,
         "the base UKI is not the delta's"),
        (full(counter=1), up.IMG_CURRENT_VERSION_IS_NEWER,
         "anti-rollback: UKI package counter 1 is below this device's floor 2"),
        (tampered, up.IMG_INVALID_IMAGE_HEADER, "uki.efi: sha256 differs from the signed manifest"),
        (wrong_delta, up.IMG_INVALID_HASH, "rebuilt UKI: sha256 differs from the signed manifest"),
    ]
    for pkg, rc, words in cases:
        ops, root, _ = device(tmp_path)
        with pytest.raises(up.UploadRefused) as e:
            install(ops, root, pkg, floor=2)
        assert e.value.rc == rc and words in e.value.reason, e.value.reason
        assert not (root / "b").exists()
        assert ops.slots.rec["banks"]["b"]["state"] != S.BOOTABLE
