# Parser for TCG PC Client PFP crypto-agile event logs (PFP spec §10, "Event Logging").
#
# Parse first, verify second: everything this module returns is UNVERIFIED. A log is only a claim
# about what was measured; it becomes evidence after replay (replayer.py) matches PCR values read or
# quoted from the TPM. The names say so (UnverifiedEvent) so callers cannot forget.
#
# Wire layout (all integers little-endian, PFP §10.2):
#   first event  TCG_PCClientPCREvent: pcrIndex u32, eventType u32, digest[20] (SHA-1 format),
#                eventDataSize u32, event[] = TCG_EfiSpecIDEvent ("Spec ID Event03")
#   then         TCG_PCR_EVENT2: pcrIndex u32, eventType u32, TPML_DIGEST_VALUES (count u32,
#                count x {hashAlg u16, digest[size from the Spec ID header]}), eventSize u32, event[]
# Every size read from the input is checked against a limit and against the bytes left before use.

import struct

from firmware.errors import ParseError
from firmware.tcg_alg import HASH_ALG_NAMES, HASH_SIZES
from firmware.eventlog.types import EV_NO_ACTION

SPEC_ID_SIGNATURE = b"Spec ID Event03\x00"  # PFP §10.4.5.1 TCG_EfiSpecIDEvent.signature
STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\x00"  # PFP §10.4.5.3 TCG_EfiStartupLocalityEvent

# Limits on sizes taken from the input. Real firmware events are at most a few KiB (certificate
# lists in EV_EFI_VARIABLE_AUTHORITY, device paths); 1 MiB leaves room without letting a forged
# size allocate or scan gigabytes.
MAX_EVENT_DATA = 1 << 20
MAX_ALGORITHMS = 8        # a TPM has at most a handful of banks; more is a forged header
MAX_DIGEST_SIZE = 64      # the largest TCG hash (SHA-512) digest
MAX_VENDOR_INFO = 255     # vendorInfoSize is a UINT8 in the spec
MAX_EVENTS = 1 << 16
MAX_PCR = 23              # PC Client TPMs have PCRs 0-23 (PFP §2.3.4)

_HEADER_FIXED = 32        # pcrIndex + eventType + SHA-1 digest + eventDataSize
_SPEC_ID_FIXED = 24       # signature[16] + platformClass u32 + 4 version/uintn bytes


try:
    (0, 1)[0:2:2]
    _STEP_SLICES = True
except NotImplementedError:  # MicroPython slices only with step 1
    _STEP_SLICES = False


def _every_other(t, start, end):
    return tuple([t[i] for i in range(start, end, 2)])


class SpecIdHeader:
    """The TCG_EfiSpecIDEvent of the first event: which banks the log carries and their sizes.

    `algorithms` is a tuple of (alg_id, name, digest_size) in header order; `banks` the names.
    """

    __slots__ = ("platform_class", "spec_version", "errata", "uintn_size", "algorithms", "banks",
                 "vendor_info", "raw")

    def __init__(self, platform_class, spec_version, errata, uintn_size, algorithms, vendor_info,
                 raw):
        self.platform_class = platform_class
        self.spec_version = spec_version
        self.errata = errata
        self.uintn_size = uintn_size
        self.algorithms = algorithms
        self.banks = tuple(a[1] for a in algorithms)
        self.vendor_info = vendor_info
        self.raw = raw

    def digest_size(self, bank):
        for _alg, name, size in self.algorithms:
            if name == bank:
                return size
        raise KeyError(bank)


class UnverifiedEvent:
    """One TCG_PCR_EVENT2 as the log claims it. Nothing here is trusted until replay matches.

    `number` counts events as tpm2_eventlog does (the Spec ID header is event 0). `digest_values`
    holds the digests in the header's bank order; `digests` gives them as {bank: bytes}.
    """

    __slots__ = ("number", "offset", "pcr", "type", "digest_values", "data", "_banks")

    def __init__(self, number, offset, pcr, event_type, banks, digest_values, data):
        self.number = number
        self.offset = offset
        self.pcr = pcr
        self.type = event_type
        self._banks = banks
        self.digest_values = digest_values
        self.data = data

    @property
    def digests(self):
        return dict(zip(self._banks, self.digest_values))

    def digest(self, bank):
        return self.digest_values[self._banks.index(bank)]

    @property
    def type_name(self):
        from firmware.eventlog.types import event_type_name

        return event_type_name(self.type)

    def describe(self):
        """A short human description of the payload (decode.py); never used for verification."""
        from firmware.eventlog.decode import describe

        return describe(self.type, self.data)

    def __repr__(self):
        return "UnverifiedEvent(#%d pcr=%d %s %d bytes)" % (self.number, self.pcr, self.type_name,
                                                            len(self.data))


