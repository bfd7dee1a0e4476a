# Replay: recompute the PCR values a log claims, bank by bank (PFP §10.2; TPM 2.0 Part 1 §17.6.4:
# PCR_new = H(PCR_old || digest)). Only a replay that matches PCR values from the TPM turns the log's
# events from claims into evidence; see verify_replay().

from firmware import compat
from firmware.eventlog.types import EV_NO_ACTION

NUM_PCRS = 24


DRTM_PCRS = range(17, 23)


def initial_value(bank_size, pcr, startup_locality=None):
    """PCR values after TPM_Init + TPM2_Startup(CLEAR) in a static boot: zeros, except
    - PCRs 17-22 (dynamic-launch PCRs), which reset to all ones until a DRTM launch (PC Client
      Platform TPM Profile §4.6, PCR attributes table), so a static boot leaves them 0xFF..FF;
    - PCR 0 when a StartupLocality event says the CRTM ran at locality 3 or 4 (PFP §10.4.5.3):
      then its last byte is that locality."""
    if pcr in DRTM_PCRS:
        return b"\xff" * bank_size
    if pcr == 0 and startup_locality:
        return b"\x00" * (bank_size - 1) + bytes((startup_locality,))
    return b"\x00" * bank_size


def _copyable_hash(name):
    """A hash object whose copy() makes fresh ones (CPython), or None (MicroPython's hash objects
    cannot be copied). Copying skips compat.digest's constructor lookup on every extend."""
    proto = compat.new_hash(name)
    if getattr(proto, "copy", None) is None:
        return None
    return proto


_RESET_CACHE = {}


def _reset_values(size):
    values = _RESET_CACHE.get(size)
    if values is None:
        values = {}
        for i in range(NUM_PCRS):
            values[i] = initial_value(size, i)
        _RESET_CACHE[size] = values
    return values


def replay(log, banks=None):
    """{bank: {pcr: bytes}} for every PCR 0-23 of every bank in the log's header that this runtime
    can hash (or only `banks`). PCRs the log never extends keep their reset value."""
    header = log.header
    out = {}
    locality = log.startup_locality
    measured = [ev for ev in log.events if ev.type != EV_NO_ACTION]
    for pos, (_alg, name, size) in enumerate(header.algorithms):
        if banks is not None and name not in banks:
            continue
        if name not in compat.DIGEST_SIZES:
            if banks is not None:
                raise compat.UnsupportedAlgorithm("cannot replay bank %s" % name)
            continue
        pcrs = dict(_reset_values(size))
        if locality:
            pcrs[0] = initial_value(size, 0, locality)
        proto = _copyable_hash(name)
        if proto is None:
            digest = compat.digest
            for ev in measured:
                i = ev.pcr
                pcrs[i] = digest(name, pcrs[i] + ev.digest_values[pos])
        else:
            copy = proto.copy
            for ev in measured:
                i = ev.pcr
                h = copy()
                h.update(pcrs[i])
                h.update(ev.digest_values[pos])
                pcrs[i] = h.digest()
        out[name] = pcrs
    return out


class ReplayError(ValueError):
    """Replayed PCRs differ from the TPM's: the log is forged, incomplete, or from another boot.

    `mismatches` is a list of (bank, pcr, replayed, actual); `pcrs` the (bank, pcr) pairs.
    """

    def __init__(self, mismatches):
        self.mismatches = mismatches
        self.pcrs = [(m[0], m[1]) for m in mismatches]
        super().__init__("replay does not match PCRs: " + ", ".join(
            "%s:%d" % p for p in self.pcrs))


def compare_replay(replayed, actual, pcrs=None):
    """List (bank, pcr, replayed, actual) for every PCR that differs. `actual` is {bank: {pcr:
    bytes}}; only PCRs present in `actual` (or in `pcrs`) are compared; a bank that was replayed but
    is absent from `actual` is not compared here (the caller decides whether that is acceptable)."""
    out = []
    for bank in sorted(actual):
        values = actual[bank]
        mine = replayed.get(bank)
        for pcr in sorted(values):
            if pcrs is not None and pcr not in pcrs:
                continue
            have = None if mine is None else mine.get(pcr)
            if have != values[pcr]:
                out.append((bank, pcr, have, values[pcr]))
    return out


def verify_replay(log, actual, pcrs=None):
    """Raise ReplayError unless replaying `log` gives `actual`; return the replayed PCRs."""
    replayed = replay(log)
    bad = compare_replay(replayed, actual, pcrs)
    if bad:
        raise ReplayError(bad)
    return replayed
