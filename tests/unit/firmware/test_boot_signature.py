# firmware.boot.ed25519 / signature: RFC 8032 §7.1 test vectors (TEST 1-3), malformed inputs, and
# the vendor key PEM (RFC 8410 §4). The same tests run under CPython and MicroPython.
from firmware.boot import ed25519, signature
from tests.unit.firmware.check import raises, skip, unhex

# RFC 8032 §7.1 (public key, message, signature)
VECTORS = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]
# The RFC 8032 TEST 1 public key as an RFC 8410 SubjectPublicKeyInfo PEM (written by `cryptography`).
TEST1_PEM = (b"-----BEGIN PUBLIC KEY-----\n"
             b"MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"
             b"-----END PUBLIC KEY-----\n")


def test_rfc8032_vectors_verify():
    for pk, msg, sig in VECTORS:
        assert ed25519.verify(unhex(pk), unhex(msg), unhex(sig)) is True


def test_any_changed_bit_fails():
    pk, msg, sig = [unhex(x) for x in VECTORS[2]]
    for i in (0, 31, 32, 63):
        bad = bytearray(sig)
        bad[i] ^= 0x01
        assert ed25519.verify(pk, msg, bytes(bad)) is False
    assert ed25519.verify(pk, msg + b"\x00", sig) is False
    other = unhex(VECTORS[0][0])
    assert ed25519.verify(other, msg, sig) is False


def test_malformed_inputs_fail_without_exceptions():
    pk, msg, sig = [unhex(x) for x in VECTORS[1]]
    assert ed25519.verify(pk[:31], msg, sig) is False
    assert ed25519.verify(pk, msg, sig[:63]) is False
    assert ed25519.verify(pk, msg, b"") is False
    # S >= L (RFC 8032 §5.1.7 step 1): S + L would verify in a lax implementation
    s = int.from_bytes(sig[32:], "little") + ed25519.L
    assert ed25519.verify(pk, msg, sig[:32] + s.to_bytes(32, "little")) is False
    # y >= p is not a canonical point encoding
    assert ed25519.verify(b"\xff" * 31 + b"\x7f", msg, sig) is False


def test_point_decoding_errors():
    e = raises(ed25519.BadEncoding, ed25519.decode_point, b"\x00" * 31)
    assert "32 bytes" in str(e)
    # y = 2 gives x^2 = 3 / (4d + 1), which is not a square mod p
    raises(ed25519.BadEncoding, ed25519.decode_point, b"\x02" + b"\x00" * 31)


def test_vendor_key_pem():
    assert signature.raw_public_key(TEST1_PEM) == unhex(VECTORS[0][0])
    verify = signature.load_public_key(TEST1_PEM)
    assert verify(b"", unhex(VECTORS[0][2])) is True
    assert verify(b"x", unhex(VECTORS[0][2])) is False


def test_vendor_key_pem_errors():
    e = raises(ValueError, signature.raw_public_key, b"not a pem")
    assert "not a PEM" in str(e)
    # an RSA/EC key or a truncated DER is not an Ed25519 SubjectPublicKeyInfo
    e = raises(ValueError, signature.raw_public_key,
               b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VxAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"
               b"-----END PUBLIC KEY-----\n")  # OID 1.3.101.113 = Ed448
    assert "Ed25519" in str(e)
    e = raises(ValueError, signature.raw_public_key, TEST1_PEM.replace(b"URo=", b""))
    assert "base64" in str(e) or "Ed25519" in str(e)


def _pem(raw):
    import binascii
    b64 = binascii.b2a_base64(signature.ED25519_SPKI_PREFIX + raw).strip()
    return b"-----BEGIN PUBLIC KEY-----\n" + b64 + b"\n-----END PUBLIC KEY-----\n"


def test_openssl_and_portable_paths_agree():
    # The stage loader uses OpenSSL (via `cryptography`) when present; the portable code is the
    # reference. Under MicroPython there is no `cryptography`: both calls would give the portable
    # one (already covered above), so the comparison only runs where OpenSSL is there.
    if signature.openssl_verifier(unhex(VECTORS[0][0])) is None:
        skip("no OpenSSL (`cryptography`) here: only the portable verifier exists to compare")
    for pk, msg, sig in VECTORS:
        pk, msg, sig = unhex(pk), unhex(msg), unhex(sig)
        fast = signature.load_public_key(_pem(pk))
        slow = signature.load_public_key(_pem(pk), use_openssl=False)
        s_big = (int.from_bytes(sig[32:], "little") + ed25519.L).to_bytes(32, "little")
        cases = [(msg, sig), (msg + b"\x00", sig), (msg, sig[:63]), (msg, b""),
                 (msg, sig[:32] + s_big),  # S >= L (RFC 8032 §5.1.7 step 1)
                 (msg, bytes([sig[0] ^ 1]) + sig[1:]), (msg, sig[:63] + bytes([sig[63] ^ 0x10]))]
        for m, s in cases:
            assert fast(m, s) is slow(m, s), (pk.hex(), m, s.hex())
        assert fast(msg, sig) is True


def test_openssl_verifier_is_used_when_available():
    try:
        import cryptography  # noqa: F401
    except ImportError:
        assert signature.openssl_verifier(unhex(VECTORS[0][0])) is None   # the checked outcome
        return
    assert signature.openssl_verifier(unhex(VECTORS[0][0])) is not None
