"""Human-readable rendering of a verification Report (the JSON form is Report.to_json())."""

from __future__ import annotations

from host_tools.verify.core import (BANK_MISSING, OK, REPLAY_MISMATCH, UNAVAILABLE, UNEXPECTED,
                                    UNEXPLAINED, UNVERIFIED, Report)

_PCR_TEXT = {
    OK: "ok",
    REPLAY_MISMATCH: "REPLAY MISMATCH: log forged or incomplete",
    UNEXPLAINED: "UNEXPLAINED: no log extends it, yet it is not at its reset value",
    BANK_MISSING: "BANK MISSING: its log has no digests for this bank",
    UNEXPECTED: "UNEXPECTED: replay matches but the value is not the reference's",
    UNAVAILABLE: "UNAVAILABLE: the reference expects it but no value was read",
    UNVERIFIED: "UNVERIFIED: the reference expects it in a bank --banks leaves out, and no "
                "compared bank pins this PCR",
}


def _h(b: bytes | None) -> str:
    return "-" if b is None else b.hex()


def render(report: Report, verbose: bool = False) -> str:
    lines = ["measured-boot verification: %s" % report.result.upper()]
    failed = sorted({(p.bank, p.pcr) for p in report.replay_failures})
    if failed:
        lines.append("replay does not match the TPM for PCRs: " + ", ".join(
            "%s:%d" % bp for bp in failed) + " (their events are not trusted)")
    for pcr, claims in sorted(report.claimed.items()):
        lines.append("  PCR %d: the logs claim %d event(s), not supported by the TPM's value:" % (
            pcr, len(claims)))
        for c in claims:
            lines.append("    %s event %d %s: %s" % (c["log"], c["event"], c["type"],
                                                   c["description"]))
    lines.append("PCRs (bank index: status; replayed / actual / expected):")
    for p in report.pcrs:
        if p.status == OK and not verbose and p.expected is None:
            continue
        lines.append("  %-6s %2d: %s%s" % (p.bank, p.pcr, _PCR_TEXT[p.status],
                                         "" if p.source is None else " [log %s]" % p.source))
        if p.status != OK or verbose:
            lines.append("      replayed %s" % _h(p.replayed))
            lines.append("      actual   %s" % _h(p.actual))
            lines.append("      expected %s" % _h(p.expected))
    shown = len([p for p in report.pcrs if p.status != OK or verbose or p.expected is not None])
    if shown < len(report.pcrs):
        lines.append("  (%d more PCRs replay exactly; --verbose lists them)" % (
            len(report.pcrs) - shown))
    if report.events:
        lines.append("Components (log vs reference):")
        for e in report.events:
            version = e.version or e.expected_version or "-"
            where = ""
            if e.log is not None:
                where = " [%s event %d, PCR %s]" % (e.log, e.number or 0, e.pcr)
            untrusted = ("" if e.trusted or e.status == UNVERIFIED
                         else " (UNVERIFIED: not confirmed by the TPM's PCR values)")
            lines.append("  %-12s %s %s%s%s" % (e.status, e.name, version, where, untrusted))
            for problem in e.problems:
                lines.append("      " + problem)
    for note in report.notes:
        lines.append("note: " + note)
    return "\n".join(lines)


def summary_line(report: Report) -> str:
    """One line for fleet mode."""
    if report.ok:
        return "OK"
    parts: list[str] = []
    failed = sorted({p.pcr for p in report.replay_failures})
    if failed:
        parts.append("replay mismatch PCR " + ",".join(str(p) for p in failed))
    unexpected = sorted({p.pcr for p in report.pcrs if p.status in (UNEXPECTED, UNAVAILABLE)})
    if unexpected:
        parts.append("unexpected PCR " + ",".join(str(p) for p in unexpected))
    unverified = sorted({(p.bank, p.pcr) for p in report.pcrs if p.status == UNVERIFIED})
    if unverified:
        parts.append("unverified PCR " + ",".join("%s:%d" % bp for bp in unverified)
                     + " (bank not compared)")
    reasons: list[str] = []  # why events are unverified, once each (one per PCR)
    for e in report.events:
        if e.status != OK or not e.trusted:
            parts.append("%s %s %s" % (e.status, e.name, e.version or e.expected_version or ""))
            if e.status == UNVERIFIED and e.problems and e.problems[-1] not in reasons:
                reasons.append(e.problems[-1])
    parts.extend(reasons)
    parts.extend(report.notes)
    return "%s %s" % (report.result.upper(), "; ".join(p.strip() for p in parts))
