"""GPT disk image without root: sfdisk on a plain file, mkfs.fat + mtools for the ESP.

Every identifier that would otherwise be random is fixed: the GPT disk GUID and partition
GUIDs (UUIDv5 of the board and partition name), the FAT volume id (``mkfs.fat --invariant -i``),
and file times in the FAT (mtools takes them from SOURCE_DATE_EPOCH).  Partition images are
written into the disk file at their offsets (what ``dd conv=notrunc seek=`` does).

Layout (512-byte sectors, 1 MiB aligned)::

    LBA 0        protective MBR, LBA 1-33 primary GPT
    1 MiB        p1 "esp"        FAT32, \\EFI\\BOOT\\BOOTX64.EFI = the UKI
    +esp_mib     p2 "phone-fw"   raw: the signed bundle (ustar), zero padded
    +fw_mib      p3 "phone-data" raw, zeroes: sealed blobs and state (the device formats it)
    +data_mib    p4 "phone-sys"  squashfs + dm-verity tree (the CPython userland)
    +sys_mib     p5 "phone-fw-b" raw, zeroes: firmware bank b (filled over SMP, docs/flashing.md)
    end - 33     backup GPT
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

SECTOR = 512
MIB = 1024 * 1024
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"  # UEFI 2.9 §5.3.3 EFI System Partition
LINUX_DATA_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
# Namespace for the image's fixed GUIDs (a UUIDv5 of a fixed name, so it is documented).
GUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:trusted-phone:image")


class DiskError(RuntimeError):
    """A disk tool failed or the contents do not fit."""


@dataclass(frozen=True)
class Partition:
    name: str
    type_guid: str
    size_mib: int

    def guid(self, board: str) -> uuid.UUID:
        return uuid.uuid5(GUID_NAMESPACE, f"{board}/{self.name}")


def disk_guid(board: str) -> uuid.UUID:
    return uuid.uuid5(GUID_NAMESPACE, f"{board}/disk")


def fat_volume_id(board: str) -> str:
    return disk_guid(board).hex[:8].upper()


def _run(cmd: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> None:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise DiskError(f"{' '.join(cmd)} failed ({proc.returncode}): "
                        f"{(proc.stderr or proc.stdout).strip()}")


def make_esp(path: Path, size_mib: int, files: dict[str, bytes], board: str,
             source_date_epoch: int) -> None:
    """A FAT32 image of *size_mib* holding *files* (FAT paths like ``EFI/BOOT/BOOTX64.EFI``)."""
    if path.exists():
        path.unlink()
    _run(["mkfs.fat", "-C", "-F", "32", "-S", str(SECTOR), "-n", "ESP", "--invariant",
          "-i", fat_volume_id(board), str(path), str(size_mib * 1024)])
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(source_date_epoch), MTOOLS_SKIP_CHECK="1",
               TZ="UTC")
    made: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="esp-") as tmp:
        for i, (fat_path, data) in enumerate(sorted(files.items())):
            parts = fat_path.split("/")
            for j in range(1, len(parts)):
                d = "/".join(parts[:j])
                if d not in made:
                    _run(["mmd", "-i", str(path), "::/" + d], env)
                    made.add(d)
            src = Path(tmp) / f"f{i}"
            src.write_bytes(data)
            _run(["mcopy", "-i", str(path), "-o", str(src), "::/" + fat_path], env)


def gpt_script(board: str, parts: list[Partition]) -> str:
    lines = ["label: gpt", f"label-id: {disk_guid(board)}", "unit: sectors",
             "sector-size: 512"]
    start = MIB // SECTOR
    for p in parts:
        size = p.size_mib * MIB // SECTOR
        lines.append(f"start={start}, size={size}, type={p.type_guid}, "
                     f"uuid={p.guid(board)}, name=\"{p.name}\"")
        start += size
    return "\n".join(lines) + "\n"


def build_disk(out: Path, board: str, parts: list[Partition], contents: dict[str, Path | bytes]
               ) -> None:
    """Write the disk image: GPT from sfdisk, then each partition's contents at its offset.

    *contents* maps partition name to an image file (copied in) or bytes (zero padded).
    """
    total = MIB + sum(p.size_mib for p in parts) * MIB + MIB  # room for the backup GPT
    if out.exists():
        out.unlink()
    with out.open("wb") as f:
        f.truncate(total)
    _run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(out)],
         stdin=gpt_script(board, parts))
    offset = MIB
    with out.open("r+b") as f:
        for p in parts:
            size = p.size_mib * MIB
            item = contents.get(p.name)
            data = item.read_bytes() if isinstance(item, Path) else (item or b"")
            if len(data) > size:
                raise DiskError(f"partition {p.name}: {len(data)} bytes do not fit in "
                                f"{p.size_mib} MiB")
            f.seek(offset)
            f.write(data)
            offset += size
