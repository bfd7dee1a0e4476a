"""UKI banks (issue 11) on the real image under QEMU + OVMF (Secure Boot) + swtpm: bank b is
EFI/phone/uki-b.efi on the same ESP. The host plants the SAME signed UKI there (mtools), adds a
Boot#### for it (Hard Drive + File device path, written with virt-firmware, not our encoder) and
sets BootNext in the device's own variable store; the device then reports from BootCurrent
(firmware/boot/uki_banks.py through efivarfs) that it booted bank b, its credentials still unseal
(same UKI: same Authenticode digest in PCR 4; the boot variables are PCR 1, outside the policy),
and the boot after that is bank a again: the firmware deleted BootNext before using it.

The device-side writers (ensure_entry, set_boot_next, make_default on efivarfs) have no console
path yet (the lead's broker operations): they are unit-tested on a dict store."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from host_tools.qemu import uefivars
from tests.system.sealing_support import SealedDevice

pytestmark = pytest.mark.slow

BANK_A = "EFI/BOOT/BOOTX64.EFI"
BANK_B = "EFI/phone/uki-b.efi"
MTOOLS_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1")


@pytest.fixture(scope="module")
def device(built_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealedDevice]:
    d = SealedDevice(built_image, tmp_path_factory.mktemp("uki-banks"), name="uki-banks")
    d.provision()
    yield d


def esp_partition(disk: Path) -> tuple[int, int, int, str]:
    """(number, start LBA, size LBA, partition GUID) of the GPT partition named "esp", from
    sfdisk (an independent reader)."""
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    assert table["sectorsize"] == 512
    for i, p in enumerate(table["partitions"]):
        if p.get("name") == "esp":
            assert p["node"].endswith(str(i + 1))
            return i + 1, p["start"], p["size"], p["uuid"].lower()
    raise AssertionError(f"no esp partition in {table}")


def mtools(disk: Path, offset: int, *args: str) -> None:
    img = f"{disk}@@{offset}"
    subprocess.run([args[0], "-i", img, *args[1:]], check=True, env=MTOOLS_ENV,
                   capture_output=True)


def boot(device: SealedDevice) -> dict[str, Any]:
    st, _console = device.boot_status()
    return st


def assert_unsealed(st: dict[str, Any]) -> None:
    assert st["state"] == "running", st
    assert st["unsealed"] is True and st["credentials_state"] == "unsealed", st


def test_factory_boot_reports_bank_a(device: SealedDevice) -> None:
    st = boot(device)
    assert_unsealed(st)
    uki = st["uki"]
    assert uki["bank"] == "a", uki
    assert uki["boot_current"] and uki["boot_current"].startswith("Boot"), uki
    assert "esp_error" not in uki, uki
    # what OVMF booted: its auto-created entry for the disk (no File node: the removable path)
    assert uki["reason"] == f"{uki['boot_current']} has no file path: the removable path", uki


def test_boot_next_boots_bank_b_and_unseals(device: SealedDevice, tmp_path: Path) -> None:
    disk = device.device.disk
    number, start, size, guid = esp_partition(disk)
    offset = start * 512
    uki = tmp_path / "bank-a.efi"
    mtools(disk, offset, "mcopy", f"::/{BANK_A}", str(uki))
    assert uki.read_bytes() == (device.image / "BOOTX64.EFI").read_bytes()  # the signed UKI
    mtools(disk, offset, "mmd", "::/EFI/phone")
    mtools(disk, offset, "mcopy", str(uki), f"::/{BANK_B}")
    entry = uefivars.add_gpt_file_entry(device.device.vars, "test: UKI bank b",
                                        (number, start, size, guid),
                                        "\\" + BANK_B.replace("/", "\\"))
    assert uefivars.variable_data(device.device.vars, "BootNext") == entry.to_bytes(2, "little")

    st = boot(device)
    assert st["uki"] == {"bank": "b", "boot_current": "Boot%04X" % entry,
                         "reason": "Boot%04X boots \\EFI\\phone\\uki-b.efi" % entry}, st["uki"]
    assert_unsealed(st)  # the same UKI from path b: the same policy PCRs
    # OVMF deleted BootNext before booting the entry (UEFI 2.10 §3.1.2); the entry stays
    assert uefivars.variable_data(device.device.vars, "BootNext") is None
    assert uefivars.variable_data(device.device.vars, "Boot%04X" % entry) is not None


def test_after_the_trial_boot_bank_a_again(device: SealedDevice) -> None:
    st = boot(device)
    assert st["uki"]["bank"] == "a", st["uki"]
    assert_unsealed(st)
