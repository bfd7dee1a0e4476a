# Integrity levels of a remote party (docs/attestation.md "## Integrity levels"), lowest first.
#
# The order is what `min_remote_integrity` (device-config.json) compares against: a call is
# accepted when the peer's level is at least the minimum. `failed` is below `unattested` on
# purpose: a phone that sends evidence which does not hold up (bad signature, nonce, chain, or a
# log the quoted PCRs contradict) is treated worse than an ordinary SIP phone that sends none, so
# an attacker gains nothing by sending broken evidence instead of none. The default minimum is
# `unattested`: calls with ordinary phones keep working, only `failed` peers are refused.

FAILED = "failed"          # evidence present but not valid: signature, chain, nonce, PCR digest, replay
UNATTESTED = "unattested"  # no evidence at all (an ordinary SIP phone)
UNKNOWN = "unknown"        # valid quote, consistent replay, but something no reference knows
OUTDATED = "outdated"      # a vendor image, but below min_version or revoked
VERIFIED = "verified"      # every component and predicted PCR equals a current vendor reference

ORDER = (FAILED, UNATTESTED, UNKNOWN, OUTDATED, VERIFIED)
DEFAULT_MINIMUM = UNATTESTED


def rank(level):
    """0 (failed) .. 4 (verified); ValueError names an unknown level."""
    for i, name in enumerate(ORDER):
        if name == level:
            return i
    raise ValueError("unknown integrity level %r (one of %s)" % (level, ", ".join(ORDER)))


def check(level):
    """`level` if it is a level name, else ValueError (for config files and peers' claims)."""
    rank(level)
    return level


def at_least(level, minimum):
    """True when `level` is as good as `minimum` or better."""
    return rank(level) >= rank(minimum)


def lowest(levels):
    """The worst of several levels (e.g. of several checks); `verified` for none."""
    out = VERIFIED
    for lv in levels:
        if rank(lv) < rank(out):
            out = lv
    return out
