"""The verification itself, with no I/O: parse (done by the caller), replay, compare.

Order matters and is the point: a log is only a claim until its replay equals the PCR values the TPM
reports. Replay is per bank: each bank of a PCR is extended with its own digest, so a log can carry
the measured SHA-1 digest and a made-up SHA-256 digest in one event, and the SHA-1 replay still
matches. A digest is therefore evidence only in a bank whose replay matched the TPM: an event is
"trusted" when the bank of the reference's digests (REFERENCE_BANK, sha256) of its PCR replayed
exactly and no other compared bank of that PCR failed. Otherwise its comparison with the reference
is "unverified" (never ok) and says which bank and PCR; a replay failure says the log is forged or
incomplete for that PCR. Expected PCR values of the reference are held to the same rule: one in a
bank left out by --banks counts only if a compared bank pins the same PCR, else it is "unverified".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from firmware.errors import ParseError
from firmware.eventlog.types import EV_EVENT_TAG, EV_NO_ACTION, EV_SEPARATOR
from host_tools.verify._fw import (BUNDLE_EVENT_NAME, ParsedLog, bundle_label, bundle_or_none,
                                   component_or_none, describe, event_type_name, initial_value,
                                   parse_log, replay)
from host_tools.verify.reference import KNOWN_BANK_SIZES, REFERENCE_BANK, InputError, Reference

PcrValues = dict[str, dict[int, bytes]]

# PCR statuses
OK = "ok"
REPLAY_MISMATCH = "replay-mismatch"   # the log does not explain the PCR: forged or incomplete
UNEXPLAINED = "unexplained"           # no log extends this PCR, yet it is not at its reset value
BANK_MISSING = "bank-missing"         # the log extending this PCR has no digests for this bank
UNEXPECTED = "unexpected"             # replay fine, but the value is not the reference's
UNAVAILABLE = "unavailable"           # the reference expects a value the PCR input lacks
UNVERIFIED = "unverified"             # the reference expects a value in a bank left out by --banks
#                                       and no compared bank pins this PCR (also an event status)

# event statuses
DIFFERS = "differs"
MISSING = "missing"
EXTRA = "extra"
OUT_OF_ORDER = "out-of-order"
# UNVERIFIED: the event matches the reference, but its digest is not evidence: the reference bank
# of its PCR was not compared with the TPM or did not replay (EventResult.problems says which)


@dataclass
class NamedLog:
    name: str
    log: ParsedLog


@dataclass(slots=True)
class PcrResult:
    bank: str
    pcr: int
    status: str
    replayed: bytes | None
    actual: bytes | None
    expected: bytes | None
    source: str | None  # which log extends this PCR

    def to_json(self) -> dict[str, Any]:
        return {"bank": self.bank, "pcr": self.pcr, "status": self.status,
                "replayed": _hex(self.replayed), "actual": _hex(self.actual),
                "expected": _hex(self.expected), "log": self.source}


@dataclass(slots=True)
class EventResult:
    status: str
    name: str
    version: str | None = None
    expected_version: str | None = None
    pcr: int | None = None
    expected_pcr: int | None = None
    digest: bytes | None = None
    expected_digest: bytes | None = None
    log: str | None = None
    number: int | None = None
    trusted: bool = True
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "name": self.name, "version": self.version,
                "expected_version": self.expected_version, "pcr": self.pcr,
                "expected_pcr": self.expected_pcr, "sha256": _hex(self.digest),
                "expected_sha256": _hex(self.expected_digest), "log": self.log,
                "event": self.number, "trusted": self.trusted, "problems": self.problems}


@dataclass
class Report:
    pcrs: list[PcrResult]
    events: list[EventResult]
    notes: list[str]
    # For each PCR whose replay failed: what the logs claim was measured there (unverified), so a
    # user can see which events the TPM's value does not support.
    claimed: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (all(p.status == OK for p in self.pcrs)
                and all(e.status == OK and e.trusted for e in self.events)
                and not self.notes)

    @property
    def result(self) -> str:
        """"ok"; "unverified" when nothing differs but something could not be checked (a bank not
        compared, a PCR left out); "mismatch" otherwise. Only "ok" is exit status 0."""
        if self.ok:
            return "ok"
        if (not self.notes and all(p.status in (OK, UNVERIFIED) for p in self.pcrs)
                and all(e.status in (OK, UNVERIFIED) for e in self.events)):
            return UNVERIFIED
        return "mismatch"

    @property
    def replay_failures(self) -> list[PcrResult]:
        return [p for p in self.pcrs if p.status in (REPLAY_MISMATCH, UNEXPLAINED, BANK_MISSING)]

    def to_json(self) -> dict[str, Any]:
        return {"result": self.result,
                "replay_failed_pcrs": sorted({p.pcr for p in self.replay_failures}),
                "pcrs": [p.to_json() for p in self.pcrs],
                "events": [e.to_json() for e in self.events], "notes": self.notes,
                "claimed_events": {str(k): v for k, v in sorted(self.claimed.items())}}


def _hex(b: bytes | None) -> str | None:
    return None if b is None else b.hex()


def parse_named(name: str, data: bytes) -> NamedLog:
    """Parse one log; a ParseError becomes an InputError naming the file, offset and field."""
    try:
        return NamedLog(name, parse_log(data))
    except ParseError as e:
        raise InputError("%s: %s" % (name, e)) from None


def _touched(log: ParsedLog) -> set[int]:
    pcrs = {ev.pcr for ev in log.events if ev.type != EV_NO_ACTION}
    if log.startup_locality:
        pcrs.add(0)
    return pcrs


def merged_replay(logs: Sequence[NamedLog], banks: set[str] | None = None
                  ) -> tuple[dict[int, str], dict[str, PcrValues]]:
    """Replay every log (only `banks`, if given); return (owner log of each extended PCR,
    {log name: replay})."""
    owner: dict[int, str] = {}
    replays: dict[str, PcrValues] = {}
    for nl in logs:
        for pcr in _touched(nl.log):
            if pcr in owner:
                # Two logs extending one PCR would need their interleaving, which no log records.
                raise InputError("%s and %s both extend PCR %d; give each PCR's events in one log"
                                 % (owner[pcr], nl.name, pcr))
            owner[pcr] = nl.name
        if banks is None:
            replays[nl.name] = replay(nl.log)
        else:
            replays[nl.name] = replay(nl.log, [b for b in nl.log.header.banks if b in banks])
    return owner, replays


def compare_pcrs(logs: Sequence[NamedLog], actual: PcrValues, reference: Reference | None,
                 only: set[int] | None = None, banks: set[str] | None = None) -> list[PcrResult]:
    """`actual` holds the compared banks (the --banks selection `banks`, if given, already
    applied). A reference value in a bank --banks left out is skipped when a compared bank's
    reference value pins the same PCR, else it is UNVERIFIED: never silently dropped."""
    expected = reference.pcrs if reference is not None else {}
    excluded = {b for b in expected if b not in actual and banks is not None and b not in banks}
    pinned = {pcr for b, exp in expected.items() if b in actual for pcr in exp}
    owner, replays = merged_replay(logs, (set(actual) | set(expected)) - excluded)
    results: list[PcrResult] = []
    for bank in sorted(set(actual) | set(expected)):
        act = actual.get(bank, {})
        exp = expected.get(bank, {})
        size = KNOWN_BANK_SIZES[bank]  # banks were validated when the inputs were loaded
        for pcr in sorted(set(act) | set(exp)):
            if only is not None and pcr not in only:
                continue
            src = owner.get(pcr)
            if bank in excluded:
                if pcr not in pinned:
                    results.append(PcrResult(bank, pcr, UNVERIFIED, None, None, exp[pcr], src))
                continue
            replayed: bytes | None
            if src is None:
                replayed = initial_value(size, pcr)
            else:
                replayed = replays[src].get(bank, {}).get(pcr)
            a = act.get(pcr)
            e = exp.get(pcr)
            if a is None:
                status = UNAVAILABLE
            elif src is not None and replayed is None:
                status = BANK_MISSING
            elif replayed != a:
                status = REPLAY_MISMATCH if src is not None else UNEXPLAINED
            elif e is not None and e != a:
                status = UNEXPECTED
            else:
                status = OK
            results.append(PcrResult(bank, pcr, status, replayed, a, e, src))
    return results


def _lis_positions(seq: list[int]) -> set[int]:
    """Indices (into seq) of one longest strictly increasing subsequence: events in reference order.
    Everything outside it is reported out of order."""
    import bisect

    tails: list[int] = []
    tails_idx: list[int] = []
    prev = [-1] * len(seq)
    for i, v in enumerate(seq):
        j = bisect.bisect_left(tails, v)
        if j == len(tails):
            tails.append(v)
            tails_idx.append(i)
        else:
            tails[j] = v
            tails_idx[j] = i
        prev[i] = tails_idx[j - 1] if j > 0 else -1
    keep: set[int] = set()
    k = tails_idx[-1] if tails_idx else -1
    while k >= 0:
        keep.add(k)
        k = prev[k]
    return keep


def compare_events(logs: Sequence[NamedLog], reference: Reference,
                   verified_pcrs: set[int]) -> tuple[list[EventResult], list[str]]:
    comp_pcrs = {c.pcr for c in reference.components}
    ref_index = {c.name: i for i, c in enumerate(reference.components)}
    seen: dict[str, EventResult] = {}
    results: list[EventResult] = []
    notes: list[str] = []
    matched: list[tuple[int, EventResult]] = []
    separated: set[int] = set()
    for nl in logs:
        banks = nl.log.header.banks
        sha256_pos = banks.index(REFERENCE_BANK) if REFERENCE_BANK in banks else -1
        for ev in nl.log.events:
            comp: tuple[str, str] | None = None
            if ev.type == EV_EVENT_TAG:
                try:
                    comp = component_or_none(ev.data, ev.offset)
                    if comp is None:
                        # The bundle event reads like a component named "bundle" whose version
                        # is its identity; its digest covers that identity (docs/eventlog.md).
                        b = bundle_or_none(ev.data, ev.offset)
                        if b is not None:
                            comp = (BUNDLE_EVENT_NAME, bundle_label(b[1], b[2], b[0]))
                except ParseError as e:
                    raise InputError("%s: event %d: %s" % (nl.name, ev.number, e)) from None
            if comp is None and ev.pcr not in comp_pcrs:
                continue  # firmware events: checked through PCR values only
            if ev.type == EV_NO_ACTION:
                continue
            if ev.type == EV_SEPARATOR:
                if ev.pcr in separated:
                    results.append(EventResult(EXTRA, "<separator>", pcr=ev.pcr, log=nl.name,
                                               number=ev.number,
                                               problems=["second separator in PCR %d" % ev.pcr]))
                separated.add(ev.pcr)
                continue
            if sha256_pos < 0:
                raise InputError("%s: log has no %s bank to compare with the reference"
                                 % (nl.name, REFERENCE_BANK))
            digest = ev.digest_values[sha256_pos]
            trusted = ev.pcr in verified_pcrs
            if comp is None:
                results.append(EventResult(EXTRA, "<%s>" % event_type_name(ev.type), pcr=ev.pcr,
                                           digest=digest, log=nl.name, number=ev.number,
                                           trusted=trusted,
                                           problems=["not a phone component event"]))
                continue
            name, version = comp
            pcr = ev.pcr
            idx = ref_index.get(name)
            if pcr in separated or idx is None or name in seen:
                r = EventResult(EXTRA, name, version, None, pcr, None, digest, None, nl.name,
                                ev.number, trusted)
                r.problems.append("measured after the separator in PCR %d" % pcr
                                  if pcr in separated else "not in the reference"
                                  if idx is None else "measured more than once")
                results.append(r)
                continue
            c = reference.components[idx]
            r = EventResult(OK, name, version, c.version, pcr, c.pcr, digest, c.sha256, nl.name,
                            ev.number, trusted)
            results.append(r)
            seen[name] = r
            if version != c.version:
                r.problems.append("version %s, reference %s" % (version, c.version))
            if digest != c.sha256:
                r.problems.append("sha256 %s, reference %s" % (digest.hex(), c.sha256.hex()))
            if pcr != c.pcr:
                r.problems.append("PCR %d, reference %d" % (pcr, c.pcr))
            if r.problems:
                r.status = DIFFERS
            matched.append((idx, r))
    order = [i for i, _ in matched]
    # usually already in reference order (names are unique, so sorted means strictly increasing)
    keep = set(range(len(order))) if order == sorted(order) else _lis_positions(order)
    for pos, (_idx, r) in enumerate(matched):
        if pos not in keep:
            r.problems.append("out of order")
            if r.status == OK:
                r.status = OUT_OF_ORDER
    for c in reference.components:
        if c.name not in seen:
            results.append(EventResult(MISSING, c.name, expected_version=c.version,
                                       expected_pcr=c.pcr, expected_digest=c.sha256,
                                       problems=["not in any log"]))
    for pcr in sorted(comp_pcrs - separated):
        results.append(EventResult(MISSING, "<separator>", expected_pcr=pcr,
                                   problems=["PCR %d not closed by EV_SEPARATOR: more could follow"
                                             % pcr]))
    return results, notes


def verify(logs: Sequence[NamedLog], actual: PcrValues, reference: Reference | None,
           only: set[int] | None = None, banks: set[str] | None = None) -> Report:
    """Replay `logs`, compare with `actual` PCRs, then (if given) with `reference`. `banks`: the
    --banks selection (None: every bank in `actual`); only those banks are evidence."""
    if not logs:
        raise InputError("no event log given")
    if banks is not None:
        actual = {b: v for b, v in actual.items() if b in banks}
    notes: list[str] = []
    if not set(actual) & {b for nl in logs for b in nl.log.header.banks}:
        raise InputError("no PCR bank in common between the logs and the PCR values")
    pcrs = compare_pcrs(logs, actual, reference, only, banks)
    # (bank, PCR) whose replay equals the TPM's value; PCRs where any compared bank failed
    replayed = {(p.bank, p.pcr) for p in pcrs if p.status in (OK, UNEXPECTED)}
    failed = {p.pcr for p in pcrs if p.status in (REPLAY_MISMATCH, UNEXPLAINED, BANK_MISSING)}
    # An event's digest is compared in REFERENCE_BANK: that bank must have replayed (PFP §10.2.2:
    # each bank of a TCG_PCR_EVENT2 is a separate digest, extended into its own bank only).
    verified = {pcr for bank, pcr in replayed if bank == REFERENCE_BANK} - failed
    events: list[EventResult] = []
    if reference is not None:
        events, more = compare_events(logs, reference, verified)
        notes.extend(more)
        for e in events:
            if e.pcr is not None and not e.trusted:
                e.problems.append(untrusted_reason(e.pcr, pcrs, actual, only, banks))
                if e.status == OK:
                    e.status = UNVERIFIED
    return Report(pcrs, events, notes, claimed_events(logs, failed))


def untrusted_reason(pcr: int, pcrs: Sequence[PcrResult], actual: PcrValues,
                     only: set[int] | None, banks: set[str] | None) -> str:
    """Why the events of `pcr` are not evidence: names the bank and the PCR."""
    bad = ["%s:%d %s" % (p.bank, p.pcr, p.status) for p in pcrs
           if p.pcr == pcr and p.status in (REPLAY_MISMATCH, UNEXPLAINED, BANK_MISSING)]
    if bad:
        return ("PCR %d replay does not match the TPM (%s): the log's digests are not what was "
                "measured" % (pcr, ", ".join(bad)))
    if only is not None and pcr not in only:
        return "PCR %d not checked against TPM values (not in --pcr-list)" % pcr
    head = "%s bank of PCR %d not verified: " % (REFERENCE_BANK, pcr)
    tail = ("; the log's %s digest is not evidence unless that bank replays to the TPM's value"
            % REFERENCE_BANK)
    if REFERENCE_BANK not in actual:
        if banks is not None:
            why = "--banks %s leaves it out" % ",".join(sorted(banks))
        else:
            why = "the PCR values have no %s bank (read: %s)" % (
                REFERENCE_BANK, ", ".join(sorted(actual)) or "none")
        return head + why + tail
    return head + "no %s value of PCR %d was read" % (REFERENCE_BANK, pcr) + tail


def claimed_events(logs: Sequence[NamedLog], pcrs: set[int]) -> dict[int, list[dict[str, Any]]]:
    """The (unverified) events the logs list in `pcrs`, described for the report."""
    out: dict[int, list[dict[str, Any]]] = {}
    for nl in logs:
        for ev in nl.log.events:
            if ev.pcr in pcrs and ev.type != EV_NO_ACTION:
                out.setdefault(ev.pcr, []).append({
                    "log": nl.name, "event": ev.number, "type": event_type_name(ev.type),
                    "description": describe(ev.type, ev.data),
                    "digests": {b: d.hex() for b, d in ev.digests.items()}})
    return out


def verify_bytes(logs: Sequence[tuple[str, bytes]], actual: PcrValues,
                 reference: Reference | None, banks: set[str] | None = None) -> Report:
    return verify([parse_named(n, d) for n, d in logs], actual, reference, banks=banks)
