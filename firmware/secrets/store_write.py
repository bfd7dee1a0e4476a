# Rewriting the sealed store on the device (root: the TPM broker; docs/sealing.md "Signed policy
# over SMP"). Never lose state on a crash: the new store is written whole to the journal copy
# (store.JOURNAL_OFFSET) and synced, then to offset 0 and synced. A power cut while the journal
# is written leaves offset 0 (the old store) whole; one while offset 0 is written leaves the
# journal (the new store) whole, and store.read_bytes takes it when offset 0 does not parse. The
# new bytes are parsed back before anything is written, so bad metadata never reaches the disk.

import os

from firmware.secrets import store


def _write_at(path, offset, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.lseek(fd, offset, 0)
        view = memoryview(data)
        while len(view):
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path, meta):
    """Write `meta` as the store on `path` (the data partition or a file), atomically in the
    sense above. -> the store's size in bytes."""
    data = store.pack(meta)
    store.unpack(data)  # validates every field: a store that would not load is never written
    # each copy is padded with zeros to its whole span: nothing of a longer old store remains
    padded = data + bytes(store.SPAN - len(data))
    _write_at(path, store.JOURNAL_OFFSET, padded)
    _write_at(path, 0, padded)
    return len(data)
