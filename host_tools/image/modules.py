"""Kernel modules for the initramfs, in load order, read from the unpacked kernel package.

Debian's kernel package ships no modules.dep (depmod runs at install time), so dependencies
come from each module's ``.modinfo`` ELF section (``depends=a,b``), the same data depmod reads.
"""

from __future__ import annotations

import struct
from pathlib import Path

# What the phone needs from the cloud kernel that is not built in: the virtio PCI transport,
# its disk (the firmware and data partitions) and network; qemu_fw_cfg lets /init read the
# development-check switch (board/qemu-x86_64/init.sh). The console is the 16550 UART (ttyS0,
# built in); the RNG needs no driver (OVMF hands the kernel's EFI stub a seed, board.json "rng").
# dm_verity and squashfs mount the system partition (host_tools/image/sysimage.py).
WANTED = ("virtio_pci", "virtio_blk", "virtio_net", "qemu_fw_cfg", "dm_verity", "squashfs")


class ModuleError(ValueError):
    """A module is missing or its ELF/.modinfo is malformed."""


def elf_section(data: bytes, wanted: str) -> bytes:
    """Contents of one section of a 64-bit little-endian ELF relocatable (ELF spec, Figure 1-8)."""
    if data[:4] != b"\x7fELF" or data[4:6] != b"\x02\x01":
        raise ModuleError("not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shentsize != 64 or shoff + shnum * 64 > len(data) or shstrndx >= shnum:
        raise ModuleError(f"ELF section header table at {shoff} ({shnum} x {shentsize}) is bad")

    def header(i: int) -> tuple[int, int, int]:
        name, _t, _f, _a, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * 64)
        if off + size > len(data):
            raise ModuleError(f"ELF section {i} ({off}+{size}) runs past the end of the file")
        return name, off, size

    _n, str_off, str_size = header(shstrndx)
    for i in range(shnum):
        name_off, off, size = header(i)
        end = data.find(b"\0", str_off + name_off, str_off + str_size)
        if data[str_off + name_off:end].decode("ascii", "replace") == wanted:
            return data[off:off + size]
    raise ModuleError(f"no {wanted} section")


def depends(ko: bytes) -> list[str]:
    for entry in elf_section(ko, ".modinfo").split(b"\0"):
        if entry.startswith(b"depends="):
            value = entry[len(b"depends="):].decode()
            return [d for d in value.split(",") if d]
    return []


def resolve(modules_dir: Path, wanted: tuple[str, ...] = WANTED) -> list[tuple[str, bytes]]:
    """(file name, contents) of *wanted* and their dependencies, dependencies first."""
    index: dict[str, Path] = {}
    for p in sorted(modules_dir.rglob("*.ko")):
        index[p.stem.replace("-", "_")] = p
    order: list[tuple[str, bytes]] = []
    placed: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]) -> None:
        key = name.replace("-", "_")
        if key in placed:
            return
        if key in stack:
            raise ModuleError(f"module dependency cycle: {' -> '.join(stack + (key,))}")
        if key not in index:
            raise ModuleError(f"module {name} not found under {modules_dir}")
        data = index[key].read_bytes()
        for dep in depends(data):
            visit(dep, stack + (key,))
        placed.add(key)
        order.append((index[key].name, data))

    for name in wanted:
        visit(name, ())
    return order
