# Test tones and their detection, for checking audio end to end (a known sine goes in one side,
# the other side must hear the same frequency) and for a phone's own line checks. 16-bit LE PCM.
# Detection uses the Goertzel algorithm (one DFT bin at a time, no FFT library needed; it runs
# the same under MicroPython).

import math
import struct


def sine_pcm(freq, ms, rate=8000, amplitude=8000, phase=0):
    """`ms` milliseconds of a sine at `freq` Hz as 16-bit little-endian PCM."""
    n = rate * ms // 1000
    w = 2 * math.pi * freq / rate
    return struct.pack("<%dh" % n, *[int(amplitude * math.sin(w * (i + phase))) for i in range(n)])


def samples(pcm):
    n = len(pcm) // 2
    return struct.unpack("<%dh" % n, pcm[:2 * n]) if n else ()


def goertzel_power(xs, freq, rate=8000):
    """Power of `freq` in the sample sequence `xs` (Goertzel; proportional to |DFT bin|^2)."""
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in xs:
        s0 = x + coeff * s1 - s2
        s2 = s1
        s1 = s0
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def dominant_frequency(pcm, rate=8000, lo=200, hi=3600, step=25, max_samples=4000):
    """(frequency, share): the strongest frequency on a `step` Hz grid in lo..hi, and its share
    of the total power over the grid (near 1 for a clean tone, small for noise or silence)."""
    xs = samples(pcm)
    if len(xs) > max_samples:
        mid = (len(xs) - max_samples) // 2
        xs = xs[mid:mid + max_samples]
    best, best_p, total = None, -1.0, 0.0
    f = lo
    while f <= hi:
        p = goertzel_power(xs, f, rate)
        total += p
        if p > best_p:
            best, best_p = f, p
        f += step
    return best, (best_p / total) if total > 0 else 0.0


def rms(pcm):
    xs = samples(pcm)
    if not xs:
        return 0
    return int(math.sqrt(sum([x * x for x in xs]) / len(xs)))
