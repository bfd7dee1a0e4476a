# The one elliptic-curve operation the client needs: an ephemeral ECDH on NIST P-256 against the
# TPM's storage key, for salted sessions (Part 1 §11.4.10.3, Annex C.6.1).
#
# CPython uses the `cryptography` package (OpenSSL, constant time). MicroPython has no EC
# arithmetic in its standard modules, so there the pure-Python P-256 below is used. It is not
# constant time; it only ever multiplies a fresh one-time ephemeral scalar, once by G and once by
# the TPM's key, so a timing observer sees a single trace per salt.

from firmware import compat

# SEC 2 v2 §2.4.2 / FIPS 186-4 D.1.2.3: curve secp256r1 (a = -3)
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5

# Use the pure implementation (always on MicroPython; tests set it to make salts reproducible).
USE_PURE = compat.IS_MICROPYTHON


class EcdhError(ValueError):
    pass


def ecdh_p256(peer_x, peer_y):
    """Returns (ephemeral_x, ephemeral_y, shared_x), all 32-byte big-endian. The peer point is
    checked to be on the curve first (an off-curve point could leak the ephemeral scalar)."""
    px = int.from_bytes(peer_x, "big")
    py = int.from_bytes(peer_y, "big")
    if not on_curve(px, py):
        raise EcdhError("TPM key is not a point on P-256")
    if USE_PURE:
        k = random_scalar()
        ex, ey = scalar_mult(k, GX, GY)
        zx, _ = scalar_mult(k, px, py)
        return _b32(ex), _b32(ey), _b32(zx)
    from cryptography.hazmat.primitives.asymmetric import ec

    peer = ec.EllipticCurvePublicNumbers(px, py, ec.SECP256R1()).public_key()
    eph = ec.generate_private_key(ec.SECP256R1())
    shared = eph.exchange(ec.ECDH(), peer)
    nums = eph.public_key().public_numbers()
    return _b32(nums.x), _b32(nums.y), shared


def _b32(v):
    return v.to_bytes(32, "big")


def on_curve(x, y):
    if not (0 <= x < P and 0 <= y < P):
        return False
    return (y * y - (x * x * x - 3 * x + B)) % P == 0


def random_scalar():
    # 64 extra bits make the bias of the reduction negligible (FIPS 186-4 B.4.1).
    return int.from_bytes(compat.random_bytes(40), "big") % (N - 1) + 1


# Jacobian coordinates (X, Y, Z) for (X/Z^2, Y/Z^3); None is the point at infinity.

def _double(pt):
    if pt is None:
        return None
    x, y, z = pt
    if y == 0:
        return None
    # dbl-2001-b (a = -3)
    delta = z * z % P
    gamma = y * y % P
    beta = x * gamma % P
    alpha = 3 * (x - delta) * (x + delta) % P
    x3 = (alpha * alpha - 8 * beta) % P
    z3 = ((y + z) * (y + z) - gamma - delta) % P
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % P
    return (x3, y3, z3)


def _add(p1, p2):
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    h = (u2 - u1) % P
    r = (s2 - s1) % P
    if h == 0:
        return _double(p1) if r == 0 else None
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    z3 = z1 * z2 * h % P
    return (x3, y3, z3)


def scalar_mult(k, x, y):
    """k * (x, y) in affine coordinates (Montgomery ladder: one add and one double per bit)."""
    if not 0 < k < N:
        raise EcdhError("scalar out of range")
    r0 = None
    r1 = (x, y, 1)
    for i in range(255, -1, -1):
        if (k >> i) & 1:
            r0 = _add(r0, r1)
            r1 = _double(r1)
        else:
            r1 = _add(r0, r1)
            r0 = _double(r0)
    if r0 is None:
        raise EcdhError("result is the point at infinity")
    X, Y, Z = r0
    zi = pow(Z, P - 2, P)
    zi2 = zi * zi % P
    return X * zi2 % P, Y * zi2 * zi % P
