# The one elliptic-curve operation the client needs: an ephemeral ECDH on NIST P-256 against the
# TPM's storage key, for salted sessions (Part 1 §11.4.10.3, Annex C.6.1).
#
# CPython uses the `cryptography` package. MicroPython has no EC arithmetic in its standard
# modules: salted sessions are not available there yet (ecdh_p256 raises NotImplementedError);
# a pure-Python P-256 scalar multiplication could be added here without touching callers.

from firmware import compat


def ecdh_p256(peer_x, peer_y):
    """Returns (ephemeral_x, ephemeral_y, shared_x), all 32-byte big-endian."""
    if compat.IS_MICROPYTHON:
        raise NotImplementedError("ECDH (salted TPM sessions) is not implemented on MicroPython")
    from cryptography.hazmat.primitives.asymmetric import ec

    peer = ec.EllipticCurvePublicNumbers(int.from_bytes(peer_x, "big"),
                                         int.from_bytes(peer_y, "big"),
                                         ec.SECP256R1()).public_key()
    eph = ec.generate_private_key(ec.SECP256R1())
    shared = eph.exchange(ec.ECDH(), peer)
    nums = eph.public_key().public_numbers()
    return nums.x.to_bytes(32, "big"), nums.y.to_bytes(32, "big"), shared
