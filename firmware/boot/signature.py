# The vendor's public key and the bundle signature check. The key is an Ed25519 SubjectPublicKeyInfo
# PEM (RFC 8410 §4), which for Ed25519 is always the same 12-byte DER prefix and the 32-byte key;
# verification is firmware.boot.ed25519 (portable, no OpenSSL needed in the initramfs).

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


def load_public_key(pem):
    """verify(message, signature) -> bool for the Ed25519 public key in `pem`."""
    raw = raw_public_key(pem)

    def verify(message, signature):
        return ed25519.verify(raw, message, signature)

    return verify
