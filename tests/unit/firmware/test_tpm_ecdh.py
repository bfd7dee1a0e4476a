# Pure-Python P-256 (firmware/tpm/ecdh.py), the MicroPython path of salted sessions. The host test
# tests/unit/host/test_tpm_ecdh_props.py checks it against `cryptography` on random scalars.
from firmware.tpm import ecdh
from tests.unit.firmware.check import raises


def test_generator_on_curve_and_order():
    assert ecdh.on_curve(ecdh.GX, ecdh.GY)
    assert ecdh.scalar_mult(1, ecdh.GX, ecdh.GY) == (ecdh.GX, ecdh.GY)
    # (n-1)G = -G: same x, y negated
    assert ecdh.scalar_mult(ecdh.N - 1, ecdh.GX, ecdh.GY) == (ecdh.GX, ecdh.P - ecdh.GY)


def test_shared_secret_agrees():
    a, b = 0x1234567890ABCDEF, 0xFEDCBA0987654321 << 100
    ax, ay = ecdh.scalar_mult(a, ecdh.GX, ecdh.GY)
    bx, by = ecdh.scalar_mult(b, ecdh.GX, ecdh.GY)
    assert ecdh.on_curve(ax, ay) and ecdh.on_curve(bx, by)
    assert ecdh.scalar_mult(a, bx, by) == ecdh.scalar_mult(b, ax, ay)
    # doubling through the ladder equals adding: 2G computed as 2*G and as (1+1)G in scalar terms
    assert ecdh.scalar_mult(2, ecdh.GX, ecdh.GY) == ecdh.scalar_mult(1, *ecdh.scalar_mult(2, ecdh.GX, ecdh.GY))


def test_off_curve_peer_rejected():
    saved = ecdh.USE_PURE
    ecdh.USE_PURE = True
    try:
        e = raises(ecdh.EcdhError, ecdh.ecdh_p256, (ecdh.GX).to_bytes(32, "big"), (ecdh.GY + 1).to_bytes(32, "big"))
        assert "not a point" in str(e)
    finally:
        ecdh.USE_PURE = saved


def test_pure_ecdh_shapes():
    saved = ecdh.USE_PURE
    ecdh.USE_PURE = True
    try:
        ex, ey, z = ecdh.ecdh_p256(ecdh.GX.to_bytes(32, "big"), ecdh.GY.to_bytes(32, "big"))
        # against G itself the shared x is the ephemeral public x
        assert len(ex) == len(ey) == len(z) == 32 and z == ex
        assert ecdh.on_curve(int.from_bytes(ex, "big"), int.from_bytes(ey, "big"))
    finally:
        ecdh.USE_PURE = saved
