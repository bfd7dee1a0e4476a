"""firmware.boot.gpt (the device's GPT reader, for the ESP's Hard Drive node) on a disk image
sfdisk wrote (host_tools.image.disk, the image's own layout), cross-checked with sfdisk's JSON
dump and the tamper tool's reader; a damaged table is refused naming the field."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from firmware.boot import gpt
from firmware.errors import ParseError
from host_tools.image import disk

BOARD = "qemu-x86_64"
PARTS = [disk.Partition("esp", disk.ESP_TYPE, 2), disk.Partition("phone-fw", disk.LINUX_DATA_TYPE, 1)]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpt") / "disk.img"
    disk.build_disk(out, BOARD, PARTS, {})
    return out


def read(path: Path) -> list[dict[str, object]]:
    raw = path.read_bytes()
    hdr = gpt.parse_header(raw[512:1024], 512)
    start = hdr["entries_lba"] * 512
    return gpt.parse_entries(hdr, raw[start:start + hdr["count"] * hdr["entry_size"]])


def test_entries_match_sfdisk(image: Path) -> None:
    entries = read(image)
    dump = json.loads(subprocess.run(["sfdisk", "--json", str(image)], capture_output=True,
                                     text=True, check=True).stdout)["partitiontable"]
    assert len(entries) == len(dump["partitions"]) == 2
    for e, p, part in zip(entries, dump["partitions"], PARTS):
        assert e["name"] == p["name"] == part.name
        assert e["partition_guid"] == p["uuid"].lower() == str(part.guid(BOARD))
        assert e["type_guid"] == p["type"].lower()
        assert (e["start_lba"], e["size_lba"]) == (p["start"], p["size"])
    esp = gpt.find_entry(entries, "esp")
    assert (esp["number"], esp["start_lba"], esp["size_lba"]) == (1, 2048, 4096)
    assert esp["type_guid"] == gpt.ESP_TYPE


def test_damaged_tables_are_refused(image: Path, tmp_path: Path) -> None:
    raw = bytearray(image.read_bytes())
    bad_hdr = bytearray(raw[512:1024])
    bad_hdr[40] ^= 1  # FirstUsableLBA changed: header CRC no longer matches
    assert pytest.raises(ParseError, gpt.parse_header, bytes(bad_hdr), 512).value.field == \
        "HeaderCRC32"
    assert pytest.raises(ParseError, gpt.parse_header, bytes(512), 512).value.field == "Signature"
    hdr = gpt.parse_header(bytes(raw[512:1024]), 512)
    start = hdr["entries_lba"] * 512
    table = bytearray(raw[start:start + hdr["count"] * hdr["entry_size"]])
    table[56] ^= 1  # a name byte
    assert pytest.raises(ParseError, gpt.parse_entries, hdr, bytes(table)).value.field == \
        "PartitionEntryArrayCRC32"
    assert pytest.raises(ParseError, gpt.parse_entries, hdr, bytes(table[:100])).value.field == \
        "PartitionEntryArray"
    e = pytest.raises(ParseError, gpt.find_entry, read(image), "nope").value
    assert "'esp', 'phone-fw'" in str(e)
