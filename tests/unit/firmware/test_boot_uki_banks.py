# firmware.boot.uki_banks on an in-memory variable store (the efivarfs shim's get/set/delete/
# names, EFI_GLOBAL_VARIABLE only): which bank BootCurrent booted, the bank's Boot#### entry,
# BootNext for a trial and BootOrder for a confirmed bank.
from firmware.boot import efivars, uki_banks
from firmware.errors import ParseError
from tests.unit.firmware.check import raises, unhex

ESP = {"partition_number": 1, "start_lba": 2048, "size_lba": 131072,
       "partition_guid": "2B1A0F9E-8D7C-6B9A-5F4E-4D8C2A1B3E0F"}
BOOT_PATH = "EFI/BOOT/BOOTX64.EFI"
NV = efivars.BOOT_VAR_ATTRIBUTES
# what OVMF creates for the disk at first boot ("UEFI Misc Device"): PciRoot(0)/Pci(3,0), no file
MISC = efivars.encode_load_option("UEFI Misc Device", unhex("02 01 0c00 d041030a 00000000")
                                  + unhex("01 01 0600 00 03") + efivars.end_node())
SHELL = efivars.encode_load_option("EFI Internal Shell", unhex(
    "04 07 1400 c9bdb87c ebf8 3443 aaea 3ee4af651a6e 04 06 1400 83a50e7c 0af9 1e4e"
    " a4a0 d8a3f3a3a4d5") + efivars.end_node())


class DictVars:
    def __init__(self, items=None):
        self.d = dict(items or {})
        self.writes = []

    def get(self, name):
        return self.d.get(name)

    def set(self, name, data, attributes=NV):
        self.writes.append(name)
        self.d[name] = (attributes, bytes(data))

    def delete(self, name):
        return self.d.pop(name, None) is not None

    def names(self):
        return sorted(self.d)


def ovmf_like():
    return DictVars({"Boot0000": (NV, SHELL), "Boot0001": (NV, MISC),
                     "BootOrder": (NV, efivars.encode_boot_order([1, 0])),
                     "BootCurrent": (6, efivars.encode_u16(1))})


def test_bank_paths():
    assert uki_banks.bank_paths("EFI/BOOT/BOOTAA64.EFI") == {
        "a": "\\EFI\\BOOT\\BOOTAA64.EFI", "b": "\\EFI\\phone\\uki-b.efi"}


def test_running_bank_misc_device_is_bank_a():
    v = ovmf_like()
    assert uki_banks.running_bank(v, BOOT_PATH) == (
        "a", 1, "Boot0001 has no file path: the removable path")
    assert uki_banks.report(v, BOOT_PATH) == {
        "bank": "a", "boot_current": "Boot0001",
        "reason": "Boot0001 has no file path: the removable path"}


def test_trial_then_confirm():
    v = ovmf_like()
    n = uki_banks.set_boot_next(v, "b", ESP, BOOT_PATH)
    assert n == 2  # lowest free number
    opt = efivars.parse_load_option(v.get("Boot0002")[1])
    assert opt["attributes"] == efivars.LOAD_OPTION_ACTIVE
    assert opt["description"] == "trusted-phone UKI bank b"
    assert opt["device_path"] == (efivars.hd_node(1, 2048, 131072, ESP["partition_guid"])
                                  + efivars.file_node("EFI/phone/uki-b.efi") + efivars.end_node())
    assert v.get("BootNext") == (NV, unhex("0200"))
    assert v.get("BootOrder")[1] == efivars.encode_boot_order([1, 0])  # a trial leaves it
    # the firmware deletes BootNext and boots Boot0002 (UEFI 2.10 §3.1.2)
    v.delete("BootNext")
    v.set("BootCurrent", efivars.encode_u16(2), 6)
    assert uki_banks.running_bank(v, BOOT_PATH, ESP["partition_guid"].lower())[0] == "b"
    # the same entry is reused, not duplicated
    assert uki_banks.set_boot_next(v, "b", ESP, BOOT_PATH) == 2
    assert uki_banks.make_default(v, "b", ESP, BOOT_PATH) == 2
    assert efivars.parse_boot_order(v.get("BootOrder")[1]) == [2, 1, 0]
    assert uki_banks.boot_numbers(v) == [0, 1, 2]
    # back to bank a: a new entry for the removable path, first; no duplicates
    assert uki_banks.make_default(v, "a", ESP, BOOT_PATH) == 3
    assert efivars.parse_boot_order(v.get("BootOrder")[1]) == [3, 2, 1, 0]
    assert uki_banks.make_default(v, "b", ESP, BOOT_PATH) == 2
    assert efivars.parse_boot_order(v.get("BootOrder")[1]) == [2, 3, 1, 0]
    v.set("BootCurrent", efivars.encode_u16(3), 6)
    assert uki_banks.running_bank(v, BOOT_PATH)[:2] == ("a", 3)


