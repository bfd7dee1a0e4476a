"""Change one byte of a section of the UKI on the device's EFI System Partition.

The ESP is FAT32 inside the disk image; mtools reads and writes it in place at the partition's
byte offset (``-i disk.img@@OFFSET``), no root and no loop device.  The UKI is a PE image whose
``.initrd`` / ``.cmdline`` sections systemd-stub measures into PCR 11, the Linux EFI stub into
PCR 9 (initrd, command line), and whose Authenticode digest OVMF measures into PCR 4.

Default bytes, chosen so the tampered phone still boots and can be asked for its logs:

* ``.initrd``: byte 4, the low byte of the gzip header's MTIME (RFC 1952 §2.3.1).  The kernel's
  gunzip skips MTIME (lib/decompress_inflate.c), so the initramfs unpacks as before; most other
  bytes would break the CRC and stop the boot, which a verifier sees as "no evidence" instead.
* ``.cmdline``: the last byte (``panic=-1`` becomes ``panic=-2``: negative still means "reboot at
  once", so behaviour is unchanged and only the measurement shows the edit).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from host_tools.image import pe
from host_tools.tamper.bundle_ops import TamperError

UKI_PATH = "::/EFI/BOOT/BOOTX64.EFI"  # qemu-x86_64's; a board's: esp_uki_path(board)
SECTIONS = {"initrd": ".initrd", "cmdline": ".cmdline"}
GZIP_MTIME_LOW = 4


def default_offset(section: str, size: int) -> int:
    return GZIP_MTIME_LOW if section == ".initrd" else size - 1


def change_section_byte(uki: bytes, which: str, offset: int | None) -> tuple[bytes, str]:
    """*uki* with one byte of section *which* (``initrd``/``cmdline``) increased by 1 mod 256."""
    if which not in SECTIONS:
        raise TamperError(f"--uki takes {' or '.join(SECTIONS)}, not {which!r}")
    name = SECTIONS[which]
    try:
        img = pe.parse(uki)
        sec = img.section(name)
    except pe.PeError as e:
        raise TamperError(f"the ESP's UKI is not a PE image: {e}") from None
    except KeyError:
        raise TamperError(f"the ESP's UKI has no {name} section (not a UKI?)") from None
    size = min(sec.virtual_size, sec.raw_size)
    at = default_offset(name, size) if offset is None else offset
    if not 0 <= at < size:
        raise TamperError(f"offset {at} is outside the UKI's {name} section ({size} bytes)")
    data = bytearray(uki)
    old = data[sec.raw_offset + at]
    data[sec.raw_offset + at] = (old + 1) & 0xFF
    note = (f"UKI {name}: byte {at} of {size} (file offset {sec.raw_offset + at}) changed "
            f"{old:#04x} -> {data[sec.raw_offset + at]:#04x}")
    if name == ".cmdline":
        cmdline = bytes(data[sec.raw_offset:sec.raw_offset + size])
        note += f"; cmdline now {cmdline.decode('ascii', 'replace')!r}"
    return bytes(data), note


def _mtools(args: list[str]) -> None:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1", TZ="UTC")
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise TamperError(f"{' '.join(args)} failed ({proc.returncode}): "
                          f"{(proc.stderr or proc.stdout).strip()}")


def esp_uki_path(board: str) -> str:
    """The UKI's mtools path on *board*'s ESP (board.json platform.esp_boot_path)."""
    from host_tools import board as boards
    try:
        return "::/" + boards.platform(boards.description(board)).esp_boot_path
    except boards.BoardError as e:
        raise TamperError(str(e)) from None


def read_uki(disk: Path, esp_offset: int, path: str = UKI_PATH) -> bytes:
    with tempfile.TemporaryDirectory(prefix="tamper-uki-") as tmp:
        out = Path(tmp) / "uki.efi"
        _mtools(["mcopy", "-n", "-i", f"{disk}@@{esp_offset}", path, str(out)])
        return out.read_bytes()


def write_uki(disk: Path, esp_offset: int, data: bytes, path: str = UKI_PATH) -> None:
    with tempfile.TemporaryDirectory(prefix="tamper-uki-") as tmp:
        src = Path(tmp) / "uki.efi"
        src.write_bytes(data)
        _mtools(["mcopy", "-o", "-i", f"{disk}@@{esp_offset}", str(src), path])
