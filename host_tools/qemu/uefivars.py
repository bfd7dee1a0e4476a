"""A device's UEFI variable store (OVMF_VARS.fd, edk2 format) through virt-firmware's API:
boot entries (UEFI 2.10 §3.1.3 Load Options, §3.3 BootNext/BootOrder) and the Secure Boot key
databases (UEFI 2.10 §32.3-32.6: PK, KEK, db, dbx as EFI_SIGNATURE_LISTs).

Used by the Secure Boot enrollment of the image build (host_tools/image/secureboot.py) and by the
attack tests that plant a boot entry carrying a kernel command line (issue 9).
"""

from __future__ import annotations

import datetime
from pathlib import Path

from virt.firmware.efi import devpath, ucs16
from virt.firmware.varstore import edk2

# A fixed timestamp for authenticated variables (EFI_VARIABLE_AUTHENTICATION_2's TimeStamp):
# virt-firmware stamps "now", which would make the enrolled template differ on every build.
FIXED_TIME = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


class VarsError(RuntimeError):
    """The variable store cannot be read or changed; names the file."""


def _open(path: Path) -> tuple[object, object]:
    try:
        store = edk2.Edk2VarStore(str(path))
        return store, store.get_varlist()
    except (OSError, ValueError, RuntimeError) as e:
        raise VarsError(f"{path}: not an edk2 variable store ({e})") from None
    except SystemExit:  # virt-firmware exits (after logging) when it finds no variable store
        raise VarsError(f"{path}: not an edk2 variable store (no NV variable volume found)") from None


def add_boot_entry(path: Path, filepath: str, options: str | None, boot_next: bool = True) -> int:
    """Add Boot#### for *filepath* on any file system (a short-form file-path device path, which
    OVMF expands by searching every SimpleFileSystem), with *options* as its OptionalData
    (UCS-2 with NUL, what systemd-stub reads as the command line), first in BootOrder and,
    with *boot_next*, as BootNext. Returns the entry's number."""
    store, varlist = _open(path)
    opt = bytes(ucs16.from_string(options)) if options is not None else None
    index = varlist.add_boot_entry("file " + filepath.split("\\")[-1],  # type: ignore[attr-defined]
                                   devpath.DevicePath.filepath(filepath), opt)
    if index is None:
        raise VarsError(f"{path}: no free Boot#### number")
    varlist.append_boot_order(index)  # type: ignore[attr-defined]
    order = varlist.get("BootOrder")  # type: ignore[attr-defined]
    # first in BootOrder (append puts it last): OVMF's own entries would be tried first otherwise
    entries = [int.from_bytes(order.data[i:i + 2], "little") for i in range(0, len(order.data), 2)]
    entries = [index] + [e for e in entries if e != index]
    order.data = b"".join(e.to_bytes(2, "little") for e in entries)
    if boot_next:
        varlist.set_boot_next(index)  # type: ignore[attr-defined]
    store.write_varstore(str(path), varlist)  # type: ignore[attr-defined]
    return int(index)


def enroll(src: Path, dest: Path, owner: str, pk: Path, kek: Path, db: Path) -> None:
    """Write *dest*: *src* with PK, KEK and db set to one certificate each (PEM/DER files),
    dbx holding virt-firmware's dummy entry, and Secure Boot enabled (what `virt-fw-vars
    --set-pk --add-kek --add-db --sb` does). Authenticated-variable timestamps are fixed.
    Whatever variables *src* holds are dropped first: it serves as the format of the store only
    (AAVMF ships its formatted store with Microsoft's keys and an all-zero one; OVMF's is empty).
    """
    store, varlist = _open(src)
    varlist.clear()  # type: ignore[attr-defined]
    varlist.add_cert("PK", owner, str(pk), True)  # type: ignore[attr-defined]
    varlist.add_cert("KEK", owner, str(kek))  # type: ignore[attr-defined]
    varlist.add_cert("db", owner, str(db))  # type: ignore[attr-defined]
    varlist.enable_secureboot()  # type: ignore[attr-defined]
    for var in varlist.values():  # type: ignore[attr-defined]
        if var.time is not None:
            var.time = FIXED_TIME
    store.write_varstore(str(dest), varlist)  # type: ignore[attr-defined]


def variable_data(path: Path, name: str) -> bytes | None:
    """The data of variable *name* (None when absent)."""
    _store, varlist = _open(path)
    var = varlist.get(name)  # type: ignore[attr-defined]
    return None if var is None else bytes(var.data)


def add_gpt_file_entry(path: Path, title: str, partition: tuple[int, int, int, str],
                       filepath: str, boot_next: bool = True) -> int:
    """Add an active Boot#### for *filepath* (backslash path) on the GPT partition *partition*
    (number, start LBA, size LBA, unique partition GUID): a Hard Drive node + File node device
    path (UEFI 2.10 §10.3.5.1, §10.3.5.4), what edk2 writes for a file on a disk. BootOrder is
    left alone; with *boot_next* it is BootNext (booted once, §3.1.2). Returns its number."""
    store, varlist = _open(path)
    number, start, size, guid = partition
    hd = devpath.DevicePathElem()
    hd.set_gpt(number, start, size, guid)
    dp = devpath.DevicePath()
    dp.append(hd)
    f = devpath.DevicePathElem()
    f.set_filepath(filepath)
    dp.append(f)
    index = varlist.add_boot_entry(title, dp)  # type: ignore[attr-defined]
    if index is None:
        raise VarsError(f"{path}: no free Boot#### number")
    if boot_next:
        varlist.set_boot_next(index)  # type: ignore[attr-defined]
    store.write_varstore(str(path), varlist)  # type: ignore[attr-defined]
    return int(index)
