# Reader for the POSIX ustar archives the bundle uses (POSIX.1-1988 "ustar" interchange format,
# IEEE Std 1003.1 pax "ustar Interchange Format"): 512-byte header blocks, octal numeric fields,
# file data padded to 512 bytes, two zero blocks at the end. Only regular files are accepted.
#
# parse() is strict: any malformed header raises ParseError with the byte offset and the field.
# scan() is the stage loader's lenient form: it returns the members read before the first problem
# and that problem, so the loader can still measure what it found.

from firmware.errors import ParseError

BLOCK = 512
MAX_MEMBERS = 512  # a code component holds ~60 sources + their .pyc; bounds the walk of untrusted flash
# Header field offsets and sizes (ustar header layout).
NAME = (0, 100)
SIZE = (124, 12)
CHKSUM = (148, 8)
TYPEFLAG = 156
MAGIC = (257, 6)
PREFIX = (345, 155)


def _field(hdr, spec):
    off, n = spec
    return hdr[off:off + n]


def _cstr(raw):
    nul = raw.find(b"\x00")
    return raw if nul < 0 else raw[:nul]


def _octal(raw, offset, name):
    text = _cstr(raw).strip()
    if not text:
        raise ParseError("empty numeric field", offset=offset, field=name)
    value = 0
    for c in text:
        if c < 0x30 or c > 0x37:
            raise ParseError("non-octal digit 0x%02x" % c, offset=offset, field=name)
        value = value * 8 + (c - 0x30)
    return value


def _checksum(hdr):
    # The sum of all header bytes with the checksum field itself counted as eight spaces.
    total = 0
    for i in range(BLOCK):
        total += 0x20 if CHKSUM[0] <= i < CHKSUM[0] + CHKSUM[1] else hdr[i]
    return total


def _member(data, off):
    """(name, data offset, size, next header offset) of the member at `off`, or None at the end."""
    head = header_at(data, off)
    if head is None:
        return None
    name, size = head
    start = off + BLOCK
    if start + size > len(data):
        raise ParseError("member %r: %d bytes past the end of the archive" %
                         (name, start + size - len(data)), offset=off + SIZE[0], field="size")
    return name, start, size, start + (size + BLOCK - 1) // BLOCK * BLOCK


def header_at(data, off):
    """(name, size) from the 512-byte header at `off`, None for the end-of-archive block. Only
    the header has to be in `data`: an upload checks members as their headers arrive."""
    hdr = data[off:off + BLOCK]
    if len(hdr) < BLOCK:
        raise ParseError("truncated header (%d bytes)" % len(hdr), offset=off, field="header")
    if hdr == b"\x00" * BLOCK:
        return None
    if _field(hdr, MAGIC) not in (b"ustar\x00", b"ustar "):
        raise ParseError("not a ustar header", offset=off + MAGIC[0], field="magic")
    want = _octal(_field(hdr, CHKSUM), off + CHKSUM[0], "chksum")
    if _checksum(hdr) != want:
        raise ParseError("header checksum %d, stored %d" % (_checksum(hdr), want),
                         offset=off + CHKSUM[0], field="chksum")
    kind = hdr[TYPEFLAG]
    if kind not in (0x30, 0x00):  # '0' or NUL: regular file
        raise ParseError("member type %r is not a regular file" % chr(kind),
                         offset=off + TYPEFLAG, field="typeflag")
    name = _cstr(_field(hdr, NAME))
    prefix = _cstr(_field(hdr, PREFIX))
    if prefix:
        name = prefix + b"/" + name
    try:
        name = name.decode("utf-8")
    except UnicodeError:
        raise ParseError("name is not UTF-8", offset=off, field="name")
    if not name:
        raise ParseError("empty name", offset=off, field="name")
    return name, _octal(_field(hdr, SIZE), off + SIZE[0], "size")


def scan(data):
    """([(name, bytes)], error or None): members in archive order up to the end marker or the
    first malformed header."""
    members = []
    off = 0
    try:
        while True:
            if len(members) >= MAX_MEMBERS:
                raise ParseError("more than %d members" % MAX_MEMBERS, offset=off, field="header")
            m = _member(data, off)
            if m is None:
                return members, None
            name, start, size, off = m
            members.append((name, data[start:start + size]))
    except ParseError as e:
        return members, e


def parse(data):
    """[(name, bytes)] of a well-formed archive; ParseError otherwise."""
    members, err = scan(data)
    if err is not None:
        raise err
    return members


RECORD = 10240  # tar's record size (20 blocks): writers pad the archive to a multiple of it


def archive_length(data):
    """Bytes of the archive at the start of `data` (a partition: the archive, then zeroes): up to
    its end marker (two zero blocks), rounded up to a whole tar record as tar writers pad it, at
    most len(data). ParseError when the archive is malformed."""
    off = 0
    for _ in range(MAX_MEMBERS + 1):
        m = _member(data, off)
        if m is None:
            end = off + 2 * BLOCK
            return min(len(data), (end + RECORD - 1) // RECORD * RECORD)
        off = m[3]
    raise ParseError("more than %d members" % MAX_MEMBERS, offset=off, field="header")
