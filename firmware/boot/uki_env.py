# The UEFI side of the UKI banks for the root broker (firmware/boot/broker_uki.py `env`) and the
# loader's observation at boot: the ESP files (esp.py: mounted only while one operation runs)
# and the boot variables (efivarfs.py + uki_banks.py: Boot####, BootNext, BootOrder). I/O.

from firmware.boot import esp, efivarfs, pe_osrel, uki_banks, uki_report
from firmware.boot.partitions import esp_boot_path


def detect(log):
    """At boot: -> (env or None, the UKI bank the firmware booted). The bank is False when this
    device has no UKI banks (no efivarfs, no ESP path in the initramfs, no ESP partition): the
    record's UKI part is then left alone; None when the firmware booted an entry that is no bank."""
    rep = uki_report.boot_report()
    store = efivarfs.EfiVarFs()
    why = store.available()
    path = esp_boot_path()
    if why is not None or path is None:
        log("UKI banks: none on this device (%s)" % (why or "no ESP boot path in the initramfs"))
        return None, False
    try:
        geo = esp.geometry()
    except Exception as e:  # noqa: BLE001  no ESP to write: no UKI banks
        log("UKI banks: none on this device (ESP: %s)" % e)
        return None, False
    log("UKI: %s" % rep.get("reason"))
    return UefiEnv(store, path, geo), rep.get("bank")


class UefiEnv:
    def __init__(self, store, boot_path, geometry):
        self.store = store
        self.boot_path = boot_path
        self.geometry = geometry

    def _rel(self, bank):
        return uki_banks.bank_paths(self.boot_path)[bank]

    def read(self, bank):
        with esp.Esp() as e:
            return e.read(self._rel(bank))

    def write(self, bank, data):
        with esp.Esp() as e:
            e.write(self._rel(bank), data)
        uki_banks.ensure_entry(self.store, bank, self.geometry, self.boot_path)

    def remove(self, bank):
        import os
        with esp.Esp() as e:
            if e.exists(self._rel(bank)):
                os.remove(e.path(self._rel(bank)))

    def set_boot_next(self, bank):
        uki_banks.set_boot_next(self.store, bank, self.geometry, self.boot_path)

    def make_default(self, bank):
        uki_banks.make_default(self.store, bank, self.geometry, self.boot_path)

    @staticmethod
    def version_of(data):
        return pe_osrel.image_version(data) or "?"
