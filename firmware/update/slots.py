# A/B firmware slots with MCUboot's semantics (MCUboot design: "image trailer", test/confirm/revert),
# sans-I/O over a `flash` object:
#   flash.load_state() -> bytes or None; flash.save_state(bytes) (atomic: write + rename);
#   flash.sink(bank) -> object with write(off, data), read(off, n), truncate(n); flash.capacity.
#
# Two banks, "a" and "b". The record says which bank is `confirmed` (the one to fall back to),
# which one is `pending` for the next boot (and whether permanently), and which one is on `trial`.
# Boot (`choose`, run by the stage loader before it measures anything):
#   pending, test     -> boot it once: trial = it, pending cleared, record saved BEFORE booting
#   pending, permanent-> boot it, it becomes confirmed
#   trial still set   -> the trial boot never confirmed: revert to the confirmed bank, say why
#   otherwise         -> the confirmed bank
# The phone confirms its own trial image once it is ready (`confirm_running`); only then does the
# anti-rollback floor rise (the caller raises it to the bank's counter).
# SMP sees logical slots: 0 = the bank running now, 1 = the other one (what clients expect).

import json

from firmware import canonjson
from firmware.errors import ParseError

BANKS = ("a", "b")
FORMAT = 1
EMPTY, WRITING, BOOTABLE = "empty", "writing", "bootable"


class SlotError(Exception):
    """A state change SMP asked for is not allowed now; `rc` is the IMG_MGMT_ERR code."""

    def __init__(self, rc, reason):
        super().__init__(reason)
        self.rc = rc
        self.reason = reason


IMG_NO_FREE_SLOT = 9
IMG_INVALID_SLOT = 14
IMG_INVALID_HASH = 24
IMG_IMAGE_ALREADY_PENDING = 28
IMG_IMAGE_CONFIRMATION_DENIED = 32


def other(bank):
    return "b" if bank == "a" else "a"


def initial(bank="a", version="?", counter=0, digest=b""):
    """The record of a device whose only firmware is a factory-installed `bank`."""
    banks = {b: {"state": EMPTY} for b in BANKS}
    banks[bank] = {"state": BOOTABLE, "version": version, "counter": counter, "hash": digest.hex()}
    return {"format": FORMAT, "banks": banks, "confirmed": bank, "running": bank,
            "pending": None, "permanent": False, "trial": None, "last": None}


def parse(data):
    try:
        rec = json.loads(bytes(data).decode("utf-8"))
    except (ValueError, UnicodeError):
        raise ParseError("slot record is not JSON", field="slots")
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise ParseError("slot record format is not %d" % FORMAT, field="slots.format")
    banks = rec.get("banks")
    if not isinstance(banks, dict) or sorted(banks) != list(BANKS):
        raise ParseError("slot record needs banks a and b", field="slots.banks")
    for b in BANKS:
        if not isinstance(banks[b], dict) or banks[b].get("state") not in (EMPTY, WRITING, BOOTABLE):
            raise ParseError("bank %s has no valid state" % b, field="slots.banks." + b)
    for key in ("confirmed", "running"):
        if rec.get(key) not in BANKS:
            raise ParseError("%s is not a bank" % key, field="slots." + key)
    for key in ("pending", "trial"):
        if rec.get(key) not in (None,) + BANKS:
            raise ParseError("%s is not a bank or null" % key, field="slots." + key)
    return rec


def encode(rec):
    return canonjson.dumps(rec).encode("utf-8")


def choose(rec):
    """(bank to boot, new record, note or None). The caller saves the record before booting."""
    rec = dict(rec)
    note = None
    pend = rec.get("pending")
    if pend is not None and rec["banks"][pend]["state"] == BOOTABLE:
        if rec.get("permanent"):
            rec["confirmed"], rec["trial"] = pend, None
            note = "booting %s permanently" % _name(rec, pend)
        else:
            rec["trial"] = pend
            note = "trial boot of %s (reverts unless the phone confirms it)" % _name(rec, pend)
        rec["pending"], rec["permanent"] = None, False
        rec["running"] = pend
    elif rec.get("trial") is not None:
        failed = rec["trial"]
        rec["trial"] = None
        rec["running"] = rec["confirmed"]
        note = "reverted to %s: trial image %s was never confirmed" % (
            _name(rec, rec["confirmed"]), _name(rec, failed))
        rec["last"] = note
    else:
        rec["pending"], rec["permanent"] = None, False
        rec["running"] = rec["confirmed"]
    return rec["running"], rec, note


def version_of(manifest):
    """A bundle manifest's bundle_version, a UKI package manifest's version."""
    return manifest.get("bundle_version") or manifest.get("version") or "?"


def _name(rec, bank):
    return "bank %s (version %s)" % (bank, rec["banks"][bank].get("version", "?"))


