# TPM 2.0 wire marshalling (Part 1 §18: big-endian integers; TPM2B = UINT16 size + bytes).
# One Writer and one Reader are the only places where bytes are packed or unpacked; command
# layouts are described elsewhere as data and run through these.

from firmware.errors import ParseError


class Writer:
    def __init__(self):
        self._buf = bytearray()

    def u8(self, v):
        self._buf.extend(_uint(v, 1))
        return self

    def u16(self, v):
        self._buf.extend(_uint(v, 2))
        return self

    def u32(self, v):
        self._buf.extend(_uint(v, 4))
        return self

    def u64(self, v):
        self._buf.extend(_uint(v, 8))
        return self

    def raw(self, data):
        self._buf.extend(data)
        return self

    def tpm2b(self, data):
        """A TPM2B: UINT16 size then the bytes (Part 2 §10.4)."""
        if len(data) > 0xFFFF:
            raise ValueError("TPM2B payload too large: %d bytes" % len(data))
        self.u16(len(data))
        self._buf.extend(data)
        return self

    def sized(self, fn):
        """A TPM2B wrapping a structure written by fn(Writer) (e.g. TPM2B_PUBLIC)."""
        inner = Writer()
        fn(inner)
        return self.tpm2b(inner.bytes())

    def __len__(self):
        return len(self._buf)

    def bytes(self):
        return bytes(self._buf)


def _uint(v, n):
    if v < 0 or v >> (8 * n):
        raise ValueError("value %r does not fit in %d bytes" % (v, n))
    return v.to_bytes(n, "big")


class Reader:
    """Reads a response buffer front to back; every read is bounds-checked first.

    `base` is added to offsets in error messages so a nested Reader (inside a TPM2B) still
    reports offsets in the whole response.
    """

    def __init__(self, data, base=0):
        self._data = bytes(data)
        self._pos = 0
        self._base = base

    @property
    def offset(self):
        return self._base + self._pos

    def remaining(self):
        return len(self._data) - self._pos

    def _take(self, n, field):
        if n < 0 or self._pos + n > len(self._data):
            raise ParseError("truncated: need %d bytes, %d left" % (n, self.remaining()),
                             offset=self.offset, field=field)
        out = self._data[self._pos:self._pos + n]
        self._pos += n
        return out

    def u8(self, field="u8"):
        return self._take(1, field)[0]

    def u16(self, field="u16"):
        return int.from_bytes(self._take(2, field), "big")

    def u32(self, field="u32"):
        return int.from_bytes(self._take(4, field), "big")

    def u64(self, field="u64"):
        return int.from_bytes(self._take(8, field), "big")

    def raw(self, n, field="raw"):
        return self._take(n, field)

    def tpm2b(self, field="tpm2b", max_size=None):
        """TPM2B bytes; the size is checked against `max_size` and the data left before use."""
        start = self.offset
        size = self.u16(field + ".size")
        if max_size is not None and size > max_size:
            raise ParseError("size %d exceeds maximum %d" % (size, max_size), offset=start,
                             field=field)
        if size > self.remaining():
            raise ParseError("size %d exceeds the %d bytes left" % (size, self.remaining()),
                             offset=start, field=field)
        return self._take(size, field)

    def sized(self, field="tpm2b"):
        """A Reader over the contents of a TPM2B wrapping a structure (offsets stay absolute)."""
        start_of_data = self.offset + 2
        data = self.tpm2b(field)
        return Reader(data, start_of_data)

    def sub(self, n, field):
        """A Reader over the next n bytes (e.g. a parameter area of known size)."""
        start = self.offset
        return Reader(self._take(n, field), start)

    def rest(self):
        out = self._data[self._pos:]
        self._pos = len(self._data)
        return out

    def done(self, field="end"):
        """Reject trailing bytes: a response longer than its structure is malformed."""
        if self._pos != len(self._data):
            raise ParseError("%d trailing bytes" % (len(self._data) - self._pos),
                             offset=self.offset, field=field)
