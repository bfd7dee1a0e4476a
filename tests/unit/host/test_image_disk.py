"""host_tools.image.disk: GPT disk without root, fixed identifiers, bit-identical rebuilds."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from host_tools.image import disk, predict

BOARD = "test-board"
PARTS = [disk.Partition("esp", disk.ESP_TYPE, 34), disk.Partition("phone-fw",
         disk.LINUX_DATA_TYPE, 1), disk.Partition("phone-data", disk.LINUX_DATA_TYPE, 1)]


def _build(tmp: Path, name: str) -> Path:
    esp = tmp / f"{name}-esp.img"
    disk.make_esp(esp, 34, {"EFI/BOOT/BOOTX64.EFI": b"MZ uki", "loader/x.conf": b"x"}, BOARD,
                  1767225600)
    out = tmp / f"{name}.img"
    disk.build_disk(out, BOARD, PARTS, {"esp": esp, "phone-fw": b"bundle"})
    return out


def test_disk_is_bit_identical_and_readable(tmp_path: Path) -> None:
    a = _build(tmp_path, "a")
    time.sleep(1.1)  # FAT times and mkfs must not depend on the clock
    b = _build(tmp_path, "b")
    assert a.read_bytes() == b.read_bytes()
    dump = json.loads(subprocess.run(["sfdisk", "--json", str(a)], capture_output=True,
                                     text=True, check=True).stdout)["partitiontable"]
    assert dump["label"] == "gpt" and dump["id"].lower() == str(disk.disk_guid(BOARD))
    assert [p["name"] for p in dump["partitions"]] == ["esp", "phone-fw", "phone-data"]
    assert [p["uuid"].lower() for p in dump["partitions"]] == [
        str(p.guid(BOARD)) for p in PARTS]
    assert [p["start"] for p in dump["partitions"]] == [2048, 2048 + 34 * 2048,
                                                        2048 + 35 * 2048]
    data = a.read_bytes()
    assert data[disk.MIB + 34 * disk.MIB:][:6] == b"bundle"
    # the ESP is a FAT filesystem mtools can read back, with the fixed volume id
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    esp = tmp_path / "a-esp.img"
    got = subprocess.run(["mtype", "-i", str(esp), "::/EFI/BOOT/BOOTX64.EFI"], env=env,
                         capture_output=True, check=True).stdout
    assert got == b"MZ uki"
    info = subprocess.run(["minfo", "-i", str(esp)], env=env, capture_output=True, text=True,
                          check=True).stdout
    assert f"serial number: {disk.fat_volume_id(BOARD)}" in info


def test_gpt_event_data_counts_used_entries(tmp_path: Path) -> None:
    head = _build(tmp_path, "a").read_bytes()[:disk.MIB]
    data = predict.uefi_gpt_data(head)
    # PFP §10.2.7 UEFI_GPT_DATA: 92-byte header, UINT64 count, used 128-byte entries
    assert len(data) == 92 + 8 + 3 * 128
    assert data[:8] == b"EFI PART" and int.from_bytes(data[92:100], "little") == 3


def test_partition_overflow_is_refused(tmp_path: Path) -> None:
    with pytest.raises(disk.DiskError, match="partition phone-fw: 1048577 bytes do not fit"):
        disk.build_disk(tmp_path / "x.img", BOARD, PARTS[1:],
                        {"phone-fw": b"\0" * (disk.MIB + 1)})


def test_tool_failure_is_reported(tmp_path: Path) -> None:
    with pytest.raises(disk.DiskError, match="mcopy .* failed"):
        disk.make_esp(tmp_path / "esp.img", 34, {"BIG": b"\0" * 35 * disk.MIB}, BOARD, 0)
