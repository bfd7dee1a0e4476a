# The slots' flash on the device (slots.py's `flash` interface): bank a is the GPT partition
# "phone-fw", bank b "phone-fw-b" (raw: the bundle, then zeroes), and the slot record lives on the
# data partition "phone-data" (raw, root only: the phone cannot write it) at RECORD_OFFSET, past
# the largest sealed store (firmware/secrets/store.py: 48-byte header + at most 256 KiB).
#
# The record is kept in two copies (MCUboot keeps its swap status the same way: a power cut
# during a write leaves the other copy whole). Each copy is one RECORD_COPY-byte area:
#   0   8   magic "PHSLOTS1"
#   8   4   sequence number (u32, big-endian): the newer copy has the higher one
#   12  4   body length N (u32, big-endian), at most RECORD_COPY - 48
#   16  32  SHA-256 of the body (a torn write fails it and that copy is ignored)
#   48  N   body: slots.encode(record)
# A save writes the copy that is NOT the newest valid one, with sequence + 1, and fsyncs.

import os

from firmware import compat

RECORD_OFFSET = 1 << 20
RECORD_COPY = 4096
MAGIC = b"PHSLOTS1"
HEAD = 48


def encode_copy(seq, body):
    if len(body) > RECORD_COPY - HEAD:
        raise ValueError("slot record of %d bytes does not fit %d" % (len(body), RECORD_COPY - HEAD))
    return MAGIC + seq.to_bytes(4, "big") + len(body).to_bytes(4, "big") + compat.sha256(body) + body


def decode_copy(raw):
    """(sequence, body) of one copy, or None when it is blank, torn or not a record."""
    if len(raw) < HEAD or raw[:8] != MAGIC:
        return None
    seq = int.from_bytes(raw[8:12], "big")
    n = int.from_bytes(raw[12:16], "big")
    if n > RECORD_COPY - HEAD or len(raw) < HEAD + n:
        return None
    body = bytes(raw[HEAD:HEAD + n])
    if not compat.constant_time_equal(compat.sha256(body), bytes(raw[16:48])):
        return None
    return seq, body


def newest(copies):
    """(index of the newest valid copy or None, its sequence, its body)."""
    best = (None, -1, None)
    for i, raw in enumerate(copies):
        got = decode_copy(raw)
        if got is not None and got[0] > best[1]:
            best = (i, got[0], got[1])
    return best


class PartitionSink:
    """One bank's partition: write/read at offsets; truncate(0) erases it (zeroes)."""

    def __init__(self, path, size):
        self.path = path
        self.size = size

    def write(self, off, data):
        if off + len(data) > self.size:
            raise OSError("write past the end of %s" % self.path)
        with open(self.path, "r+b") as f:
            f.seek(off)
            f.write(data)
            f.flush()
            if hasattr(os, "fsync"):
                os.fsync(f.fileno())

    def read(self, off, n):
        with open(self.path, "rb") as f:
            f.seek(off)
            return f.read(n)

    def truncate(self, n):
        if n:
            return
        zero = bytes(1 << 16)
        with open(self.path, "r+b") as f:
            left = self.size
            while left > 0:
                f.write(zero[:min(left, len(zero))])
                left -= len(zero)
            f.flush()
            if hasattr(os, "fsync"):
                os.fsync(f.fileno())


def device_size(path):
    with open(path, "rb") as f:
        return f.seek(0, 2)


class PartitionFlash:
    """`banks`: {"a": device path, "b": device path}; `data`: the data partition's device."""

    def __init__(self, banks, data):
        self.banks = banks
        self.data = data
        sizes = [device_size(p) for p in banks.values()]
        self.capacity = min(sizes)

    def sink(self, bank):
        return PartitionSink(self.banks[bank], self.capacity)

    def read_bundle(self, bank):
        with open(self.banks[bank], "rb") as f:
            return f.read(self.capacity)

    def _copies(self):
        with open(self.data, "rb") as f:
            f.seek(RECORD_OFFSET)
            raw = f.read(2 * RECORD_COPY)
        return [raw[:RECORD_COPY], raw[RECORD_COPY:]]

    def load_state(self):
        return newest(self._copies())[2]

    def save_state(self, data):
        idx, seq, _ = newest(self._copies())
        target = 0 if idx is None else 1 - idx
        blob = encode_copy(seq + 1, bytes(data))
        with open(self.data, "r+b") as f:
            f.seek(RECORD_OFFSET + target * RECORD_COPY)
            f.write(blob + bytes(RECORD_COPY - len(blob)))
            f.flush()
            if hasattr(os, "fsync"):
                os.fsync(f.fileno())