def test_entry_matching_is_by_esp_guid_and_case_insensitive_path():
    v = DictVars()
    other = dict(ESP, partition_guid="11111111-2222-3333-4444-555555555555")
    # an entry for the same file on another partition is not ours
    v.set("Boot0000", efivars.encode_load_option("x", uki_banks.device_path("b", other, BOOT_PATH)))
    # one of ours, path in another case, inactive: reused and re-activated
    dp = (efivars.hd_node(1, 2048, 131072, ESP["partition_guid"])
          + efivars.file_node("\\efi\\PHONE\\UKI-B.EFI") + efivars.end_node())
    v.set("Boot0005", efivars.encode_load_option("old", dp, 0))
    v.set("Boot0001", b"\1\0")  # malformed: skipped, not fatal
    assert uki_banks.ensure_entry(v, "b", ESP, BOOT_PATH) == 5
    assert efivars.parse_load_option(v.get("Boot0005")[1])["attributes"] == 1
    assert uki_banks.ensure_entry(v, "a", ESP, BOOT_PATH) == 2
    assert raises(ValueError, uki_banks.ensure_entry, v, "c", ESP, BOOT_PATH)
    v.set("BootCurrent", efivars.encode_u16(0))
    bank, cur, why = uki_banks.running_bank(v, BOOT_PATH, ESP["partition_guid"])
    assert (bank, cur) == (None, 0)
    assert "11111111-2222-3333-4444-555555555555" in why and "not the ESP" in why


def test_running_bank_fails_closed_with_a_reason():
    v = DictVars()
    assert uki_banks.running_bank(v, BOOT_PATH) == (
        None, None, "no BootCurrent variable (not booted by a UEFI boot manager?)")
    v.set("BootCurrent", b"\1")
    bank, cur, why = uki_banks.running_bank(v, BOOT_PATH)
    assert (bank, cur) == (None, None) and why.startswith("BootCurrent unreadable")
    v.set("BootCurrent", efivars.encode_u16(9))
    assert uki_banks.running_bank(v, BOOT_PATH) == (
        None, 9, "BootCurrent names Boot0009, which does not exist")
    v.set("Boot0009", b"\1\0\0\0\xff\xff")
    bank, cur, why = uki_banks.running_bank(v, BOOT_PATH)
    assert (bank, cur) == (None, 9) and why.startswith("Boot0009 does not parse")
    v.set("Boot0009", efivars.encode_load_option(
        "shell", efivars.file_node("EFI/tools/shell.efi") + efivars.end_node()))
    assert uki_banks.running_bank(v, BOOT_PATH) == (
        None, 9, "Boot0009 boots \\EFI\\tools\\shell.efi, which is no UKI bank")


def test_report_never_raises():
    class Broken(DictVars):
        def get(self, name):
            raise OSError("efivarfs gone")
    r = uki_banks.report(Broken(), BOOT_PATH)
    assert r == {"bank": None, "boot_current": None,
                 "reason": "boot variables unreadable: OSError: efivarfs gone"}


def test_malformed_boot_order_refuses_make_default():
    v = ovmf_like()
    v.set("BootOrder", b"\1\0\2")
    assert raises(ParseError, uki_banks.make_default, v, "b", ESP, BOOT_PATH).field == "BootOrder"
    assert v.writes == ["BootOrder"]  # nothing written after the refusal
