# The vendor's public key and the bundle signature check. The key is an Ed25519 SubjectPublicKeyInfo
# PEM (RFC 8410 §4), which for Ed25519 is always the same 12-byte DER prefix and the 32-byte key;
# verification is OpenSSL's through `cryptography` where the interpreter has it (the initramfs does),
# else firmware.boot.ed25519 (portable, MicroPython). Both are RFC 8032 §5.1.7 cofactorless checks
# that reject S >= L and non-canonical points. Why the fast path: the check runs between the PCR 14
# separator and the unseal, and the pure-Python scalar multiplications take ~100 ms under TCG.

import binascii

from firmware.boot import ed25519

# RFC 8410 §4: SEQUENCE { SEQUENCE { OID 1.3.101.112 (id-Ed25519) }, BIT STRING (0 unused bits) }
ED25519_SPKI_PREFIX = b"\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00"
PEM_BEGIN = "-----BEGIN PUBLIC KEY-----"
PEM_END = "-----END PUBLIC KEY-----"


def raw_public_key(pem):
    """The 32-byte Ed25519 key of a PEM public key; ValueError says what is wrong."""
    try:
        text = bytes(pem).decode("ascii")
    except UnicodeError:
        raise ValueError("vendor key PEM is not ASCII")
    start = text.find(PEM_BEGIN)
    end = text.find(PEM_END)
    if start < 0 or end < start:
        raise ValueError("vendor key is not a PEM PUBLIC KEY")
    body = "".join(text[start + len(PEM_BEGIN):end].split())
    try:
        der = binascii.a2b_base64(body)
    except (ValueError, binascii.Error):
        raise ValueError("vendor key PEM has bad base64")
    if len(der) != len(ED25519_SPKI_PREFIX) + 32 or der[:len(ED25519_SPKI_PREFIX)] != \
            ED25519_SPKI_PREFIX:
        raise ValueError("vendor key is not an Ed25519 SubjectPublicKeyInfo (RFC 8410)")
    return der[len(ED25519_SPKI_PREFIX):]


def openssl_verifier(raw):
    """verify(message, signature) -> bool through `cryptography`, or None where it is missing.
    The import happens here, when the key is loaded (before anything is measured), not at the
    check."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return None
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes(raw))
    except ValueError:  # not a point: let the portable code refuse it the same way
        return None

    def verify(message, signature):
        if len(signature) != 64:
            return False
        try:
            key.verify(bytes(signature), bytes(message))
        except InvalidSignature:
            return False
        except Exception:  # anything else unexpected: fail closed
            return False
        return True

    # OpenSSL 3 looks up (fetches) the Ed25519 implementation on the first verify, which costs
    # more than the check itself under TCG: do it now, with a signature that cannot verify
    # (S = 0 with R = 0 verifies only if R + [k]A is the identity: never in practice), not on
    # the separator's path.
    verify(b"", bytes(64))
    return verify


def load_public_key(pem, use_openssl=True):
    """verify(message, signature) -> bool for the Ed25519 public key in `pem` (OpenSSL when
    available and `use_openssl`, else the portable implementation)."""
    raw = raw_public_key(pem)
    fast = openssl_verifier(raw) if use_openssl else None
    if fast is not None:
        return fast

    def verify(message, signature):
        return ed25519.verify(raw, message, signature)

    return verify
