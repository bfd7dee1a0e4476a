# Typed errors of the attestation code (firmware/attest).


class EvidenceError(ValueError):
    """Evidence that cannot be used: malformed, oversized, or not collectable. The message names
    the field and what is wrong with it; it never holds a secret (evidence holds none)."""
