# Ed25519 signature verification (RFC 8032 §5.1), portable: integers and SHA-512 only, so the same
# check runs on CPython in the initramfs (without OpenSSL) and on MicroPython boards. Verification
# only: nothing secret is handled here, so constant time is not needed.
#
# Points use extended twisted Edwards coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, x*y = T/Z
# (RFC 8032 §5.1.4); the addition formula there is complete, so it also doubles.

from firmware import compat

P = 2 ** 255 - 19                                                    # RFC 8032 §5.1: field prime
L = 2 ** 252 + 27742317777372353535851937790883648493                # order of the base point
D = (-121665 * pow(121666, P - 2, P)) % P                            # curve constant d
SQRT_M1 = pow(2, (P - 1) // 4, P)                                    # a square root of -1
_BY = (4 * pow(5, P - 2, P)) % P                                     # base point y = 4/5


class BadEncoding(ValueError):
    pass


def _add(p1, p2):
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * 2 * D * t2 % P
    dd = z1 * 2 * z2 % P
    e, f, g, h = b - a, dd - c, dd + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(k, pt):
    acc = (0, 1, 1, 0)  # neutral element
    while k:
        if k & 1:
            acc = _add(acc, pt)
        pt = _add(pt, pt)
        k >>= 1
    return acc


def _equal(p1, p2):
    x1, y1, z1, _ = p1
    x2, y2, z2, _ = p2
    return (x1 * z2 - x2 * z1) % P == 0 and (y1 * z2 - y2 * z1) % P == 0


def _recover_x(y, sign):
    # RFC 8032 §5.1.3 step 2-4: x^2 = (y^2 - 1) / (d y^2 + 1)
    if y >= P:
        raise BadEncoding("y coordinate not below p")
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    vx2 = v * x * x % P
    if vx2 == (-u) % P:
        x = x * SQRT_M1 % P
    elif vx2 != u:
        raise BadEncoding("not a point on the curve")
    if x == 0 and sign:
        raise BadEncoding("x is 0 but its sign bit is set")
    if x & 1 != sign:
        x = P - x
    return x


def decode_point(raw):
    if len(raw) != 32:
        raise BadEncoding("a point is 32 bytes, got %d" % len(raw))
    n = int.from_bytes(raw, "little")
    y = n & ((1 << 255) - 1)
    x = _recover_x(y, n >> 255)
    return (x, y, 1, x * y % P)


BASE = (_recover_x(_BY, 0), _BY, 1, _recover_x(_BY, 0) * _BY % P)


def verify(public_key, message, signature):
    """True when `signature` (64 bytes) is a valid Ed25519 signature of `message` under the 32-byte
    `public_key`; False for any malformed input (RFC 8032 §5.1.7)."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        a = decode_point(bytes(public_key))
        r = decode_point(bytes(signature[:32]))
    except BadEncoding:
        return False
    s = int.from_bytes(bytes(signature[32:]), "little")
    if s >= L:  # §5.1.7 step 1: reject non-canonical S (signature malleability)
        return False
    h = compat.new_hash("sha512", bytes(signature[:32]))
    h.update(bytes(public_key))
    h.update(bytes(message))
    k = int.from_bytes(h.digest(), "little") % L
    # Cofactorless check [S]B == R + [k]A, the form OpenSSL and most libraries use.
    return _equal(_mul(s, BASE), _add(r, _mul(k, a)))
