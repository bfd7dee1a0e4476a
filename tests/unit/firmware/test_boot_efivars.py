# firmware.boot.efivars against byte vectors written out by hand from UEFI 2.10 (§3.1.3
# EFI_LOAD_OPTION, §10.3.5.1 Hard Drive, §10.3.5.4 File Path, §10.3.1 End, Appendix A EFI_GUID).
# tests/unit/host/test_efivars_virt_firmware.py checks the same codecs against virt-firmware.
from firmware.boot import efivars
from firmware.errors import ParseError
from tests.unit.firmware.check import raises, unhex

ESP_GUID = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
# PartitionNumber 1, PartitionStart 2048, PartitionSize 131072, GUID (Data1-3 little-endian),
# PartitionFormat 2 (GPT), SignatureType 2 (GUID)
HD = unhex("04 01 2a00 01000000 0008000000000000 0000020000000000"
           " 28732ac1 1ff8 d211 ba4b 00a0c93ec93b 02 02")
# "\EFI\phone\uki-b.efi" in UCS-2 + NUL: 42 bytes, node Length 46
FILE_B = unhex("04 04 2e00 5c00 4500 4600 4900 5c00 7000 6800 6f00 6e00 6500 5c00"
               " 7500 6b00 6900 2d00 6200 2e00 6500 6600 6900 0000")
END = unhex("7f ff 0400")


def test_guid_mixed_endian():
    raw = efivars.guid_to_bytes(efivars.EFI_GLOBAL_VARIABLE)
    assert raw == unhex("61dfe48b ca93 d211 aa0d 00e098032b8c")
    assert efivars.guid_from_bytes(raw) == efivars.EFI_GLOBAL_VARIABLE
    assert efivars.normalize_guid("8BE4DF61-93CA-11D2-AA0D-00E098032B8C") == efivars.EFI_GLOBAL_VARIABLE
    for bad in ("8be4df61-93ca-11d2-aa0d", "8be4df6g-93ca-11d2-aa0d-00e098032b8c",
                "8be4df61093ca-11d2-aa0d-00e098032b8c", ""):
        assert raises(ParseError, efivars.guid_to_bytes, bad).field == "guid"
    assert raises(ParseError, efivars.guid_from_bytes, b"\0" * 15).field == "guid"


def test_nodes_byte_exact():
    assert efivars.hd_node(1, 2048, 131072, ESP_GUID.upper()) == HD
    assert efivars.file_node("EFI/phone/uki-b.efi") == FILE_B
    assert efivars.file_node("\\EFI\\phone\\uki-b.efi") == FILE_B
    assert efivars.end_node() == END


def test_load_option_byte_exact_and_back():
    path = HD + FILE_B + END
    opt = efivars.encode_load_option("ab", path)
    assert opt == unhex("01000000 5c00 6100 6200 0000") + path
    got = efivars.parse_load_option(opt + b"xy")
    assert got == {"attributes": 1, "description": "ab", "device_path": path, "optional": b"xy"}
    nodes = efivars.parse_device_path(path)
    assert [(t, s) for t, s, _ in nodes] == [(4, 1), (4, 4)]
    assert efivars.file_path_of(path) == "\\EFI\\phone\\uki-b.efi"
    assert efivars.hd_guid_of(path) == ESP_GUID
    hd = efivars.parse_hd_node(nodes[0][2])
    assert (hd["partition_number"], hd["start_lba"], hd["size_lba"]) == (1, 2048, 131072)
    assert (hd["partition_format"], hd["signature_type"]) == (2, 2)


def test_path_without_file_or_hd():
    # OVMF's "UEFI Misc Device": a hardware path only (PciRoot/Pci), no media nodes
    pci = unhex("02 01 0c00 d041030a 00000000") + unhex("01 01 0600 00 03") + END
    assert efivars.file_path_of(pci) is None
    assert efivars.hd_guid_of(pci) is None


def test_file_path_split_over_nodes():
    path = efivars.file_node("EFI") + efivars.node(4, 4, efivars.ucs2_encode("BOOT\\X.EFI")) + END
    assert efivars.file_path_of(path) == "\\EFI\\BOOT\\X.EFI"


def test_malformed_load_options_name_the_field():
    path = HD + FILE_B + END
    good = efivars.encode_load_option("ab", path)
    cases = [
        (good[:5], "Attributes"),                     # header cut
        (good[:10], "Description"),                   # no NUL in the description
        (good[:-1], "FilePathListLength"),            # path list shorter than its length
        (unhex("01000000 0400 0000") + unhex("04 04 0200"), "Length"),  # node < its header
        (unhex("01000000 0400 0000") + unhex("04 04 0800"), "Length"),  # node past the end
        (unhex("01000000 0800 0000 0101 0400 0404 0400"), "device path"),  # no End
        (unhex("01000000 0000 0000"), "device path"),  # empty path list
        (unhex("01000000 0400 00d8 0000") + END, "Description"),  # lone surrogate
    ]
    for data, field in cases:
        e = raises(ParseError, efivars.parse_load_option, data)
        assert e.field == field, (data, field, e)


def test_malformed_nodes():
    assert raises(ParseError, efivars.parse_hd_node, HD[4:-1]).field == "Hard Drive"
    bad_file = unhex("04 04 0600 4100") + END  # PathName without NUL
    assert raises(ParseError, efivars.file_path_of, bad_file).field == "PathName"
    assert raises(ParseError, efivars.hd_node, 0, 1, 1, ESP_GUID).field == "PartitionNumber"
    assert raises(ParseError, efivars.encode_load_option, "x", HD).field == "device path"
    assert raises(ParseError, efivars.ucs2_encode, "a\0b").field == "ucs2"


def test_boot_variables():
    assert efivars.boot_var_name(0) == "Boot0000"
    assert efivars.boot_var_name(0x1a) == "Boot001A"
    assert raises(ParseError, efivars.boot_var_name, 0x10000).field == "Boot####"
    assert efivars.parse_boot_var_name("Boot001A") == 0x1a
    for other in ("BootOrder", "Boot001a", "Boot01A", "BootNext", "Driver0001"):
        assert efivars.parse_boot_var_name(other) is None
    assert efivars.encode_boot_order([3, 0, 0x1a]) == unhex("0300 0000 1a00")
    assert efivars.parse_boot_order(unhex("0300 0000 1a00")) == [3, 0, 0x1a]
    assert efivars.parse_boot_order(b"") == []
    assert raises(ParseError, efivars.parse_boot_order, b"\1\0\2").field == "BootOrder"
    assert efivars.encode_u16(0x1a) == unhex("1a00")
    assert efivars.parse_u16(unhex("1a00"), "BootCurrent") == 0x1a
    assert raises(ParseError, efivars.parse_u16, b"\1", "BootCurrent").field == "BootCurrent"
    assert raises(ParseError, efivars.parse_u16, b"\1\0\0").field == "BootNext"
