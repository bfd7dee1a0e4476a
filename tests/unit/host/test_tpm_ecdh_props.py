"""The pure-Python P-256 of firmware/tpm/ecdh.py (used on MicroPython) against `cryptography`."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.tpm import ecdh


@settings(max_examples=25, deadline=None)
@given(st.integers(1, ecdh.N - 1), st.integers(1, ecdh.N - 1))
def test_pure_p256_matches_cryptography(a: int, b: int) -> None:
    ka = ec.derive_private_key(a, ec.SECP256R1())
    pb = ec.derive_private_key(b, ec.SECP256R1()).public_key().public_numbers()
    pa = ka.public_key().public_numbers()
    assert ecdh.scalar_mult(a, ecdh.GX, ecdh.GY) == (pa.x, pa.y)
    shared = ka.exchange(ec.ECDH(), ec.EllipticCurvePublicNumbers(pb.x, pb.y, ec.SECP256R1()).public_key())
    assert ecdh.scalar_mult(a, pb.x, pb.y)[0].to_bytes(32, "big") == shared
