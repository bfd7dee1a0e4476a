# UKI banks, the UEFI side (issue 11): bank a is the ESP's removable-media path (the factory UKI,
# board.json platform.esp_boot_path, UEFI 2.10 §3.5.1.1), bank b is EFI/phone/uki-b.efi on the
# same ESP. Which one boots is the firmware boot manager's choice (UEFI 2.10 §3.1):
#
#   trial of bank X:   a Boot#### entry for X's file (ensure_entry) + BootNext = it. The firmware
#                      deletes BootNext before it boots that option (§3.1.2), so a trial that
#                      never confirms falls back to BootOrder on the next boot.
#   confirm bank X:    that entry first in BootOrder (make_default).
#
# Sans-I/O: `vars` is any object with get(name) -> (attributes, data) | None,
# set(name, data, attributes), delete(name) and names() for the EFI_GLOBAL_VARIABLE vendor
# (efivarfs.EfiVarFs on the device, a dict-backed store in the tests). `esp` is the ESP's GPT
# entry as esp.geometry() returns it.

from firmware.boot import efivars
from firmware.errors import ParseError

BANK_B_PATH = "EFI/phone/uki-b.efi"
DESCRIPTION = "trusted-phone UKI bank %s"


def bank_paths(esp_boot_path):
    """{bank: File Path node text} from the board's removable path (bank a) and BANK_B_PATH."""
    return {"a": efivars.efi_path(esp_boot_path), "b": efivars.efi_path(BANK_B_PATH)}


def _same_path(p, q):
    # FAT file names are case-insensitive (UEFI 2.10 §13.3)
    return p is not None and q is not None and efivars.efi_path(p).lower() == efivars.efi_path(q).lower()


def _u16_var(vars, name):
    got = vars.get(name)
    if got is None:
        return None
    return efivars.parse_u16(got[1], name)


def _entry(vars, number):
    """The parsed Boot#### `number`, or None if it does not exist."""
    got = vars.get(efivars.boot_var_name(number))
    if got is None:
        return None
    return efivars.parse_load_option(got[1])


def running_bank(vars, esp_boot_path, esp_guid=None):
    """-> (bank or None, BootCurrent or None, reason). The bank the firmware booted: the file of
    the Boot#### entry BootCurrent names. An entry without a File node (OVMF's auto-created
    whole-disk entries, "UEFI Misc Device") boots the removable path (§3.5.1.1): bank a. With
    `esp_guid`, an entry on another partition is no bank."""
    try:
        current = _u16_var(vars, "BootCurrent")
    except ParseError as e:
        return None, None, "BootCurrent unreadable: %s" % e
    if current is None:
        return None, None, "no BootCurrent variable (not booted by a UEFI boot manager?)"
    name = efivars.boot_var_name(current)
    try:
        opt = _entry(vars, current)
    except ParseError as e:
        return None, current, "%s does not parse: %s" % (name, e)
    if opt is None:
        return None, current, "BootCurrent names %s, which does not exist" % name
    guid = efivars.hd_guid_of(opt["device_path"])
    if esp_guid is not None and guid is not None and guid != efivars.normalize_guid(esp_guid):
        return None, current, "%s boots from partition %s, not the ESP" % (name, guid)
    path = efivars.file_path_of(opt["device_path"])
    if path is None:
        return "a", current, "%s has no file path: the removable path" % name
    for bank, bank_path in sorted(bank_paths(esp_boot_path).items()):
        if _same_path(path, bank_path):
            return bank, current, "%s boots %s" % (name, path)
    return None, current, "%s boots %s, which is no UKI bank" % (name, path)


def report(vars, esp_boot_path, esp_guid=None):
    """The dict the loader records in state.json under "uki": bank, boot_current ("Boot####"),
    reason. Any failure to read is reported, never raised."""
    try:
        bank, current, reason = running_bank(vars, esp_boot_path, esp_guid)
    except Exception as e:  # noqa: BLE001  an unreadable store: say so
        bank, current, reason = None, None, "boot variables unreadable: %s: %s" % (
            e.__class__.__name__, e)
    return {"bank": bank, "boot_current": None if current is None else efivars.boot_var_name(current),
            "reason": reason}


