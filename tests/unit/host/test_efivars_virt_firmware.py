"""firmware.boot.efivars against an independent implementation: virt-firmware's EFI_LOAD_OPTION
(virt.firmware.efi.bootentry) and device path (virt.firmware.efi.devpath) codecs. Our encoding
is parsed by theirs and theirs by ours, with equal results."""

from __future__ import annotations

import uuid

from virt.firmware.efi import bootentry, devpath, guids, ucs16

from firmware.boot import efivars

PART_GUID = "0f3e1b2a-8c4d-4e5f-9a6b-7c8d9e0f1a2b"
CASES = [  # (partition number, start LBA, size LBA, file)
    (1, 2048, 131072, "EFI/BOOT/BOOTX64.EFI"),
    (1, 2048, 131072, "EFI/phone/uki-b.efi"),
    (7, 0x1_0000_0001, 0x7FFF_FFFF_FFFF, "EFI/BOOT/BOOTAA64.EFI"),
]


def theirs(pnr: int, start: int, size: int, path: str) -> devpath.DevicePath:
    dp = devpath.DevicePath()
    hd = devpath.DevicePathElem()
    hd.set_gpt(pnr, start, size, PART_GUID)
    dp.append(hd)
    f = devpath.DevicePathElem()
    f.set_filepath(efivars.efi_path(path))
    dp.append(f)
    return dp


def test_guid_codec_matches_uuid_bytes_le() -> None:
    for text in (efivars.EFI_GLOBAL_VARIABLE, PART_GUID, str(uuid.uuid4())):
        assert efivars.guid_to_bytes(text) == uuid.UUID(text).bytes_le
        assert efivars.guid_from_bytes(uuid.UUID(text).bytes_le) == text
        assert str(guids.parse_bin(efivars.guid_to_bytes(text), 0)) == text


def test_our_load_option_parsed_by_virt_firmware() -> None:
    for pnr, start, size, path in CASES:
        dp = (efivars.hd_node(pnr, start, size, PART_GUID) + efivars.file_node(path)
              + efivars.end_node())
        ours = efivars.encode_load_option("trusted-phone UKI bank b", dp,
                                          efivars.LOAD_OPTION_ACTIVE, b"opt")
        entry = bootentry.BootEntry(data=ours)
        assert entry.attr == efivars.LOAD_OPTION_ACTIVE
        assert str(entry.title) == "trusted-phone UKI bank b"
        assert entry.optdata == b"opt"
        assert entry.devicepath == theirs(pnr, start, size, path)
        assert str(entry.devicepath[1].get_filepath()) == efivars.efi_path(path)
        assert str(entry.devicepath[0].get_partuuid()) == PART_GUID
        assert bytes(entry) == ours


def test_virt_firmware_load_option_parsed_by_ours() -> None:
    for pnr, start, size, path in CASES:
        dp = theirs(pnr, start, size, path)
        blob = bytes(bootentry.BootEntry(attr=efivars.LOAD_OPTION_ACTIVE,
                                         title=ucs16.from_string("bank"), devicepath=dp,
                                         optdata=b"\x01\x02"))
        opt = efivars.parse_load_option(blob)
        assert opt["attributes"] == efivars.LOAD_OPTION_ACTIVE
        assert opt["description"] == "bank"
        assert opt["optional"] == b"\x01\x02"
        assert opt["device_path"] == bytes(dp)
        assert efivars.file_path_of(opt["device_path"]) == efivars.efi_path(path)
        assert efivars.hd_guid_of(opt["device_path"]) == PART_GUID
        hd = efivars.parse_hd_node(efivars.parse_device_path(opt["device_path"])[0][2])
        assert (hd["partition_number"], hd["start_lba"], hd["size_lba"]) == (pnr, start, size)
        # and the same bytes back
        assert efivars.encode_load_option("bank", opt["device_path"], opt["attributes"],
                                          opt["optional"]) == blob


def test_short_form_file_path_entry() -> None:
    """host_tools.qemu.uefivars plants entries with a File node only (virt-firmware's
    DevicePath.filepath): ours finds the path and no partition."""
    dp = devpath.DevicePath.filepath("\\EFI\\BOOT\\BOOTX64.EFI")
    blob = bytes(bootentry.BootEntry(attr=1, title=ucs16.from_string("f"), devicepath=dp))
    opt = efivars.parse_load_option(blob)
    assert efivars.file_path_of(opt["device_path"]) == "\\EFI\\BOOT\\BOOTX64.EFI"
    assert efivars.hd_guid_of(opt["device_path"]) is None
    assert bytes(efivars.file_node("EFI/BOOT/BOOTX64.EFI") + efivars.end_node()) == bytes(dp)
