# G.711 (ITU-T G.711) µ-law and A-law companding, as the segment/quantisation rules of the
# Recommendation's Tables 1a/2a. PCM is 16-bit signed little-endian, as RTP/AVP (RFC 3551 §4.5.14)
# audio is decoded for playback; one G.711 octet per sample.
#
# Encoding works on the top 14 (µ-law) or 13 (A-law) bits of the 16-bit sample, like the
# reference coder; decoding returns the segment midpoint scaled to 16 bits.

import struct

_ULAW_BIAS = 0x84  # 132: shifts every magnitude so segment boundaries fall on powers of two
_ULAW_CLIP = 8159  # largest 14-bit magnitude µ-law can represent once the bias is added
_ULAW_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value, ends):
    for i in range(8):
        if value <= ends[i]:
            return i
    return 8


def linear_to_ulaw(sample):
    """One 16-bit signed sample to a µ-law octet."""
    pcm = sample >> 2
    if pcm < 0:
        pcm = -pcm
        mask = 0x7F
    else:
        mask = 0xFF
    if pcm > _ULAW_CLIP:
        pcm = _ULAW_CLIP
    pcm += _ULAW_BIAS >> 2
    seg = _segment(pcm, _ULAW_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0x0F)) ^ mask


def ulaw_to_linear(code):
    """One µ-law octet to a 16-bit signed sample."""
    u = ~code & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return _ULAW_BIAS - t if u & 0x80 else t - _ULAW_BIAS


def linear_to_alaw(sample):
    """One 16-bit signed sample to an A-law octet (even bits inverted, G.711 §A)."""
    pcm = sample >> 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = _segment(pcm, _ALAW_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    if seg < 2:
        code = (seg << 4) | ((pcm >> 1) & 0x0F)
    else:
        code = (seg << 4) | ((pcm >> seg) & 0x0F)
    return code ^ mask


def alaw_to_linear(code):
    """One A-law octet to a 16-bit signed sample."""
    a = code ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


# Both directions are table lookups, built on first use: decoding maps each of the 256 codes to
# its two PCM bytes; encoding indexes by the bits the coder actually looks at (the top 14 bits for
# µ-law, 13 for A-law, as unsigned 16-bit >> 2 or >> 3), so the tables stay 16 KiB and 8 KiB.
_tables = {}


def _table(name):
    t = _tables.get(name)
    if t is not None:
        return t
    if name == "ulaw_dec" or name == "alaw_dec":
        one = ulaw_to_linear if name == "ulaw_dec" else alaw_to_linear
        t = [(one(c) & 0xFFFF).to_bytes(2, "little") for c in range(256)]
    elif name == "ulaw_enc":
        t = bytes([linear_to_ulaw(_signed16(i << 2)) for i in range(1 << 14)])
    else:
        t = bytes([linear_to_alaw(_signed16(i << 3)) for i in range(1 << 13)])
    _tables[name] = t
    return t


def _signed16(v):
    return v - 0x10000 if v & 0x8000 else v


def _check_pcm(pcm):
    if len(pcm) % 2:
        raise ValueError("16-bit PCM must have an even number of bytes, got %d" % len(pcm))


def _unsigned_samples(pcm):
    _check_pcm(pcm)
    n = len(pcm) // 2
    return struct.unpack("<%dH" % n, pcm) if n else ()


def ulaw_encode(pcm):
    """16-bit signed little-endian PCM bytes -> µ-law bytes (payload type 0, PCMU)."""
    t = _table("ulaw_enc")
    return bytes([t[v >> 2] for v in _unsigned_samples(pcm)])


def ulaw_decode(data):
    """µ-law bytes -> 16-bit signed little-endian PCM bytes."""
    t = _table("ulaw_dec")
    return b"".join([t[c] for c in data])


def alaw_encode(pcm):
    """16-bit signed little-endian PCM bytes -> A-law bytes (payload type 8, PCMA)."""
    t = _table("alaw_enc")
    return bytes([t[v >> 3] for v in _unsigned_samples(pcm)])


def alaw_decode(data):
    """A-law bytes -> 16-bit signed little-endian PCM bytes."""
    t = _table("alaw_dec")
    return b"".join([t[c] for c in data])
