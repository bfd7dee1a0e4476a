# G.711 (ITU-T G.711) µ-law and A-law companding, as the segment/quantisation rules of the
# Recommendation's Tables 1a/2a. PCM is 16-bit signed little-endian, as RTP/AVP (RFC 3551 §4.5.14)
# audio is decoded for playback; one G.711 octet per sample.
#
# Encoding works on the top 14 (µ-law) or 13 (A-law) bits of the 16-bit sample, like the
# reference coder; decoding returns the segment midpoint scaled to 16 bits.

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


# Decoding is a table lookup (256 entries each); the tables are built once on import.
_ULAW_DECODE = [ulaw_to_linear(i) for i in range(256)]
_ALAW_DECODE = [alaw_to_linear(i) for i in range(256)]


def _check_pcm(pcm):
    if len(pcm) % 2:
        raise ValueError("16-bit PCM must have an even number of bytes, got %d" % len(pcm))


def _encode(pcm, one):
    _check_pcm(pcm)
    out = bytearray(len(pcm) // 2)
    for i in range(len(out)):
        v = pcm[2 * i] | (pcm[2 * i + 1] << 8)
        if v & 0x8000:
            v -= 0x10000
        out[i] = one(v)
    return bytes(out)


def _decode(data, table):
    out = bytearray(2 * len(data))
    for i in range(len(data)):
        v = table[data[i]] & 0xFFFF
        out[2 * i] = v & 0xFF
        out[2 * i + 1] = v >> 8
    return bytes(out)


def ulaw_encode(pcm):
    """16-bit signed little-endian PCM bytes -> µ-law bytes (payload type 0, PCMU)."""
    return _encode(pcm, linear_to_ulaw)


def ulaw_decode(data):
    """µ-law bytes -> 16-bit signed little-endian PCM bytes."""
    return _decode(data, _ULAW_DECODE)


def alaw_encode(pcm):
    """16-bit signed little-endian PCM bytes -> A-law bytes (payload type 8, PCMA)."""
    return _encode(pcm, linear_to_alaw)


def alaw_decode(data):
    """A-law bytes -> 16-bit signed little-endian PCM bytes."""
    return _decode(data, _ALAW_DECODE)
