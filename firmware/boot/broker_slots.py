# The root broker's firmware-bank operations (broker.py: slots, slot_state, slot_erase,
# slot_install). The slot record was loaded and saved by the loader before it measured
# (slot_boot.py); the broker, forked after, is the only writer from then on. Uploads go through
# the same LocalBackend and Upload session as a directory of banks (firmware/update), so the
# checks are the same code: signature, board, the TPM's anti-rollback floor before writing, every
# component and the announced SHA-256 after (firmware/update/staged.py).
#
# Confirming a trial image is what raises the anti-rollback floor (MCUboot design: an image is
# only made permanent once the application confirms it; TPM 2.0 Part 1 §37.2.4 NV bits only ever
# OR in): the floor moves to the confirmed bank's counter, so a trial that never confirms leaves
# the old bank bootable.

from firmware.boot import antirollback, slot_boot
from firmware.update import staged
from firmware.update.local import LocalBackend
from firmware.update.slots import IMG_INVALID_SLOT, SlotError
from firmware.update.upload import Upload

STAGED_NAME = "upload/staged.bundle"  # under the run dir: written by the phone, read by root


class SlotOps:
    """`slots`: firmware.update.slots.Slots on the partitions; `verify`: the vendor signature
    check (None: every upload is refused as unsigned); `board`; `pcr`: the component register;
    `tpm`: for the floor (read at install, raised at confirm); `staged_path`; `log(line)`: the
    loader's console log (an install's start and end, so a power cut can be placed)."""

    def __init__(self, slots, verify, board, pcr, tpm, staged_path, floor_index=antirollback.FLOOR_INDEX,
                 log=None, uki=None):
        self.slots = slots
        self.uki = uki  # broker_uki.UkiOps (MCUmgr image 1), None: this board's UKI has no banks
        self.backend = LocalBackend(slots)
        self.verify = verify
        self.board = board
        self.pcr = pcr
        self.tpm = tpm
        self.staged_path = staged_path
        self.floor_index = floor_index
        self.log = log or (lambda line: None)

    @property
    def trial(self):
        return self.slots.rec.get("trial") == self.slots.running

    def _images(self):
        out = []
        for img in self.backend.images():
            img = dict(img)
            img["hash"] = img["hash"].hex()
            out.append(img)
        if self.uki is not None:
            out.extend(self.uki.images())
        return out

    def slots_read(self):
        slot = slot_boot.summary(self.slots.rec)
        slot["floor"] = self.floor() if self.tpm is not None else None  # the TPM's, now
        return {"images": self._images(), "slot": slot, "capacity": self.slots.flash.capacity}

    def slot_state(self, digest_hex, confirm):
        """By hash: the bundle's or the UKI's image; confirm with no hash confirms both running
        images (a release's UKI and bundle go on trial together and are confirmed together)."""
        digest = None if digest_hex is None else bytes.fromhex(digest_hex)
        out = {}
        if self.uki is not None and digest is not None and self.uki.has(digest):
            self.uki.set_state(digest, confirm)
            out.update(self.slots_read())
            return out
        if self.uki is not None and digest is None and confirm:
            if self.uki.confirm_running():
                out["uki_confirmed"] = self.uki.slots.running
        counter = self.backend.set_state(digest, confirm)
        if counter is not None:
            out["confirmed_counter"] = counter
            err = self._raise_floor(counter)
            if err is not None:
                out["floor_error"] = err
        out.update(self.slots_read())
        return out

    def _raise_floor(self, counter):
        """Revoke every counter below `counter` (firmware/secrets/rollback.py); None or why not."""
        from firmware.secrets import rollback
        try:
            rollback.commit(self.tpm, counter, self.floor_index)
        except Exception as e:  # noqa: BLE001  an unprovisioned TPM has no index: said, not fatal
            return "%s: %s" % (e.__class__.__name__, e)
        return None

    def slot_erase(self, slot):
        """MCUmgr slot numbers: 0, 1 the bundle's (running, other); 2, 3 the UKI's (image 1)."""
        if slot >= 2:
            if self.uki is None:
                raise SlotError(IMG_INVALID_SLOT, "slot %d: this board's UKI has no banks" % slot)
            self.uki.erase(slot - 2)
        else:
            self.backend.erase(slot)
        return self.slots_read()

    def uki_install(self, length, sha_hex):
        if self.uki is None:
            raise SlotError(IMG_INVALID_SLOT, "image 1: this board's UKI has no banks")
        out = self.uki.install(length, sha_hex, self.floor())
        out.update(self.slots_read())
        return out

    def floor(self):
        floor, err = antirollback.read_floor(self.tpm)
        return None if err is not None else floor

    def slot_install(self, length, sha_hex):
        data = staged.read_staged(self.staged_path, length, self.slots.flash.capacity)
        floor = self.floor()

        def new_upload(sink, n, sha):
            return Upload(sink, n, sha, self.verify, self.board, floor, self.slots.flash.capacity,
                          self.pcr)
        self.log("broker: installing the staged upload (%d bytes) into bank %s"
                 % (len(data), self.slots.inactive))
        man = staged.install(self.backend, data, bytes.fromhex(sha_hex), new_upload)
        self.log("broker: bank %s holds version %s, verified, bootable"
                 % (self.slots.inactive, man["bundle_version"]))
        out = {"version": man["bundle_version"], "counter": man["anti_rollback_counter"]}
        out.update(self.slots_read())
        return out
