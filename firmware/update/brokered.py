# The SMP server's slot backend on the phone (firmware.smp.server.SmpServer `backend`): the banks
# and the slot record belong to root, so every state change is a request to the stage loader's
# broker (firmware/boot/broker.py: slots, slot_state, slot_erase, slot_install), and an upload is
# received into a staging file the phone may write (`staged_path`, on the /run/phone tmpfs) and
# installed by the broker, which checks it again (firmware/update/staged.py).
# The broker's refusals come back with the IMG_MGMT_ERR code and reason: the SMP answer is the
# same as a LocalBackend's.

from firmware.boot.broker import BrokerError
from firmware.update.flash_dir import FileSink
from firmware.update.slots import SlotError
from firmware.update.upload import UploadRefused


def images_from_answer(ans):
    out = []
    for img in ans.get("images", []):
        img = dict(img)
        img["hash"] = bytes.fromhex(img.get("hash", ""))
        out.append(img)
    return out


class BrokerBackend:
    def __init__(self, channel, staged_path):
        self.channel = channel
        self.staged_path = staged_path

    def _call(self, error, op, **fields):
        try:
            return self.channel.call(op, **fields)
        except BrokerError as e:
            rc = getattr(e, "rc", None)
            if rc is None:
                raise
            raise error(rc, getattr(e, "reason", None) or str(e))

    def slot_status(self):
        """The broker's summary of the slot record (running, trial, confirmed, last)."""
        return self._call(SlotError, "slots").get("slot")

    def capacity(self):
        """The bank size (the broker knows the partitions; the phone cannot read them)."""
        return self._call(SlotError, "slots").get("capacity", 0)

    def images(self):
        return images_from_answer(self._call(SlotError, "slots"))

    def set_state(self, digest, confirm):
        ans = self._call(SlotError, "slot_state", hash=None if digest is None else bytes(digest).hex(),
                         confirm=bool(confirm))
        return ans.get("confirmed_counter")

    def erase(self, slot):
        self._call(SlotError, "slot_erase", slot=1 if slot is None else slot)

    def begin_upload(self):
        sink = FileSink(self.staged_path)
        sink.truncate(0)
        return sink

    def finish_upload(self, upload):
        op = "uki_install" if getattr(upload, "image", 0) == 1 else "slot_install"
        self._call(UploadRefused, op, length=upload.length, sha=upload.digest.hex())