class ParsedLog:
    """A parsed, UNVERIFIED log: the Spec ID header, the events, and the StartupLocality (if any)."""

    __slots__ = ("header", "events", "startup_locality", "size")

    def __init__(self, header, events, startup_locality, size):
        self.header = header
        self.events = events
        self.startup_locality = startup_locality
        self.size = size


def _u32(data, off, field):
    if off + 4 > len(data):
        raise ParseError("truncated: need 4 bytes, %d left" % max(0, len(data) - off), offset=off,
                         field=field)
    return struct.unpack_from("<I", data, off)[0]


def parse_header(data):
    """Parse the first event (PFP §10.4.5.1); returns (SpecIdHeader, offset of the next event)."""
    if len(data) < _HEADER_FIXED:
        raise ParseError("truncated: log shorter than the %d-byte first event header" % _HEADER_FIXED,
                         offset=0, field="header")
    pcr, event_type = struct.unpack_from("<II", data, 0)
    if pcr != 0:
        raise ParseError("first event must be in PCR 0, got %d" % pcr, offset=0,
                         field="header.pcrIndex")
    if event_type != EV_NO_ACTION:
        raise ParseError("first event must be EV_NO_ACTION carrying the Spec ID event, got type "
                         "0x%x (SHA-1-only logs are not supported)" % event_type, offset=4,
                         field="header.eventType")
    if data[8:28] != b"\x00" * 20:
        raise ParseError("Spec ID event digest must be zero", offset=8, field="header.digest")
    size = struct.unpack_from("<I", data, 28)[0]
    body = 32
    if size > MAX_EVENT_DATA:
        raise ParseError("Spec ID event size %d exceeds maximum %d" % (size, MAX_EVENT_DATA),
                         offset=28, field="header.eventDataSize")
    if body + size > len(data):
        raise ParseError("truncated: Spec ID event claims %d bytes, %d left" % (
            size, len(data) - body), offset=28, field="header.eventDataSize")
    if size < _SPEC_ID_FIXED + 4:
        raise ParseError("Spec ID event too short: %d bytes" % size, offset=28,
                         field="header.eventDataSize")
    end = body + size
    if data[body:body + 16] != SPEC_ID_SIGNATURE:
        raise ParseError("bad Spec ID signature %r" % bytes(data[body:body + 16]), offset=body,
                         field="SpecID.signature")
    platform_class, minor, major, errata, uintn = struct.unpack_from("<IBBBB", data, body + 16)
    off = body + _SPEC_ID_FIXED
    count = struct.unpack_from("<I", data, off)[0]
    if count == 0 or count > MAX_ALGORITHMS:
        raise ParseError("numberOfAlgorithms %d not in 1..%d" % (count, MAX_ALGORITHMS),
                         offset=off, field="SpecID.numberOfAlgorithms")
    off += 4
    if off + 4 * count > end:
        raise ParseError("truncated: %d algorithm entries do not fit in the Spec ID event" % count,
                         offset=off, field="SpecID.digestSizes")
    algorithms = []
    seen = set()
    for i in range(count):
        alg, dsize = struct.unpack_from("<HH", data, off)
        field = "SpecID.digestSizes[%d]" % i
        if alg in seen:
            raise ParseError("algorithm 0x%04x listed twice" % alg, offset=off, field=field)
        seen.add(alg)
        name = HASH_ALG_NAMES.get(alg)
        if name is None:
            name = "alg_0x%04x" % alg
        else:
            # A size that contradicts the algorithm is a forged or corrupt header: trusting it
            # would make every later event parse misaligned.
            if HASH_SIZES[name] != dsize:
                raise ParseError("digest size %d contradicts %s (%d bytes)" % (
                    dsize, name, HASH_SIZES[name]), offset=off + 2, field=field + ".digestSize")
        if dsize == 0 or dsize > MAX_DIGEST_SIZE:
            raise ParseError("digest size %d not in 1..%d" % (dsize, MAX_DIGEST_SIZE),
                             offset=off + 2, field=field + ".digestSize")
        algorithms.append((alg, name, dsize))
        off += 4
    if off >= end:
        raise ParseError("truncated: no vendorInfoSize in the Spec ID event", offset=off,
                         field="SpecID.vendorInfoSize")
    vendor_size = data[off]
    off += 1
    if off + vendor_size != end:
        raise ParseError("vendorInfoSize %d does not match the %d bytes left in the Spec ID event" % (
            vendor_size, end - off), offset=off - 1, field="SpecID.vendorInfoSize")
    header = SpecIdHeader(platform_class, (major, minor), errata, uintn, tuple(algorithms),
                          bytes(data[off:end]), bytes(data[0:end]))
    return header, end


