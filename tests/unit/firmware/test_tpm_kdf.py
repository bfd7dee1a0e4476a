# KDFa / KDFe (TPM 2.0 Part 1 §11.4.10.2-3). The expected values were computed with the
# `cryptography` package's independent SP 800-108 KBKDFHMAC (counter mode, 32-bit counter before
# the fixed input, 32-bit L) and SP 800-56A ConcatKDFHash (otherinfo = "SECRET\0" || U || V); the
# swtpm tests additionally prove the session keys they derive are the ones the TPM uses.
from firmware.tpm.kdf import kdfa, kdfe
from tests.unit.firmware.check import unhex

KEY = bytes(range(20))
U = b"\x01" * 16
V = b"\x02" * 16


def test_kdfa_matches_sp800_108():
    assert kdfa("sha256", KEY, "CFB", U, V, 384) == unhex(
        "c0f8a60d3e35c54a9e1768bddd31b9de603f59b445f6c132e99c2ec896b1286b"
        "48f4becf95bb1caf8d0e8d9b27f9d26c")


def test_kdfa_masks_partial_byte():
    # 12 bits: two octets, the top four bits of the first cleared (L=12 is also in the HMAC input,
    # so the value differs from a 16-bit derivation)
    for label in ("ATH", "CFB", "XOR", "STORAGE"):
        part = kdfa("sha256", KEY, label, U, V, 12)
        assert len(part) == 2 and part[0] < 16


def test_kdfe_matches_sp800_56a():
    z = b"\x33" * 32
    assert kdfe("sha256", z, "SECRET", U, V, 256) == unhex(
        "5b874b5f036e2977bd9a2073d0023eb4736e2cb46fb34744c608cd7e791427e9")
    assert kdfe("sha256", z, "SECRET", U, V, 320)[32:] == unhex("390847fe218e31bb")
