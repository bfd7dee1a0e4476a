# GUID Partition Table, sans-I/O (UEFI 2.10 §5.3.2 GPT Header, §5.3.3 GPT Partition Entry Array):
# the partition entries of a disk, for the Hard Drive device path of a boot entry (uki_banks.py).
# Only the primary table is read; the header's and the entry array's CRC32s are checked, every
# count and offset is bounds-checked, and a damaged table raises ParseError naming the field.

import binascii
import struct

from firmware.boot.efivars import guid_from_bytes
from firmware.errors import ParseError

SIGNATURE = b"EFI PART"  # §5.3.2 Table 5-5 Signature
ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"  # §5.3.3 Table 5-7: EFI System Partition
HEADER_MIN = 92  # §5.3.2: HeaderSize must be at least 92
MAX_ENTRIES = 1024
MIN_ENTRY_SIZE = 128  # §5.3.2: SizeOfPartitionEntry is 128 * 2^n


def parse_header(block, block_size):
    """The GPT header at LBA 1 (`block`: that logical block) -> dict(entries_lba, count,
    entry_size, entries_crc)."""
    if len(block) < HEADER_MIN or bytes(block[:8]) != SIGNATURE:
        raise ParseError("no GPT header at LBA 1 (signature 'EFI PART' missing)", offset=0,
                         field="Signature")
    hdr_size = struct.unpack_from("<I", block, 12)[0]
    if not HEADER_MIN <= hdr_size <= min(block_size, len(block)):
        raise ParseError("GPT HeaderSize %d out of range" % hdr_size, offset=12,
                         field="HeaderSize")
    want = struct.unpack_from("<I", block, 16)[0]
    check = bytearray(block[:hdr_size])
    check[16:20] = b"\0\0\0\0"
    if binascii.crc32(bytes(check)) & 0xFFFFFFFF != want:
        raise ParseError("GPT header CRC32 does not match", offset=16, field="HeaderCRC32")
    entries_lba, count, entry_size, entries_crc = struct.unpack_from("<QIII", block, 72)
    if count > MAX_ENTRIES or entry_size < MIN_ENTRY_SIZE or entry_size % 8:
        raise ParseError("GPT entry array of %d x %d bytes is not plausible" % (count, entry_size),
                         offset=80, field="NumberOfPartitionEntries")
    return {"entries_lba": entries_lba, "count": count, "entry_size": entry_size,
            "entries_crc": entries_crc}


def parse_entries(header, table):
    """The used entries of the entry array `table` (count x entry_size bytes) as dicts:
    number (1-based index), name, type_guid, partition_guid, start_lba, size_lba."""
    need = header["count"] * header["entry_size"]
    if len(table) < need:
        raise ParseError("GPT entry array is %d bytes, %d needed" % (len(table), need),
                         field="PartitionEntryArray")
    table = bytes(table[:need])
    if binascii.crc32(table) & 0xFFFFFFFF != header["entries_crc"]:
        raise ParseError("GPT partition entry array CRC32 does not match",
                         field="PartitionEntryArrayCRC32")
    out = []
    size = header["entry_size"]
    for i in range(header["count"]):
        e = table[i * size:(i + 1) * size]
        if e[:16] == b"\0" * 16:
            continue  # unused entry: PartitionTypeGUID zero
        first, last = struct.unpack_from("<QQ", e, 32)
        if last < first:
            raise ParseError("partition %d ends (LBA %d) before it starts (LBA %d)"
                             % (i + 1, last, first), offset=i * size + 32, field="EndingLBA")
        chars = []
        for j in range(56, 128, 2):
            c = e[j] | (e[j + 1] << 8)
            if c == 0:
                break
            chars.append(chr(c) if not 0xD800 <= c <= 0xDFFF else "?")
        out.append({"number": i + 1, "name": "".join(chars), "type_guid": guid_from_bytes(e, 0),
                    "partition_guid": guid_from_bytes(e, 16), "start_lba": first,
                    "size_lba": last - first + 1})
    return out


def find_entry(entries, name):
    """The entry named `name`, or ParseError listing the names there are."""
    for e in entries:
        if e["name"] == name:
            return e
    raise ParseError("no GPT partition named %r (found: %s)"
                     % (name, ", ".join(repr(e["name"]) for e in entries) or "none"),
                     field="PartitionName")
