"""host_tools.board: what differs between boards is read from board.json (platform, emulator);
both real boards load, a broken description is refused naming the key, and the QEMU command
line of each board comes from its data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from host_tools import board as boards
from host_tools.image.build import BuildError, uki_paths
from host_tools.qemu.device import Device, DeviceConfig, DeviceError

REPO = Path(__file__).resolve().parents[3]


def test_both_boards_load() -> None:
    x86, x86_emu = boards.load("qemu-x86_64")
    a64, a64_emu = boards.load("qemu-aarch64")
    assert (x86.deb_arch, x86.esp_boot_path, x86.uki_name) == (
        "amd64", "EFI/BOOT/BOOTX64.EFI", "BOOTX64.EFI")
    assert (a64.deb_arch, a64.esp_boot_path, a64.uki_name) == (
        "arm64", "EFI/BOOT/BOOTAA64.EFI", "BOOTAA64.EFI")
    assert a64.efi_stub_package == "systemd-boot-efi" and x86.efi_stub_package is None
    assert "tpm_tis" in a64.modules and "tpm_tis" not in x86.modules  # x86: tpm-crb, built in
    assert (x86_emu.tpm_device, a64_emu.tpm_device) == ("tpm-crb", "tpm-tis-device")
    assert (x86_emu.cpu, a64_emu.cpu) == (None, "cortex-a57")
    assert uki_paths(REPO, "qemu-aarch64") == ("BOOTAA64.EFI", "EFI/BOOT/BOOTAA64.EFI")


def _board(tmp_path: Path, edit: Any) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "board" / "qemu-aarch64", repo / "board" / "qemu-aarch64",
                    symlinks=True)
    path = repo / "board" / "qemu-aarch64" / "board.json"
    desc = json.loads(path.read_text())
    edit(desc)
    path.write_text(json.dumps(desc))
    return repo


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.pop("platform"), "board.json: 'platform' must be an object"),
    (lambda d: d["platform"].pop("triplet"), "board.json: 'platform.triplet' must be a non-empty string"),
    (lambda d: d["platform"].update(modules="tpm_tis"), "board.json: 'platform.modules' must be a list of strings"),
    (lambda d: d["platform"]["efi_stub"].update(package=""), "board.json: 'platform.efi_stub.package' must be a package name"),
    (lambda d: d["emulator"].update(cpu=7), "board.json: 'emulator.cpu' must be a CPU model or null"),
    (lambda d: d["emulator"].pop("tpm_device"), "board.json: 'emulator.tpm_device' must be a non-empty string"),
])
def test_broken_description_is_refused_naming_the_key(tmp_path: Path, edit: Any,
                                                      message: str) -> None:
    repo = _board(tmp_path, edit)
    desc = boards.description("qemu-aarch64", repo)
    with pytest.raises(boards.BoardError) as e:
        boards.platform(desc)
        boards.emulator(desc)
    assert str(e.value) == message


def test_unknown_board_is_refused(tmp_path: Path) -> None:
    with pytest.raises(boards.BoardError, match=r"no board description .*/board/nope/board.json"):
        boards.description("nope", tmp_path)
    with pytest.raises(BuildError, match="no board description"):
        uki_paths(tmp_path, "nope")


def test_qemu_command_is_the_boards(tmp_path: Path) -> None:
    dev = Device("a64", DeviceConfig(board="qemu-aarch64", build_dir=tmp_path / "img",
                                     devices_dir=tmp_path / "dev", secure_boot=False))
    cmd = dev.qemu_command(["-device", "tpm-tis-device,tpmdev=tpm0"], "pty,id=ser0")
    assert cmd[:6] == ["qemu-system-aarch64", "-machine", "virt", "-cpu", "cortex-a57", "-accel"]
    assert "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd" in cmd
    assert "-global" not in cmd  # no SMM pflash on virt
    x86 = Device("x", DeviceConfig(board="qemu-x86_64", build_dir=tmp_path / "img",
                                   devices_dir=tmp_path / "dev", secure_boot=True))
    cmd = x86.qemu_command([], "pty,id=ser0")
    assert cmd[:4] == ["qemu-system-x86_64", "-machine", "q35,smm=on", "-accel"]
    assert "driver=cfi.pflash01,property=secure,value=on" in cmd


def test_a_device_keeps_its_board(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "disk.img").write_bytes(b"\0" * 512)
    x86 = Device("d", DeviceConfig(board="qemu-x86_64", build_dir=tmp_path / "img",
                                   devices_dir=tmp_path / "dev", secure_boot=False))
    x86.prepare()
    assert (tmp_path / "dev" / "d" / "board").read_text() == "qemu-x86_64\n"
    a64 = Device("d", DeviceConfig(board="qemu-aarch64", build_dir=tmp_path / "img",
                                   devices_dir=tmp_path / "dev", secure_boot=False))
    with pytest.raises(DeviceError) as e:
        a64.prepare()
    assert str(e.value).startswith("device d is a qemu-x86_64 device (its flash, UEFI variables "
                                   "and TPM were made for that board), not qemu-aarch64")
    x86.prepare()  # the same board again is fine
