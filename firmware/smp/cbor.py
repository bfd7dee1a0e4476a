# The CBOR subset SMP payloads use (RFC 8949 §3): unsigned and negative integers (major types 0, 1),
# byte strings (2), text strings (3), arrays (4), maps (5) and the simple values false, true, null
# (major type 7, §3.3). Definite lengths only: the MCUmgr clients (cbor2, zcbor, Go's fxamacker/cbor)
# all encode definite lengths, and refusing indefinite ones (§3.2.2) keeps a frame's cost bounded.
# Floats, tags and undefined are refused with a CborError naming the major type and offset;
# so are duplicate map keys (§5.6), non-shortest integer heads are accepted (§4.2.1 is for encoders).

from firmware.smp.errors import CborError

MAX_DEPTH = 8  # SMP maps nest two or three deep (image state: map > array > map)


def encode(obj):
    out = bytearray()
    _enc(obj, out)
    return bytes(out)


def _head(major, n, out):
    m = major << 5
    if n < 24:
        out.append(m | n)
    elif n < 0x100:
        out.append(m | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(m | 25)
        out += n.to_bytes(2, "big")
    elif n < 0x100000000:
        out.append(m | 26)
        out += n.to_bytes(4, "big")
    elif n < 0x10000000000000000:
        out.append(m | 27)
        out += n.to_bytes(8, "big")
    else:
        raise CborError("integer %d does not fit CBOR's 64-bit head" % n)


def _enc(obj, out):
    if obj is False:
        out.append(0xF4)
    elif obj is True:
        out.append(0xF5)
    elif obj is None:
        out.append(0xF6)
    elif isinstance(obj, int):
        if obj >= 0:
            _head(0, obj, out)
        else:
            _head(1, -1 - obj, out)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        b = bytes(obj)
        _head(2, len(b), out)
        out += b
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        _head(3, len(b), out)
        out += b
    elif isinstance(obj, (list, tuple)):
        _head(4, len(obj), out)
        for v in obj:
            _enc(v, out)
    elif isinstance(obj, dict):
        _head(5, len(obj), out)
        for k, v in obj.items():
            _enc(k, out)
            _enc(v, out)
    else:
        raise CborError("cannot encode a %s in SMP's CBOR subset" % type(obj).__name__)


def decode(data):
    """The one CBOR item in `data`; trailing bytes are an error."""
    data = bytes(data)
    obj, pos = _dec(data, 0, 0)
    if pos != len(data):
        raise CborError("%d bytes after the CBOR item" % (len(data) - pos), offset=pos)
    return obj


def _need(data, pos, n, what):
    if pos + n > len(data):
        raise CborError("truncated %s: needs %d bytes, %d left" % (what, n, len(data) - pos), offset=pos)


def _dec(data, pos, depth):
    _need(data, pos, 1, "item head")
    ib = data[pos]
    major, info = ib >> 5, ib & 0x1F
    start = pos
    pos += 1
    if major == 7:
        if info == 20:
            return False, pos
        if info == 21:
            return True, pos
        if info == 22:
            return None, pos
        if info in (25, 26, 27):
            raise CborError("floating-point values are not used by SMP", offset=start)
        raise CborError("simple value %d is not false/true/null" % info, offset=start)
    if info < 24:
        n = info
    elif info in (24, 25, 26, 27):
        size = 1 << (info - 24)
        _need(data, pos, size, "argument")
        n = int.from_bytes(data[pos:pos + size], "big")
        pos += size
    elif info == 31:
        raise CborError("indefinite length (major type %d) is not accepted" % major, offset=start)
    else:
        raise CborError("reserved additional information %d" % info, offset=start)
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major == 2:
        _need(data, pos, n, "byte string")
        return data[pos:pos + n], pos + n
    if major == 3:
        _need(data, pos, n, "text string")
        try:
            return data[pos:pos + n].decode("utf-8"), pos + n
        except UnicodeError:
            raise CborError("text string is not UTF-8", offset=pos)
    if major == 6:
        raise CborError("tags are not used by SMP", offset=start)
    if depth >= MAX_DEPTH:
        raise CborError("nested deeper than %d" % MAX_DEPTH, offset=start)
    # every element takes at least one byte: a count larger than what is left is a lie
    if n > len(data) - pos:
        raise CborError("%s of %d items in %d bytes" % ("array" if major == 4 else "map", n,
                                                         len(data) - pos), offset=start)
    if major == 4:
        items = []
        for _ in range(n):
            v, pos = _dec(data, pos, depth + 1)
            items.append(v)
        return items, pos
    m = {}
    for _ in range(n):
        kpos = pos
        k, pos = _dec(data, pos, depth + 1)
        if not isinstance(k, (str, int)):
            raise CborError("map key is a %s, not text or an integer" % type(k).__name__, offset=kpos)
        if k in m:
            raise CborError("duplicate map key %r" % (k,), offset=kpos)
        v, pos = _dec(data, pos, depth + 1)
        m[k] = v
    return m, pos
