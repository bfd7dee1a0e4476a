"""The efivarfs shim and the ESP's atomic write on a plain directory (the real efivarfs and vfat
are exercised on the device: tests/system/test_uki_banks_writer.py): the file layout
(<Name>-<guid>, u32 attributes + data), names(), delete(), a missing variable, and that an
interrupted write leaves the old file."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest

from firmware.boot import efivarfs as _efivarfs, efivars as _efivars, esp as _esp

efivarfs: Any = _efivarfs  # firmware code is untyped (MicroPython subset)
efivars: Any = _efivars  # firmware code is untyped (MicroPython subset)
esp: Any = _esp  # firmware code is untyped (MicroPython subset)


def test_efivarfs_layout(tmp_path: Path) -> None:
    store = efivarfs.EfiVarFs(str(tmp_path))
    assert store.available() is None
    assert store.get("BootNext") is None
    store.set("BootNext", b"\x03\x00")
    f = tmp_path / f"BootNext-{efivars.EFI_GLOBAL_VARIABLE}"
    assert f.read_bytes() == struct.pack("<I", 7) + b"\x03\x00"
    assert store.get("BootNext") == (7, b"\x03\x00")
    store.set("BootNext", b"\x04\x00", 3)  # replaced, not appended
    assert store.get("BootNext") == (3, b"\x04\x00")
    (tmp_path / "Other-11111111-2222-3333-4444-555555555555").write_bytes(b"\0" * 5)
    assert store.names() == ["BootNext"]
    assert store.names("11111111-2222-3333-4444-555555555555") == ["Other"]
    assert store.delete("BootNext") is True and store.delete("BootNext") is False
    (tmp_path / f"Bad-{efivars.EFI_GLOBAL_VARIABLE}").write_bytes(b"\1\0")
    with pytest.raises(OSError, match="shorter than the attribute prefix"):
        store.get("Bad")
    for bad in ("", "a/b", "Boot-1"):
        with pytest.raises(ValueError):
            store.get(bad)
    assert "missing" in (efivarfs.EfiVarFs(str(tmp_path / "none")).available() or "")


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "EFI" / "phone" / "uki-b.efi"
    esp.write_atomic(str(target), b"old")  # the directory is created
    assert target.read_bytes() == b"old"
    esp.write_atomic(str(target), b"new" * 1000)
    assert target.read_bytes() == b"new" * 1000
    assert sorted(os.listdir(target.parent)) == ["uki-b.efi"]

    def power_cut(fd: int) -> None:
        raise OSError("power cut")
    monkeypatch.setattr(os, "fsync", power_cut)
    with pytest.raises(OSError, match="power cut"):
        esp.write_atomic(str(target), b"half")
    assert target.read_bytes() == b"new" * 1000  # never a half-written file under the name


def test_esp_paths_stay_inside() -> None:
    e = esp.Esp("/dev/null", mount_dir="/run/esp-test")
    assert e.path("EFI/phone/uki-b.efi") == "/run/esp-test/EFI/phone/uki-b.efi"
    assert e.path("\\EFI\\BOOT\\BOOTX64.EFI") == "/run/esp-test/EFI/BOOT/BOOTX64.EFI"
    for bad in ("../etc/passwd", "EFI/../../x", "", "EFI//x"):
        with pytest.raises(esp.EspError):
            e.path(bad)


def test_esp_unmounts_when_the_block_fails(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    mnt = tmp_path / "mnt"
    with pytest.raises(RuntimeError):
        with esp.Esp("/dev/vda1", mount_dir=str(mnt), runner=calls.append):
            raise RuntimeError("write failed")
    assert calls == [["mount", "-t", "vfat", "-o", esp.MOUNT_OPTIONS, "/dev/vda1", str(mnt)],
                     ["umount", str(mnt)]]
    assert mnt.stat().st_mode & 0o777 == 0o700
