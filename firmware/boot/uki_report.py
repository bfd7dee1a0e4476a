# The stage loader's record of the UKI bank this boot came from (state.json "uki", shown by the
# console's `status`): BootCurrent's Boot#### entry read through efivarfs (uki_banks.py). I/O.

from firmware.boot import efivarfs, esp, uki_banks
from firmware.boot.partitions import esp_boot_path


_report = None  # BootCurrent does not change within a boot: read once


def boot_report(store=None):
    """dict(bank "a"/"b"/None, boot_current "Boot####"/None, reason); never raises. The first
    call reads the variables; later ones (without `store`) return the same record."""
    global _report
    if _report is not None and store is None:
        return _report
    _report = _read(store or efivarfs.EfiVarFs())
    return _report


def _read(store):
    why = store.available()
    if why is not None:
        return {"bank": None, "boot_current": None, "reason": why}
    path = esp_boot_path()
    if path is None:
        return {"bank": None, "boot_current": None,
                "reason": "no board ESP boot path in this initramfs"}
    esp_error = None
    try:
        guid = esp.geometry()["partition_guid"]
    except Exception as e:  # noqa: BLE001  the ESP's GUID only refines the answer: reported
        guid, esp_error = None, "%s: %s" % (e.__class__.__name__, e)
    out = uki_banks.report(store, path, guid)
    if esp_error is not None:
        out["esp_error"] = esp_error
    return out
