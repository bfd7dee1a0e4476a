# The root broker's UKI-bank operations (MCUmgr image 1; firmware/update/uki_slots.py has the
# rules, docs/flashing.md "UKI banks"). The phone stages a vendor-signed UKI package (full or a
# delta against the UKI it runs: firmware/update/uki_package.py); root reads it once, checks it
# again (signature, board, the TPM's anti-rollback floor), rebuilds the UKI, and only then writes
# the inactive bank's file on the ESP, reads it back and checks it against the signed size and
# SHA-256 before the bank is bootable. `env` is the UEFI side (firmware/boot/uki_env.py):
#   env.read(bank) -> bytes; env.write(bank, data); env.remove(bank); env.version_of(uki);
#   env.set_boot_next(bank); env.make_default(bank)      (Boot####, BootNext, BootOrder)
# A test sets BootNext to the new bank (one boot, then the firmware's BootOrder again: the
# revert); the phone's confirm puts it first in BootOrder.

from firmware import compat
from firmware.update import staged
from firmware.update import uki_package
from firmware.update.slots import IMG_INVALID_HASH, SlotError
from firmware.update.upload import IMG_FLASH_WRITE_FAILED, IMG_INVALID_IMAGE_HEADER, UploadRefused

MAX_PACKAGE = 48 << 20  # bytes: a whole UKI (16 MB today) with room to grow


class UkiOps:
    def __init__(self, slots, env, verify, board, staged_path, log):
        self.slots = slots
        self.env = env
        self.verify = verify
        self.board = board
        self.staged_path = staged_path
        self.log = log

    def images(self):
        self._know_factory()
        out = []
        for img in self.slots.images():
            img = dict(img)
            img["hash"] = img["hash"].hex()
            out.append(img)
        return out

    def _know_factory(self):
        """The factory bank's hash and version, learnt once from the ESP (the loader did not read
        16 MB at boot for it)."""
        info = self.slots.rec["banks"]["a"]
        if info.get("state") != "bootable" or info.get("hash"):
            return
        try:
            data = self.env.read("a")
        except OSError as e:
            self.log("broker: UKI bank a unreadable: %s" % e)
            return
        info["hash"] = compat.sha256(data).hex()
        info["version"] = self.env.version_of(data)  # its .osrel (pe_osrel.py)
        self.slots.save()

    def has(self, digest):
        self._know_factory()
        return self.slots.has_hash(digest)

    def set_state(self, digest, confirm):
        self.slots.set_state(digest, confirm)
        bank = self.slots.rec.get("pending")
        if bank is None:
            return
        try:
            self.env.set_boot_next(bank)
            if confirm:
                self.env.make_default(bank)
        except OSError as e:
            self.slots.rec["pending"], self.slots.rec["permanent"] = None, False
            self.slots.save()
            raise SlotError(IMG_FLASH_WRITE_FAILED, "UEFI variables: %s" % e)
        self.log("broker: UKI bank %s set for %s (BootNext)" % (bank, "boot" if confirm else "test"))

    def confirm_running(self):
        """Confirm the running trial UKI: BootOrder starts with it. True when a trial ended."""
        if self.slots.confirm_running() is None:
            return False
        self.env.make_default(self.slots.running)
        self.log("broker: UKI bank %s confirmed: first in BootOrder" % self.slots.running)
        return True

    def erase(self, slot):
        bank = self.slots.erase(slot)
        try:
            self.env.remove(bank)
        except OSError as e:
            raise SlotError(IMG_FLASH_WRITE_FAILED, "removing UKI bank %s: %s" % (bank, e))

    def install(self, length, sha_hex, floor):
        data = staged.read_staged(self.staged_path, length, MAX_PACKAGE)
        if not compat.constant_time_equal(compat.sha256(data), bytes.fromhex(sha_hex)):
            raise UploadRefused(IMG_INVALID_HASH, "the staged UKI package's SHA-256 differs from "
                                "the announced sha")
        try:
            man = uki_package.verify(data, self.verify, self.board, floor,
                                     None if floor is not None else "the TPM did not give the floor")
        except uki_package.UkiError as e:
            raise UploadRefused(e.rc, e.reason)
        try:  # in memory, before the inactive bank is touched (a wrong base leaves it as it was)
            uki = uki_package.rebuild(data, self._base())
        except uki_package.UkiError as e:
            raise UploadRefused(e.rc, e.reason)
        bank = self.slots.begin_write()
        self.log("broker: installing the staged UKI package (%d bytes) into UKI bank %s"
                 % (len(data), bank))
        try:
            self.env.write(bank, uki)
            back = self.env.read(bank)
        except OSError as e:
            raise UploadRefused(IMG_FLASH_WRITE_FAILED, "writing UKI bank %s: %s" % (bank, e))
        digest = compat.sha256(back)
        if back != uki or not compat.constant_time_equal(digest, uki_package.signed_sha(man)):
            raise UploadRefused(IMG_INVALID_IMAGE_HEADER, "UKI bank %s does not hold the signed UKI "
                                "after writing" % bank)
        self.slots.written(bank, man, digest)
        self.log("broker: UKI bank %s holds version %s, verified, bootable" % (bank, man["version"]))
        return {"version": man["version"], "counter": man["anti_rollback_counter"], "bank": bank}

    def _base(self):
        """read(off, n) of what a delta is made against: the running bank's UKI, read from the
        ESP once, when the delta first asks (a full package never does)."""
        env, running, held = self.env, self.slots.running, []

        def read(off, n):
            if not held:
                held.append(env.read(running))
            return held[0][off:off + n]
        return read
