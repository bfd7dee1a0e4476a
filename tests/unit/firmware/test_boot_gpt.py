# firmware.boot.gpt on a GPT written out here from UEFI 2.10 §5.3.2 (header) and §5.3.3 (entry
# array), under CPython and MicroPython; tests/unit/host/test_boot_gpt.py reads sfdisk's.
import binascii
import struct

from firmware.boot import efivars, gpt
from firmware.errors import ParseError
from tests.unit.firmware.check import raises

ESP_GUID = "2fecb143-ed96-53d4-9489-b6dad50035b0"
FW_GUID = "0f3e1b2a-8c4d-4e5f-9a6b-7c8d9e0f1a2b"
LINUX = "0fc63daf-8483-4772-8e79-3d69d8477de4"


def entry(type_guid, part_guid, first, last, name):
    e = bytearray(128)
    e[0:16] = efivars.guid_to_bytes(type_guid)
    e[16:32] = efivars.guid_to_bytes(part_guid)
    struct.pack_into("<QQ", e, 32, first, last)
    raw = efivars.ucs2_encode(name)[:-2]
    e[56:56 + len(raw)] = raw
    return bytes(e)


def make(count=4):
    table = entry(gpt.ESP_TYPE, ESP_GUID, 2048, 133119, "esp") + \
        entry(LINUX, FW_GUID, 133120, 149503, "phone-fw") + bytes(128 * (count - 2))
    hdr = bytearray(512)
    hdr[0:8] = gpt.SIGNATURE
    struct.pack_into("<IIII", hdr, 8, 0x00010000, 92, 0, 0)
    struct.pack_into("<QQQQ", hdr, 24, 1, 999, 34, 900)
    struct.pack_into("<QIII", hdr, 72, 2, count, 128, binascii.crc32(table) & 0xFFFFFFFF)
    struct.pack_into("<I", hdr, 16, binascii.crc32(bytes(hdr[:92])) & 0xFFFFFFFF)
    return bytes(hdr), table


def test_entries():
    hdr, table = make()
    h = gpt.parse_header(hdr, 512)
    assert (h["entries_lba"], h["count"], h["entry_size"]) == (2, 4, 128)
    entries = gpt.parse_entries(h, table)
    assert entries == [
        {"number": 1, "name": "esp", "type_guid": gpt.ESP_TYPE, "partition_guid": ESP_GUID,
         "start_lba": 2048, "size_lba": 131072},
        {"number": 2, "name": "phone-fw", "type_guid": LINUX, "partition_guid": FW_GUID,
         "start_lba": 133120, "size_lba": 16384}]
    assert gpt.find_entry(entries, "phone-fw")["number"] == 2
    assert raises(ParseError, gpt.find_entry, entries, "x").field == "PartitionName"


def test_damage_is_refused_naming_the_field():
    hdr, table = make()
    bad = bytearray(hdr)
    bad[48] ^= 1  # LastUsableLBA: the header CRC32 no longer matches
    assert raises(ParseError, gpt.parse_header, bytes(bad), 512).field == "HeaderCRC32"
    bad = bytearray(hdr)
    struct.pack_into("<I", bad, 12, 600)
    assert raises(ParseError, gpt.parse_header, bytes(bad), 512).field == "HeaderSize"
    assert raises(ParseError, gpt.parse_header, hdr[:50], 512).field == "Signature"
    h = gpt.parse_header(hdr, 512)
    t = bytearray(table)
    t[60] ^= 1
    assert raises(ParseError, gpt.parse_entries, h, bytes(t)).field == "PartitionEntryArrayCRC32"
    assert raises(ParseError, gpt.parse_entries, h, table[:300]).field == "PartitionEntryArray"
    # an entry that ends before it starts (CRCs recomputed: only the range is wrong)
    t = bytearray(table)
    struct.pack_into("<QQ", t, 32, 5000, 4000)
    h2 = dict(h, entries_crc=binascii.crc32(bytes(t)) & 0xFFFFFFFF)
    assert raises(ParseError, gpt.parse_entries, h2, bytes(t)).field == "EndingLBA"
    # implausible entry array sizes
    bad = bytearray(hdr)
    struct.pack_into("<I", bad, 80, 100000)
    struct.pack_into("<I", bad, 16, 0)
    struct.pack_into("<I", bad, 16, binascii.crc32(bytes(bad[:92])) & 0xFFFFFFFF)
    assert raises(ParseError, gpt.parse_header, bytes(bad), 512).field == "NumberOfPartitionEntries"