def parse_log(data):
    """Parse a crypto-agile log into a ParsedLog of UnverifiedEvents; raise ParseError on bad input.

    Every event must carry exactly the banks the header declares, in any order (PFP §10.2.2:
    TPML_DIGEST_VALUES holds one digest per active bank); a bank the header does not list is an
    error, because its size is unknown and the header is the only trusted-for-parsing source.
    """
    data = bytes(data)
    header, off = parse_header(data)
    algorithms = header.algorithms
    banks = header.banks
    nbanks = len(algorithms)
    # Fast path: most logs list the banks in header order. Then one struct call reads an event's
    # fixed part; anything else goes through the careful path below, which names the problem.
    fmt = "<III" + "".join("H%ds" % a[2] for a in algorithms) + "I"
    fixed = struct.calcsize(fmt)
    expected_algs = tuple(a[0] for a in algorithms)
    alg_end = 3 + 2 * nbanks
    by_id = {}
    for pos, a in enumerate(algorithms):
        by_id[a[0]] = (pos, a[2])
    events = []
    append = events.append
    n = len(data)
    number = 1
    locality = None
    pcr0_extended = False
    unpack_from = struct.unpack_from
    step_slices = _STEP_SLICES
    while off < n:
        start = off
        if number > MAX_EVENTS:
            raise ParseError("more than %d events" % MAX_EVENTS, offset=start, field="event")
        if start + fixed <= n:
            t = unpack_from(fmt, data, start)
        else:
            t = None
        if t is not None and t[2] == nbanks and (
                t[3:alg_end:2] if step_slices else _every_other(t, 3, alg_end)) == expected_algs:
            pcr = t[0]
            etype = t[1]
            digests = t[4:alg_end:2] if step_slices else _every_other(t, 4, alg_end)
            size = t[-1]
            off = start + fixed
        else:
            pcr, etype, digests, off = _slow_event(data, start, by_id, nbanks, number)
            size = _u32(data, off, "event[%d].eventSize" % number)
            off += 4
        if pcr > MAX_PCR:
            raise ParseError("PCR index %d out of range 0..%d" % (pcr, MAX_PCR), offset=start,
                             field="event[%d].pcrIndex" % number)
        if size > MAX_EVENT_DATA or off + size > n:
            if size > MAX_EVENT_DATA:
                msg = "event size %d exceeds maximum %d" % (size, MAX_EVENT_DATA)
            else:
                msg = "truncated: event claims %d bytes, %d left" % (size, n - off)
            raise ParseError(msg, offset=off - 4, field="event[%d].eventSize" % number)
        payload = data[off:off + size]
        if etype == EV_NO_ACTION:
            # PFP §10.4.5: EV_NO_ACTION events are never extended. The StartupLocality event
            # (§10.4.5.3) sets PCR 0's reset value, so it must precede every PCR 0 extend.
            if payload[:16] == STARTUP_LOCALITY_SIGNATURE:
                if pcr != 0 or size != 17:
                    raise ParseError("StartupLocality event must be 17 bytes in PCR 0",
                                     offset=start, field="event[%d].StartupLocality" % number)
                if locality is not None or pcr0_extended:
                    raise ParseError("StartupLocality event after a PCR 0 measurement or repeated",
                                     offset=start, field="event[%d].StartupLocality" % number)
                locality = payload[16]
        elif pcr == 0:
            pcr0_extended = True
        append(UnverifiedEvent(number, start, pcr, etype, banks, digests, payload))
        off += size
        number += 1
    return ParsedLog(header, events, locality, n)


def _slow_event(data, start, by_id, nbanks, number):
    """Read pcrIndex, eventType and TPML_DIGEST_VALUES field by field, naming what is wrong."""
    number_field = "event[%d]" % number
    pcr = _u32(data, start, number_field + ".pcrIndex")
    etype = _u32(data, start + 4, number_field + ".eventType")
    off = start + 8
    count = _u32(data, off, number_field + ".digests.count")
    if count != nbanks:
        raise ParseError("event lists %d digests but the Spec ID header declares %d banks" % (
            count, nbanks), offset=off, field=number_field + ".digests.count")
    off += 4
    digests = [None] * nbanks
    n = len(data)
    for i in range(count):
        field = "%s.digests[%d]" % (number_field, i)
        if off + 2 > n:
            raise ParseError("truncated: need 2 bytes, %d left" % (n - off), offset=off,
                             field=field + ".hashAlg")
        alg = struct.unpack_from("<H", data, off)[0]
        entry = by_id.get(alg)
        if entry is None:
            raise ParseError("algorithm 0x%04x is not declared in the Spec ID header" % alg,
                             offset=off, field=field + ".hashAlg")
        pos, size = entry
        if digests[pos] is not None:
            raise ParseError("algorithm 0x%04x listed twice" % alg, offset=off,
                             field=field + ".hashAlg")
        off += 2
        if off + size > n:
            raise ParseError("truncated: %d-byte digest, %d bytes left" % (size, n - off),
                             offset=off, field=field + ".digest")
        digests[pos] = data[off:off + size]
        off += size
    return pcr, etype, tuple(digests), off
