# PEM (RFC 7468) and the one SubjectPublicKeyInfo the attestation key has: ECC NIST P-256
# (RFC 5480 §2), so the device can print its AK as PEM without an ASN.1 library (MicroPython).

import binascii

from firmware.attest.errors import EvidenceError

# SEQUENCE { SEQUENCE { id-ecPublicKey, secp256r1 }, BIT STRING (0 unused bits) 04 || X || Y }
P256_SPKI_PREFIX = binascii.unhexlify(
    "3059301306072a8648ce3d020106082a8648ce3d030107034200")
B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64encode(data):
    return binascii.b2a_base64(bytes(data)).decode().strip()


def b64decode(text, field, max_size):
    """Strict base64 (RFC 4648 §4: alphabet, padding, length; §3.5 canonical) -> bytes;
    EvidenceError names `field`. binascii alone skips characters outside the alphabet, so the
    decoded bytes are encoded again and must give back the text: one pass in C instead of a
    Python loop over every character (evidence carries ~20 KB of base64 per call set-up)."""
    if not isinstance(text, str):
        raise EvidenceError("%s must be a base64 string" % field)
    if len(text) % 4 or len(text) > 4 * ((max_size + 2) // 3):
        raise EvidenceError("%s: base64 of bad length %d (at most %d bytes)" % (field, len(text), max_size))
    try:
        data = binascii.a2b_base64(text)
    except (ValueError, binascii.Error):
        data = None
    if data is not None and b64encode(data) == text:
        return data
    # refused: find what to name (only on this path, so a loop is fine)
    body = text.rstrip("=")
    if len(text) - len(body) > 2:
        raise EvidenceError("%s: bad base64 padding" % field)
    for ch in body:
        if ch not in B64_ALPHABET:
            raise EvidenceError("%s: character %r is not base64" % (field, ch))
    raise EvidenceError("%s: bad base64 (not the canonical encoding, RFC 4648 §3.5)" % field)


def pem_encode(label, der):
    lines = ["-----BEGIN %s-----" % label]
    for i in range(0, len(der), 48):
        lines.append(b64encode(der[i:i + 48]))
    lines.append("-----END %s-----" % label)
    return "\n".join(lines) + "\n"


def pem_decode(text, label, field, max_size):
    """The DER inside one PEM block with `label` (nothing else around it) -> bytes."""
    if not isinstance(text, str):
        raise EvidenceError("%s must be a PEM string" % field)
    lines = text.strip().split("\n")
    if len(lines) < 3 or lines[0].strip() != "-----BEGIN %s-----" % label \
            or lines[-1].strip() != "-----END %s-----" % label:
        raise EvidenceError("%s is not one PEM %s" % (field, label))
    der = b64decode("".join(x.strip() for x in lines[1:-1]), field, max_size)
    if len(der) < 2 or der[0] != 0x30:
        raise EvidenceError("%s: PEM body is not a DER SEQUENCE" % field)
    return der


def p256_spki(x, y):
    if len(x) != 32 or len(y) != 32:
        raise EvidenceError("P-256 coordinates must be 32 bytes, got %d and %d" % (len(x), len(y)))
    return P256_SPKI_PREFIX + b"\x04" + bytes(x) + bytes(y)


def p256_public_pem(x, y):
    """PEM SubjectPublicKeyInfo of the P-256 point (x, y)."""
    return pem_encode("PUBLIC KEY", p256_spki(x, y))
