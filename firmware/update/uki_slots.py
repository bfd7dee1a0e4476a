# The UKI's two banks (issue 11 §1: A/B "for the bundle, and the UKI where the board allows"),
# kept in the same slot record as the bundle's banks, under "uki", in the same shape (slots.py):
# banks a/b, confirmed, running, pending, permanent, trial, last. MCUmgr image 1.
#
# Who decides differs from the bundle. The bundle's bank is chosen by the stage loader
# (slots.choose); the UKI's by the UEFI boot manager before any of our code runs: a test sets the
# one-shot BootNext to the new bank's Boot#### entry (UEFI 2.10 §3.1.2: the boot manager deletes
# BootNext before it boots that option, so a reset boots BootOrder again), a confirm puts the
# entry first in BootOrder. So at boot the loader only observes which bank the firmware started
# (BootCurrent, firmware/boot/uki_banks.py) and records what that means, with MCUboot's words:
#   pending p, running p      -> trial of p (or confirmed, if the test was permanent)
#   pending p, running other  -> p did not start (Secure Boot refused it, or it would not load):
#                                the pending test is dropped and recorded as the last event
#   trial t, running other    -> t never confirmed: the firmware already reverted; recorded
#   otherwise                 -> running = what the firmware booted
# The phone confirms a trial UKI itself once ready, with the bundle (firmware/console/updates.py).

from firmware.update import slots as S

IMAGE = 1


def initial(version="?", counter=0, digest=b""):
    """A device whose only UKI is the factory one in bank a (the ESP's removable path)."""
    return S.initial("a", version, counter, digest)


def of(rec):
    """The record's UKI part (a valid one, or the factory one); a copy, stored back by the caller."""
    urec = rec.get("uki")
    if isinstance(urec, dict):
        try:
            return S.parse(S.encode(urec))
        except Exception:  # noqa: BLE001  an unusable part is replaced by the factory one
            pass
    return initial()


def name(urec, bank):
    return "UKI bank %s (version %s)" % (bank, urec["banks"][bank].get("version", "?"))


def observe(urec, running):
    """(new UKI record, note or None, started): what the firmware's choice of `running` ("a",
    "b", or None when unknown) means. `started` is False when a pending UKI did not start (the
    caller drops the bundle's pending test of the same update: the two go together)."""
    urec = dict(urec)
    note, started = None, True
    if running is None:
        return urec, "the firmware's boot entry is not a UKI bank: recorded as %s" % urec["running"], True
    pend, trial = urec.get("pending"), urec.get("trial")
    if pend is not None:
        if running == pend:
            if urec.get("permanent"):
                urec["confirmed"], urec["trial"] = pend, None
                note = "booting %s permanently" % name(urec, pend)
            else:
                urec["trial"] = pend
                note = "trial boot of %s (reverts unless the phone confirms it)" % name(urec, pend)
        else:
            started = False
            note = "%s did not start: the firmware booted %s (Secure Boot refused it, or it " \
                   "did not load)" % (name(urec, pend), name(urec, running))
            urec["last"] = note
            urec["trial"] = None
        urec["pending"], urec["permanent"] = None, False
    elif trial is not None and running != trial:
        note = "reverted to %s: trial %s was never confirmed" % (name(urec, running), name(urec, trial))
        urec["last"] = note
        urec["trial"] = None
    urec["running"] = running
    if urec.get("trial") is None and urec["confirmed"] != running:
        # the firmware booted a bank that was not the confirmed one without a test (BootOrder
        # changed behind our back, or the confirmed bank would not start): it is what runs
        urec["confirmed"] = running
    return urec, note, started


class UkiSlots(S.Slots):
    """slots.Slots over the record's "uki" part: the same MCUmgr state rules (test by hash,
    confirm the running one, the fallback of a trial is never overwritten); `parent` is the
    bundle's Slots, which saves the whole record. The ESP file is written by the broker, not
    through a sink."""

    IMAGE = IMAGE
    NOUN, BANK = "UKI", "UKI bank"

    def __init__(self, parent):
        self.parent = parent
        urec = of(parent.rec)
        parent.rec["uki"] = urec
        S.Slots.__init__(self, parent.flash, urec)

    def save(self):
        self.parent.rec["uki"] = self.rec
        self.parent.save()

    def _wipe(self, bank):
        """The ESP file is the broker's to remove (broker_uki.py), not a sink's."""

    def summary(self):
        return summary(self.rec)


def summary(urec):
    """What `status` shows under slot.uki."""
    return {"running": urec["running"], "trial": urec.get("trial") == urec["running"],
            "confirmed": urec["confirmed"], "pending": urec.get("pending"), "last": urec.get("last"),
            "version": urec["banks"][urec["running"]].get("version", "?")}
