"""The sealed store on the device's flash: the GPT partition named ``phone-data`` of its disk
image (docs/image-format.md / host_tools/image/disk.py leave it raw and zeroed; the store layout
is in docs/sealing.md). Only public data is written here: TPM-encrypted blobs and metadata."""

from __future__ import annotations

from pathlib import Path

SECTOR = 512
DATA_PARTITION = "phone-data"
GPT_SIGNATURE = b"EFI PART"


class DiskError(ValueError):
    """The disk image has no usable GPT or no phone-data partition."""


def find_partition(disk: Path, name: str = DATA_PARTITION) -> tuple[int, int]:
    """(byte offset, byte size) of the GPT partition named *name* (UEFI 2.9 §5.3.2-5.3.3)."""
    with disk.open("rb") as f:
        f.seek(SECTOR)
        hdr = f.read(92)
        if len(hdr) < 92 or hdr[:8] != GPT_SIGNATURE:
            raise DiskError(f"{disk}: no GPT header at LBA 1")
        entries_lba = int.from_bytes(hdr[72:80], "little")
        count = int.from_bytes(hdr[80:84], "little")
        size = int.from_bytes(hdr[84:88], "little")
        if size < 128 or size > 4096 or count > 1024:
            raise DiskError(f"{disk}: implausible GPT entry array ({count} x {size} bytes)")
        f.seek(entries_lba * SECTOR)
        table = f.read(count * size)
    for i in range(count):
        e = table[i * size:(i + 1) * size]
        if len(e) < 128 or e[:16] == b"\x00" * 16:
            continue
        pname = e[56:128].decode("utf-16-le", errors="replace").rstrip("\x00")
        if pname == name:
            first = int.from_bytes(e[32:40], "little")
            last = int.from_bytes(e[40:48], "little")
            if last < first:
                raise DiskError(f"{disk}: partition {name} ends before it starts")
            return first * SECTOR, (last - first + 1) * SECTOR
    raise DiskError(f"{disk}: no GPT partition named {name!r}")


def write_store(disk: Path, store: bytes, name: str = DATA_PARTITION,
                keep_from: int | None = None) -> tuple[int, int]:
    """Zero the data partition and write *store* at its start (old blobs, and the store's
    journal copy, do not survive). *keep_from*: leave the partition from that offset on as it
    is (the A/B slot record, firmware/update/partition_flash.py RECORD_OFFSET: an update of the
    store must not send a device back to a bank it no longer runs)."""
    offset, size = find_partition(disk, name)
    end = size if keep_from is None else min(keep_from, size)  # past the end: nothing to keep
    if len(store) > end:
        raise DiskError(f"store of {len(store)} bytes does not fit {end} bytes of the partition")
    with disk.open("r+b") as f:
        f.seek(offset)
        f.write(store + b"\x00" * (end - len(store)))
    return offset, size


def read_partition(disk: Path, name: str = DATA_PARTITION) -> bytes:
    offset, size = find_partition(disk, name)
    with disk.open("rb") as f:
        f.seek(offset)
        return f.read(size)


__all__ = ["find_partition", "write_store", "read_partition", "DiskError"]
