# The SMP server's slot backend when the slots are in reach of the same process (a directory on
# the data partition, or a test's temp dir): uploads go straight into the inactive bank.
# On the phone the console runs as uid 1000 and the banks belong to root: there the stage
# loader's broker is the backend (it re-checks the staged image before it installs it).


class LocalBackend:
    def __init__(self, slots):
        self.slots = slots
        self._bank = None

    def images(self):
        return self.slots.images()

    def set_state(self, digest, confirm):
        return self.slots.set_state(digest, confirm)

    def erase(self, slot):
        self.slots.erase(slot)

    def begin_upload(self):
        self._bank = self.slots.begin_write()
        sink = self.slots.flash.sink(self._bank)
        sink.truncate(0)
        return sink

    def finish_upload(self, upload):
        bank, self._bank = self._bank, None
        self.slots.written(bank, upload.manifest, upload.digest)
