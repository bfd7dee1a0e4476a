# Writer for the phone's own measurement log, in the same crypto-agile format as the firmware's
# (PFP §10), so tpm2_eventlog and our parser read both. The stage loader measures the bundle's
# identity (add_bundle: board, version, anti-rollback counter), then each component into the
# board's component register (PCR 14 on qemu-x86_64; firmware/pcr_registry.py), appending one event here per TPM2_PCR_Extend, then a final EV_SEPARATOR
# after which nothing more is measured. The writer only builds bytes: extending the TPM is the
# caller's job, with the digests measure_component() returns, so log and PCRs cannot drift apart.

import struct

from firmware import compat
from firmware.pcr_registry import DEFAULT_COMPONENT_PCR
from firmware.tcg_alg import HASH_ALG_IDS, HASH_SIZES
from firmware.eventlog.component import encode_bundle, encode_component
from firmware.eventlog.parser import SPEC_ID_SIGNATURE
from firmware.eventlog.types import EV_EVENT_TAG, EV_NO_ACTION, EV_SEPARATOR

PHONE_PCR = DEFAULT_COMPONENT_PCR  # the default; PhoneLog(pcr=) takes the board's register
SEPARATOR_DATA = b"\x00\x00\x00\x00"  # PFP §10.4.1 EV_SEPARATOR: 0x00000000 marks normal completion
PLATFORM_CLASS_CLIENT = 0             # PFP §10.4.5.1: 0 = PC Client


def spec_id_event(banks, uintn_size=2):
    """The first event: TCG_PCClientPCREvent (SHA-1 format) carrying "Spec ID Event03"."""
    body = SPEC_ID_SIGNATURE + struct.pack("<IBBBBI", PLATFORM_CLASS_CLIENT, 0, 2, 0, uintn_size,
                                           len(banks))
    for bank in banks:
        body += struct.pack("<HH", HASH_ALG_IDS[bank], HASH_SIZES[bank])
    body += b"\x00"  # vendorInfoSize
    return struct.pack("<II", 0, EV_NO_ACTION) + b"\x00" * 20 + struct.pack("<I", len(body)) + body


def pcr_event2(pcr, event_type, digests, data, banks):
    """One TCG_PCR_EVENT2; `digests` is {bank: bytes}, written in `banks` order."""
    out = struct.pack("<III", pcr, event_type, len(banks))
    for bank in banks:
        d = digests[bank]
        if len(d) != HASH_SIZES[bank]:
            raise ValueError("%s digest must be %d bytes" % (bank, HASH_SIZES[bank]))
        out += struct.pack("<H", HASH_ALG_IDS[bank]) + d
    return out + struct.pack("<I", len(data)) + data


def measure_component(name, version, data, banks=("sha256",), pcr=PHONE_PCR):
    """(digests {bank: bytes}, event bytes) for one component: extend each bank with its digest."""
    digests = {}
    for bank in banks:
        digests[bank] = compat.digest(bank, data)
    return digests, pcr_event2(pcr, EV_EVENT_TAG, digests, encode_component(name, version), banks)


def measure_bundle(board, bundle_version, counter, banks=("sha256",), pcr=PHONE_PCR):
    """(digests, event bytes) of the bundle event: the digest is of the event data itself, so the
    measured value is the bundle's identity (board, version, anti-rollback counter)."""
    data = encode_bundle(board, bundle_version, counter)
    digests = {}
    for bank in banks:
        digests[bank] = compat.digest(bank, data)
    return digests, pcr_event2(pcr, EV_EVENT_TAG, digests, data, banks)


def separator_event(banks=("sha256",), pcr=PHONE_PCR):
    digests = {}
    for bank in banks:
        digests[bank] = compat.digest(bank, SEPARATOR_DATA)
    return digests, pcr_event2(pcr, EV_SEPARATOR, digests, SEPARATOR_DATA, banks)


class PhoneLog:
    """Accumulates the phone's log: header, component events, then close() adds the separator.

    add_component() returns the digests to extend into the TPM; after close() it refuses more."""

    def __init__(self, banks=("sha256",), pcr=PHONE_PCR):
        if not banks:
            raise ValueError("at least one bank")
        for bank in banks:
            if bank not in HASH_ALG_IDS or bank not in compat.DIGEST_SIZES:
                raise ValueError("unsupported bank %r" % (bank,))
        self.banks = tuple(banks)
        self.pcr = pcr
        self._parts = [spec_id_event(self.banks)]
        self.closed = False

    def add_component(self, name, version, data):
        if self.closed:
            raise ValueError("log closed by its separator: no more measurements")
        digests, ev = measure_component(name, version, data, self.banks, self.pcr)
        self._parts.append(ev)
        return digests

    def add_bundle(self, board, bundle_version, counter):
        """The bundle event (first in the component register, before the components); returns its digests."""
        if self.closed:
            raise ValueError("log closed by its separator: no more measurements")
        digests, ev = measure_bundle(board, bundle_version, counter, self.banks, self.pcr)
        self._parts.append(ev)
        return digests

    def add_measured(self, name, version, digests):
        """Log a component whose digests were computed elsewhere (e.g. streamed from flash)."""
        if self.closed:
            raise ValueError("log closed by its separator: no more measurements")
        self._parts.append(pcr_event2(self.pcr, EV_EVENT_TAG, digests,
                                      encode_component(name, version), self.banks))
        return digests

    def close(self):
        if self.closed:
            raise ValueError("log already closed")
        digests, ev = separator_event(self.banks, self.pcr)
        self._parts.append(ev)
        self.closed = True
        return digests

    def to_bytes(self):
        return b"".join(self._parts)
