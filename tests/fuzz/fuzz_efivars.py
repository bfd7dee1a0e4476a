"""UEFI boot variables (firmware/boot/efivars.py: EFI_LOAD_OPTION, device paths, BootOrder,
BootNext/BootCurrent) and the GPT reader (firmware/boot/gpt.py), then uki_banks.running_bank on a
store holding the input as Boot0000. Documented error: ParseError; running_bank never raises.
Invariant: a load option that parses re-encodes to the same bytes. Seeds: options for the UKI
banks (Hard Drive + File), a short-form File path and a hardware-only path like OVMF's."""
import _common  # noqa: F401
import atheris
import runner

with atheris.instrument_imports(include=["firmware"]):
    from firmware.boot import efivars, gpt, uki_banks
    from firmware.errors import ParseError

GUID = "2fecb143-ed96-53d4-9489-b6dad50035b0"


class Store:
    def __init__(self, data):
        self.d = {"BootCurrent": (6, b"\0\0"), "Boot0000": (7, data)}

    def get(self, name):
        return self.d.get(name)


def one_input(data):
    rb = uki_banks.running_bank(Store(data), "EFI/BOOT/BOOTX64.EFI", GUID)
    assert rb[0] in ("a", "b", None) and isinstance(rb[2], str)
    if len(data) % 2 == 0:
        assert efivars.encode_boot_order(efivars.parse_boot_order(data)) == data
    try:
        opt = efivars.parse_load_option(data)
    except ParseError:
        opt = None
    if opt is not None:
        again = efivars.encode_load_option(opt["description"], opt["device_path"],
                                           opt["attributes"], opt["optional"])
        assert again == data
        efivars.file_path_of(opt["device_path"])
        efivars.hd_guid_of(opt["device_path"])
    hdr = gpt.parse_header(data[:512], 512)
    gpt.parse_entries(hdr, data[512:])


def seeds():
    hd = efivars.hd_node(1, 2048, 131072, GUID)
    for path in ("EFI/phone/uki-b.efi", "EFI/BOOT/BOOTX64.EFI"):
        yield efivars.encode_load_option("trusted-phone UKI bank b",
                                         hd + efivars.file_node(path) + efivars.end_node())
    yield efivars.encode_load_option("f", efivars.file_node("EFI/BOOT/BOOTX64.EFI")
                                     + efivars.end_node(), 1, b"opt")
    yield efivars.encode_load_option("UEFI Misc Device", bytes.fromhex(
        "02010c00d041030a00000000010106000003") + efivars.end_node())


if __name__ == "__main__":
    runner.main("efivars", one_input, (ParseError,), seeds)