def boot_numbers(vars):
    """The numbers of the Boot#### variables there are, ascending."""
    out = []
    for name in vars.names():
        n = efivars.parse_boot_var_name(name)
        if n is not None:
            out.append(n)
    return sorted(out)


def find_entry(vars, bank, esp, esp_boot_path):
    """The number of a Boot#### whose Hard Drive node is the ESP (its partition GUID) and whose
    File node is `bank`'s file, or None. Entries that do not parse are skipped."""
    want = bank_paths(esp_boot_path)[bank]
    guid = efivars.normalize_guid(esp["partition_guid"])
    for n in boot_numbers(vars):
        try:
            opt = _entry(vars, n)
        except ParseError:
            continue
        if opt is None:
            continue
        try:
            if efivars.hd_guid_of(opt["device_path"]) == guid and \
                    _same_path(efivars.file_path_of(opt["device_path"]), want):
                return n
        except ParseError:
            continue
    return None


def device_path(bank, esp, esp_boot_path):
    """Hard Drive node (the ESP) + File node (the bank's file) + End (UEFI 2.10 §10.3.5.1,
    §10.3.5.4, §10.3.1): what edk2's boot manager writes for a file on a GPT partition."""
    return (efivars.hd_node(esp["partition_number"], esp["start_lba"], esp["size_lba"],
                            esp["partition_guid"])
            + efivars.file_node(bank_paths(esp_boot_path)[bank]) + efivars.end_node())


def ensure_entry(vars, bank, esp, esp_boot_path):
    """-> the number of an active Boot#### for `bank`: an existing one (re-activated if it was
    not), else a new one at the lowest free number."""
    if bank not in ("a", "b"):
        raise ValueError("no UKI bank %r" % (bank,))
    n = find_entry(vars, bank, esp, esp_boot_path)
    if n is not None:
        got = vars.get(efivars.boot_var_name(n))
        opt = efivars.parse_load_option(got[1])
        if opt["attributes"] & efivars.LOAD_OPTION_ACTIVE:
            return n
        vars.set(efivars.boot_var_name(n), efivars.encode_load_option(
            opt["description"], opt["device_path"], opt["attributes"] | efivars.LOAD_OPTION_ACTIVE,
            opt["optional"]), efivars.BOOT_VAR_ATTRIBUTES)
        return n
    used = set(boot_numbers(vars))
    n = 0
    while n in used:
        n += 1
    if n > 0xFFFF:
        raise ValueError("no free Boot#### number")
    vars.set(efivars.boot_var_name(n), efivars.encode_load_option(
        DESCRIPTION % bank, device_path(bank, esp, esp_boot_path)), efivars.BOOT_VAR_ATTRIBUTES)
    return n


def set_boot_next(vars, bank, esp, esp_boot_path):
    """Boot `bank` once, at the next boot only (§3.1.2 BootNext); -> its Boot#### number."""
    n = ensure_entry(vars, bank, esp, esp_boot_path)
    vars.set("BootNext", efivars.encode_u16(n), efivars.BOOT_VAR_ATTRIBUTES)
    return n


def boot_order(vars):
    got = vars.get("BootOrder")
    return [] if got is None else efivars.parse_boot_order(got[1])


def make_default(vars, bank, esp, esp_boot_path):
    """`bank`'s entry first in BootOrder, the others after it in their order, no duplicates;
    -> its Boot#### number."""
    current = boot_order(vars)  # first: an unreadable BootOrder changes nothing
    n = ensure_entry(vars, bank, esp, esp_boot_path)
    order = [n]
    for m in current:
        if m not in order:
            order.append(m)
    vars.set("BootOrder", efivars.encode_boot_order(order), efivars.BOOT_VAR_ATTRIBUTES)
    return n
