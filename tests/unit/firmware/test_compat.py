# firmware.compat against published vectors; runs under CPython (pytest) and MicroPython.
from firmware import compat
from tests.unit.firmware.check import raises, unhex


def test_sha_vectors():
    # FIPS 180-4 examples ("abc")
    assert compat.sha1(b"abc") == unhex("a9993e364706816aba3e25717850c26c9cd0d89d")
    assert compat.sha256(b"abc") == unhex(
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert compat.digest("sha384", b"abc") == unhex(
        "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
        "8086072ba1e7cc2358baeca134c825a7")
    assert compat.digest("sha512", b"abc") == unhex(
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")


def test_pure_sha512_matches_across_block_boundaries():
    from firmware.compat import _sha512

    for n in (0, 111, 112, 127, 128, 129, 300):
        data = bytes(i & 0xFF for i in range(n))
        h = _sha512.Sha512()
        h.update(data[:50])
        h.update(data[50:])
        assert h.digest() == compat.digest("sha512", data)
        assert _sha512.Sha384(data).digest() == compat.digest("sha384", data)


def test_hmac_rfc4231_case2():
    # RFC 4231 §4.3
    mac = compat.hmac("sha256", b"Jefe", b"what do ya want for nothing?")
    assert mac == unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    # RFC 2202 §3 case 2 (HMAC-SHA1)
    assert compat.hmac("sha1", b"Jefe", b"what do ya want for nothing?") == unhex(
        "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")


def test_hmac_long_key():
    # RFC 4231 §4.7: key longer than the block is hashed first
    key = b"\xaa" * 131
    mac = compat.hmac("sha256", key, b"Test Using Larger Than Block-Size Key - Hash Key First")
    assert mac == unhex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")


def test_aes_block_fips197():
    # FIPS 197 Appendix C.1
    aes = compat.Aes(unhex("000102030405060708090a0b0c0d0e0f"))
    assert aes.encrypt_block(unhex("00112233445566778899aabbccddeeff")) == unhex(
        "69c4e0d86a7b0430d8cdb78070b4c55a")


def test_aes_ctr_sp800_38a():
    # NIST SP 800-38A F.5.1 CTR-AES128.Encrypt (first two blocks and a partial one)
    aes = compat.Aes(unhex("2b7e151628aed2a6abf7158809cf4f3c"))
    ctr = unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    pt = unhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
    ct = unhex("874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff")
    assert aes.ctr(ctr, pt) == ct
    assert aes.ctr(ctr, pt[:20]) == ct[:20]


def test_aes_cfb_sp800_38a():
    # NIST SP 800-38A F.3.13 CFB128-AES128
    aes = compat.Aes(unhex("2b7e151628aed2a6abf7158809cf4f3c"))
    iv = unhex("000102030405060708090a0b0c0d0e0f")
    pt = unhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
    ct = unhex("3b3fd92eb72dad20333449f8e83cfb4ac8a64537a0b3a93fcde3cdad9f1ce58b")
    assert aes.cfb_encrypt(iv, pt) == ct
    assert aes.cfb_decrypt(iv, ct) == pt
    assert aes.cfb_encrypt(iv, pt[:21]) == ct[:21]
    assert aes.cfb_decrypt(iv, ct[:21]) == pt[:21]


def test_aes_gcm_test_case_4():
    # GCM spec (McGrew & Viega) Test Case 4: 60-byte plaintext with AAD
    aes = compat.Aes(unhex("feffe9928665731c6d6a8f9467308308"))
    iv = unhex("cafebabefacedbaddecaf888")
    pt = unhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
    aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    ct = unhex(
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
        "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091")
    tag = unhex("5bc94fbc3221a5db94fae95ae7121a47")
    assert aes.gcm_encrypt(iv, pt, aad) == ct + tag
    assert aes.gcm_decrypt(iv, ct + tag, aad) == pt
    bad = bytearray(ct + tag)
    bad[3] ^= 1
    raises(compat.AuthenticationError, aes.gcm_decrypt, iv, bytes(bad), aad)
    # the composed (MicroPython) path gives the same answer on CPython too
    c2, t2 = aes._gcm(iv, pt, aad, True)
    assert c2 + t2 == ct + tag


def test_bad_inputs():
    raises(ValueError, compat.Aes, b"short")
    raises(compat.UnsupportedAlgorithm, compat.digest_size, "md4")
    assert compat.constant_time_equal(b"ab", b"ab")
    assert not compat.constant_time_equal(b"ab", b"ac")
    assert not compat.constant_time_equal(b"ab", b"abc")
    assert len(compat.random_bytes(16)) == 16


def test_gcm_table_multiply_matches_bitwise():
    # the 4-bit table path must equal the SP 800-38D bitwise multiply for arbitrary operands
    h = 0x66E94BD4EF8A2C3B884CFA59CA342B2E
    table = compat._ghash_table(h)
    for x in (0, 1, 1 << 127, 0x0388DACE60B6A392F328C2B971B2FE78, (1 << 128) - 1, 0x1234 << 77):
        assert compat._gf_mult_table(x, table) == compat._gf_mult(x, h)


def test_aes_gcm_non_96_bit_iv():
    # GCM spec Test Case 6: 60-byte IV goes through GHASH to form J0
    aes = compat.Aes(unhex("feffe9928665731c6d6a8f9467308308"))
    iv = unhex(
        "9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728"
        "c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b")
    pt = unhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
    aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    c, t = aes._gcm(iv, pt, aad, True)
    assert c == unhex(
        "8ce24998625615b603a033aca13fb894be9112a5c3a211a8ba262a3cca7e2ca7"
        "01e4a9a4fba43c90ccdcb281d48c7c6fd62875d2aca417034c34aee5")
    assert t == unhex("619cc5aefffe0bfa462af43c1699d050")
