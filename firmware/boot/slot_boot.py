# The stage loader's bank choice, run BEFORE anything is measured (MCUboot design, "Boot swap
# types": the bootloader decides test / revert / permanent from the image trailers first, and
# records a trial before it jumps to the image). The record and the banks are on partitions only
# root reads and writes (firmware/update/partition_flash.py); firmware/update/slots.py decides.
#
#   no record (a fresh image), or an unreadable one: bank a is the only firmware, confirmed
#   otherwise: slots.choose (pending test -> trial, unconfirmed trial -> revert, else confirmed)
# The record is saved before the chosen bank is read, so a trial that never gets to confirm
# itself (crash, power cut, reset) is reverted by the next boot.

from firmware import compat
from firmware.boot import manifest as manifest_mod
from firmware.boot import stage, ustar
from firmware.errors import ParseError
from firmware.update import slots as S
from firmware.update import uki_slots


def factory_record(image):
    """slots.initial for bank a holding `image` (the partition: bundle + zero padding). Version
    and counter are the manifest's labels (not yet verified: the loader verifies the bundle after
    measuring it); the hash is the SHA-256 of the archive as written (ustar.archive_length)."""
    version, counter = "?", 0
    try:
        man_bytes = stage.split(image)[0]
        if man_bytes is not None:
            man = manifest_mod.parse(man_bytes)
            version, counter = man["bundle_version"], man["anti_rollback_counter"]
        n = ustar.archive_length(image)
    except ParseError:
        n = 0
    return S.initial("a", version, counter, compat.sha256(bytes(image[:n])))


def choose_bank(flash, log, uki_running=False):
    """-> (bank, Slots, note or None). Saves the record before returning (the trial is recorded
    before the bank is booted). OSError from the flash is the caller's to handle.
    `uki_running`: the UKI bank the firmware booted ("a"/"b", None unknown; False: this board has
    no UKI banks), recorded first (uki_slots.observe); a pending UKI that did not start takes the
    bundle's pending test of the same update with it."""
    rec = None
    data = flash.load_state()
    if data is not None:
        try:
            rec = S.parse(data)
        except ParseError as e:
            log("slot record unusable (%s): bank a, the factory firmware" % e)
    if rec is None:
        rec = factory_record(flash.read_bundle("a"))
    if uki_running is not False:
        urec, unote, started = uki_slots.observe(uki_slots.of(rec), uki_running)
        rec["uki"] = urec
        if unote is not None:
            log(unote)
        if not started and rec.get("pending") is not None:
            log("the pending test of bank %s is dropped with it" % rec["pending"])
            rec["pending"], rec["permanent"] = None, False
    bank, rec, note = S.choose(rec)
    slots = S.Slots(flash, rec)
    slots.save()
    return bank, slots, note


def summary(rec):
    """What `status` shows of the record: the bank running, whether it is a trial, the confirmed
    bank and the last event (a revert says why)."""
    out = {"running": rec["running"], "trial": rec.get("trial") == rec["running"],
           "confirmed": rec["confirmed"], "pending": rec.get("pending"), "last": rec.get("last")}
    if isinstance(rec.get("uki"), dict):
        out["uki"] = uki_slots.summary(uki_slots.of(rec))
    return out
