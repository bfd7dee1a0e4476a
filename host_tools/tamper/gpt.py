"""Find a partition of a GPT disk image by its GPT partition name (what ``/init`` does on the
device with ``PARTNAME=``), so the tamper tool edits exactly the bytes the phone reads.

Layout from UEFI 2.9 §5.3.2 (GPT header at LBA 1) and §5.3.3 (partition entries).  Only the
primary table is read; every offset and count taken from the image is bounds-checked and the
header and entry-array CRC32s are verified, so a damaged table is an error, never a wrong edit.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

SECTOR = 512
_SIGNATURE = b"EFI PART"
_MAX_ENTRIES = 1024
_MIN_ENTRY_SIZE = 128


class GptError(ValueError):
    """The disk image has no usable GPT or not the partition asked for."""


@dataclass(frozen=True)
class GptPartition:
    index: int  # 1-based, as in /dev/vda<index>
    name: str
    first_lba: int
    last_lba: int  # inclusive

    @property
    def offset(self) -> int:
        return self.first_lba * SECTOR

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * SECTOR


def read_partitions(f: BinaryIO, disk_size: int) -> list[GptPartition]:
    """The used entries of the primary GPT of the image open in *f* (*disk_size* bytes)."""
    f.seek(SECTOR)
    hdr = f.read(SECTOR)
    if len(hdr) < 92 or hdr[:8] != _SIGNATURE:
        raise GptError("no GPT header at LBA 1 (signature 'EFI PART' missing)")
    hdr_size = struct.unpack_from("<I", hdr, 12)[0]
    if not 92 <= hdr_size <= SECTOR:
        raise GptError(f"GPT header size {hdr_size} out of range 92..{SECTOR} (offset 524)")
    want_crc = struct.unpack_from("<I", hdr, 16)[0]
    check = bytearray(hdr[:hdr_size])
    check[16:20] = b"\0\0\0\0"
    if zlib.crc32(bytes(check)) != want_crc:
        raise GptError("GPT header CRC32 does not match (offset 528)")
    entries_lba, count, entry_size, entries_crc = struct.unpack_from("<QIII", hdr, 72)
    if count > _MAX_ENTRIES or entry_size < _MIN_ENTRY_SIZE or entry_size % 8:
        raise GptError(f"GPT entry table of {count} x {entry_size} bytes is not plausible")
    start = entries_lba * SECTOR
    if start + count * entry_size > disk_size:
        raise GptError(f"GPT entry table at LBA {entries_lba} runs past the end of the image")
    f.seek(start)
    table = f.read(count * entry_size)
    if zlib.crc32(table) != entries_crc:
        raise GptError("GPT partition entry array CRC32 does not match")
    parts = []
    for i in range(count):
        e = table[i * entry_size:(i + 1) * entry_size]
        if e[:16] == b"\0" * 16:
            continue  # unused entry (type GUID zero)
        first, last = struct.unpack_from("<QQ", e, 32)
        name = e[56:128].decode("utf-16-le", errors="replace").split("\0", 1)[0]
        if last < first or (last + 1) * SECTOR > disk_size:
            raise GptError(f"partition {i + 1} ({name!r}): LBAs {first}..{last} outside the "
                           f"image of {disk_size} bytes")
        parts.append(GptPartition(i + 1, name, first, last))
    return parts


def find_partition(f: BinaryIO, disk_size: int, name: str) -> GptPartition:
    parts = read_partitions(f, disk_size)
    for p in parts:
        if p.name == name:
            return p
    raise GptError(f"no partition named {name!r} in the GPT (found: "
                   f"{', '.join(repr(p.name) for p in parts) or 'none'})")