class Slots:
    IMAGE = 0  # MCUmgr image number: 0 the phone bundle, 1 the UKI (firmware/update/uki_slots.py)
    NOUN, BANK = "image", "bank"  # how refusals name this image and its banks

    def __init__(self, flash, rec):
        self.flash = flash
        self.rec = rec

    def save(self):
        self.flash.save_state(encode(self.rec))

    @property
    def running(self):
        return self.rec["running"]

    @property
    def inactive(self):
        return other(self.rec["running"])

    def logical(self, slot):
        if slot == 0:
            return self.running
        if slot == 1:
            return self.inactive
        raise SlotError(IMG_INVALID_SLOT, "slot %r does not exist (0 running, 1 other)" % (slot,))

    def images(self):
        """The SMP image-state list (ImageState: slot, version, hash, bootable, pending, confirmed,
        active, permanent); false flags are left out as MCUmgr servers do."""
        out = []
        for slot in (0, 1):
            bank = self.logical(slot)
            info = self.rec["banks"][bank]
            if info["state"] != BOOTABLE:
                continue
            img = {"image": self.IMAGE, "slot": slot, "version": info.get("version", "?"),
                   "hash": bytes.fromhex(info.get("hash", ""))}
            flags = {"bootable": True,
                     "pending": self.rec.get("pending") == bank,
                     "confirmed": self.rec["confirmed"] == bank and self.rec.get("trial") != bank,
                     "active": slot == 0,
                     "permanent": self.rec.get("pending") == bank and bool(self.rec.get("permanent"))}
            for k in ("bootable", "pending", "confirmed", "active", "permanent"):
                if flags[k]:
                    img[k] = True
            out.append(img)
        return out

    def begin_write(self):
        """The bank an upload may write; marks it being written (never booted as such)."""
        bank = self.inactive
        if self.rec.get("trial") == self.running:
            raise SlotError(IMG_NO_FREE_SLOT, "the running image is on trial; confirm it or "
                            "reset to revert before uploading (bank %s is the fallback)" % bank)
        self.rec["banks"][bank] = {"state": WRITING}
        if self.rec.get("pending") == bank:
            self.rec["pending"], self.rec["permanent"] = None, False
        self.save()
        return bank

    def written(self, bank, manifest, digest):
        self.rec["banks"][bank] = {"state": BOOTABLE, "version": version_of(manifest),
                                   "counter": manifest["anti_rollback_counter"], "hash": digest.hex()}
        self.save()

    def has_hash(self, digest):
        try:
            self._by_hash(digest)
        except SlotError:
            return False
        return True

    def _by_hash(self, digest):
        for bank in BANKS:
            info = self.rec["banks"][bank]
            if info["state"] == BOOTABLE and info.get("hash") == bytes(digest).hex():
                return bank
        raise SlotError(IMG_INVALID_HASH, "no bootable image has hash %s" % bytes(digest).hex()[:16])

    def set_state(self, digest, confirm):
        """SMP image state write: test (confirm false) or confirm (true) an image by hash; confirm
        without a hash confirms the running image."""
        if confirm and digest is None:
            return self.confirm_running()
        if digest is None:
            raise SlotError(IMG_INVALID_HASH, "a test needs the image's hash")
        bank = self._by_hash(digest)
        if bank == self.running:
            if confirm:
                return self.confirm_running()
            raise SlotError(IMG_IMAGE_ALREADY_PENDING, "the running image cannot be set for test")
        if self.rec.get("trial") == self.running:
            raise SlotError(IMG_IMAGE_CONFIRMATION_DENIED,
                            "the running image is on trial; confirm it first")
        self.rec["pending"], self.rec["permanent"] = bank, bool(confirm)
        self.save()
        return None

    def confirm_running(self):
        """Confirm the running image; returns its anti-rollback counter when this ended a trial
        (the caller raises the floor to it), else None."""
        bank = self.running
        if self.rec.get("trial") != bank:
            return None
        self.rec["trial"] = None
        self.rec["confirmed"] = bank
        self.rec["last"] = "confirmed %s" % _name(self.rec, bank)
        self.save()
        return self.rec["banks"][bank].get("counter", 0)

    def erase(self, slot):
        """Forget the other bank (never the running one, nor a trial's fallback); -> the bank."""
        bank = self.logical(1 if slot is None else slot)
        if bank == self.running:
            raise SlotError(IMG_INVALID_SLOT, "the running %s cannot be erased" % self.NOUN)
        if self.rec.get("trial") == self.running:
            raise SlotError(IMG_NO_FREE_SLOT, "%s %s is the fallback of the trial %s"
                            % (self.BANK, bank, self.NOUN))
        self.rec["banks"][bank] = {"state": EMPTY}
        if self.rec.get("pending") == bank:
            self.rec["pending"], self.rec["permanent"] = None, False
        self.save()
        self._wipe(bank)
        return bank

    def _wipe(self, bank):
        self.flash.sink(bank).truncate(0)
