# The `uki.delta` payload of a UKI package (docs/image-format.md "UKI package"): the new UKI as
# copies from a base UKI the device already has (the installed one) and literal bytes, so only what
# changed crosses the serial line. Sans-I/O: the base is read through `read_base(off, n)`.
#
#   header (60 bytes, integers big-endian):
#     magic "UKIDELTA" | u32 format (1) | u64 base size | base SHA-256 (32) | u64 target size
#   ops, in target order, each producing the next bytes of the target:
#     0x01 COPY  u64 base offset | u32 length     target[pos:pos+length] = base[off:off+length]
#     0x02 DATA  u32 length | length bytes        target[pos:pos+length] = the bytes
#     0x00 END                                    pos must equal the target size
#   nothing after END (trailing bytes are refused).
#
# Every length is at least 1, every COPY lies inside the base size, no op runs past the target
# size, and the base must hash to the header's SHA-256: each violation raises DeltaError or
# BaseMismatch naming the op and its offset in the delta. The delta itself is not signed: the
# rebuilt UKI's size and SHA-256 must equal the signed manifest's (firmware/update/uki_package.py),
# so a forged delta can at worst be refused, never installed.

from firmware import compat
from firmware.update.upload import IMG_INVALID_IMAGE_HEADER

MAGIC = b"UKIDELTA"
FORMAT = 1
HEADER_SIZE = 8 + 4 + 8 + 32 + 8
OP_END = 0x00
OP_COPY = 0x01
OP_DATA = 0x02
MAX_SIZE = 64 * 1024 * 1024  # a UKI on the board's ESP (64 MiB, board.json partitions_mib.esp)
MAX_LENGTH = 0xFFFFFFFF
READ_CHUNK = 1 << 20


class UkiError(ValueError):
    """A UKI package or its payload is refused; `reason` is the one line to show, `rc` the
    IMG_MGMT_ERR code of the SMP answer (firmware/update/upload.py)."""

    rc = IMG_INVALID_IMAGE_HEADER

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class DeltaError(UkiError):
    """The delta is malformed: `what` is "header", "op" or "trailing"; `offset` its place in
    the delta."""

    def __init__(self, what, offset, reason):
        UkiError.__init__(self, "delta %s at byte %d: %s" % (what, offset, reason))
        self.what = what
        self.offset = offset


class BaseMismatch(UkiError):
    """The base UKI at hand is not the one the delta was made against (or is shorter)."""


def _u(data, off, n, what):
    if off + n > len(data):
        raise DeltaError(what, off, "%d bytes needed, the delta ends after %d"
                         % (n, len(data) - off))
    return int.from_bytes(bytes(data[off:off + n]), "big")


def header(delta):
    """(base size, base SHA-256, target size, offset of the first op)."""
    if len(delta) < HEADER_SIZE:
        raise DeltaError("header", 0, "%d bytes, the header has %d" % (len(delta), HEADER_SIZE))
    if bytes(delta[0:8]) != MAGIC:
        raise DeltaError("header", 0, "magic is not %r" % MAGIC)
    fmt = _u(delta, 8, 4, "header")
    if fmt != FORMAT:
        raise DeltaError("header", 8, "format %d is not %d" % (fmt, FORMAT))
    base_size = _u(delta, 12, 8, "header")
    base_sha = bytes(delta[20:52])
    target_size = _u(delta, 52, 8, "header")
    for off, name, v in ((12, "base size", base_size), (52, "target size", target_size)):
        if v == 0 or v > MAX_SIZE:
            raise DeltaError("header", off, "%s %d outside 1..%d" % (name, v, MAX_SIZE))
    return base_size, base_sha, target_size, HEADER_SIZE


def ops(delta):
    """Yield (op, target pos, arg, length): COPY's arg is the base offset, DATA's the offset of
    its bytes in `delta`. Every bound is checked before an op is yielded; the walk ends with END
    at exactly the target size and nothing after it."""
    base_size, _, target_size, off = header(delta)
    pos = 0
    while True:
        at = off
        code = _u(delta, off, 1, "op")
        off += 1
        if code == OP_END:
            if pos != target_size:
                raise DeltaError("op", at, "END after %d bytes of the %d-byte target"
                                 % (pos, target_size))
            if off != len(delta):
                raise DeltaError("trailing", off, "%d bytes after END" % (len(delta) - off))
            return
        if code == OP_COPY:
            src = _u(delta, off, 8, "op")
            n = _u(delta, off + 8, 4, "op")
            off += 12
            if n == 0:
                raise DeltaError("op", at, "COPY of 0 bytes")
            if src > base_size or n > base_size - src:
                raise DeltaError("op", at, "COPY of %d bytes at base offset %d runs past the "
                                 "%d-byte base" % (n, src, base_size))
            arg = src
        elif code == OP_DATA:
            n = _u(delta, off, 4, "op")
            off += 4
            if n == 0:
                raise DeltaError("op", at, "DATA of 0 bytes")
            if n > len(delta) - off:
                raise DeltaError("op", at, "DATA of %d bytes, the delta ends after %d"
                                 % (n, len(delta) - off))
            arg = off
            off += n
        else:
            raise DeltaError("op", at, "unknown op 0x%02x" % code)
        if n > target_size - pos:
            raise DeltaError("op", at, "%d bytes at target offset %d run past the %d-byte "
                             "target" % (n, pos, target_size))
        yield code, pos, arg, n
        pos += n


def check(delta):
    """(base size, base SHA-256, target size) of a well-formed delta; DeltaError otherwise.
    Needs no base: an upload checks the delta's structure before it is stored."""
    base_size, base_sha, target_size, _ = header(delta)
    for _ in ops(delta):
        pass
    return base_size, base_sha, target_size


def _read(read_base, off, n):
    data = read_base(off, n)
    if data is None or len(data) != n:
        raise BaseMismatch("base UKI too short: %d bytes at offset %d wanted, %d read"
                           % (n, off, 0 if data is None else len(data)))
    return data


def check_base(delta, read_base):
    """BaseMismatch unless the first `base size` bytes read_base gives hash to the header's."""
    base_size, base_sha, _, _ = header(delta)
    h = compat.new_hash("sha256")
    off = 0
    while off < base_size:
        n = min(READ_CHUNK, base_size - off)
        h.update(_read(read_base, off, n))
        off += n
    got = h.digest()
    if not compat.constant_time_equal(got, base_sha):
        raise BaseMismatch("the base UKI is not the delta's: its %d bytes hash to %s, the delta "
                           "was made against %s" % (base_size, got.hex(), base_sha.hex()))


def apply(delta, read_base):
    """The target's bytes: the base checked first (check_base), then every op."""
    check_base(delta, read_base)
    _, _, target_size, _ = header(delta)
    out = bytearray(target_size)
    view = memoryview(delta)
    for code, pos, arg, n in ops(delta):
        if code == OP_COPY:
            out[pos:pos + n] = _read(read_base, arg, n)
        else:
            out[pos:pos + n] = view[arg:arg + n]
    return out


# The encoder (the host's make_delta uses it, so the format lives in this one file).

def encode_header(base_size, base_sha, target_size):
    return (MAGIC + FORMAT.to_bytes(4, "big") + base_size.to_bytes(8, "big") + bytes(base_sha)
            + target_size.to_bytes(8, "big"))


def encode_copy(src, n):
    return bytes([OP_COPY]) + src.to_bytes(8, "big") + n.to_bytes(4, "big")


def encode_data(data):
    return bytes([OP_DATA]) + len(data).to_bytes(4, "big") + bytes(data)


def encode_end():
    return bytes([OP_END])
