# One small API over CPython and MicroPython for what the firmware's cores need: hashing, HMAC,
# AES (ECB block, CTR, CFB, GCM), randomness, time and struct packing.
#
# CPython uses hashlib/hmac and the `cryptography` package; MicroPython uses its hashlib (sha1,
# sha256 only) and cryptolib (AES-ECB; CTR is not built into every port, so CTR, CFB and GCM are
# composed from ECB blocks here). Algorithms MicroPython lacks (SHA-384/512) fall back to pure
# Python in `_sha512`. Cores never import hashlib/cryptolib themselves: they call these functions.

import hashlib
import os
import struct  # noqa: F401  (re-exported: compat.struct.pack/unpack is the packing API)
import sys
import time as _time

IS_MICROPYTHON = sys.implementation.name == "micropython"

# Digest sizes by TCG algorithm name; also the list of hashes this module knows.
DIGEST_SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
_BLOCK_SIZES = {"md5": 64, "sha1": 64, "sha256": 64, "sha384": 128, "sha512": 128}


class UnsupportedAlgorithm(ValueError):
    pass


def new_hash(name, data=b""):
    """A hash object with update() and digest() (digest() may be called once on MicroPython)."""
    if name in ("sha384", "sha512") and not hasattr(hashlib, name):
        from firmware.compat import _sha512

        h = _sha512.Sha384() if name == "sha384" else _sha512.Sha512()
    else:
        ctor = getattr(hashlib, name, None)
        if ctor is None:
            raise UnsupportedAlgorithm("hash algorithm not available on this runtime: %s" % name)
        h = ctor()
    if data:
        h.update(data)
    return h


def digest(name, data):
    return new_hash(name, data).digest()


def sha256(data):
    return new_hash("sha256", data).digest()


def sha1(data):
    return new_hash("sha1", data).digest()


def digest_size(name):
    size = DIGEST_SIZES.get(name)
    if size is None:
        raise UnsupportedAlgorithm("unknown hash algorithm: %s" % name)
    return size


def hmac(name, key, msg):
    """HMAC (RFC 2104) with hash `name`. MicroPython has no hmac module, so it is composed here."""
    if not IS_MICROPYTHON:
        import hmac as _hmac

        return _hmac.new(key, msg, name).digest()
    block = _BLOCK_SIZES[name]
    if len(key) > block:
        key = digest(name, key)
    key = key + b"\x00" * (block - len(key))
    ipad = bytes(b ^ 0x36 for b in key)
    opad = bytes(b ^ 0x5C for b in key)
    inner = new_hash(name, ipad)
    inner.update(msg)
    outer = new_hash(name, opad)
    outer.update(inner.digest())
    return outer.digest()


def constant_time_equal(a, b):
    """Compare MACs without an early exit, so timing does not tell how many bytes matched."""
    if len(a) != len(b):
        return False
    acc = 0
    for x, y in zip(a, b):
        acc |= x ^ y
    return acc == 0


def random_bytes(n):
    """Randomness enters every core through here (tests may replace it)."""
    return os.urandom(n)


# --- time -----------------------------------------------------------------------------------------

def monotonic_ms():
    if IS_MICROPYTHON:
        return _time.ticks_ms()
    return int(_time.monotonic() * 1000)


def wall_time():
    return _time.time()


# --- AES -----------------------------------------------------------------------------------------

def _xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


class Aes:
    """AES with a fixed key: single-block encryption plus CTR/CFB/GCM built on it."""

    def __init__(self, key):
        if len(key) not in (16, 24, 32):
            raise ValueError("AES key must be 16, 24 or 32 bytes, got %d" % len(key))
        self.key = bytes(key)
        if IS_MICROPYTHON:
            import cryptolib

            self._ecb = cryptolib.aes(self.key, 1)
            self._enc = None
        else:
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

            self._Cipher = Cipher
            self._algorithms = algorithms
            self._modes = modes
            self._enc = Cipher(algorithms.AES(self.key), modes.ECB()).encryptor()
            # Key schedules built once per key: per-packet construction dominated SRTP's cost.
            self._alg = algorithms.AES(self.key)
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._gcm_ctx = AESGCM(self.key)

    def encrypt_block(self, block):
        if len(block) != 16:
            raise ValueError("AES block must be 16 bytes")
        if self._enc is not None:
            return self._enc.update(block)
        return self._ecb.encrypt(block)

    def ctr(self, counter_block, data):
        """AES-CTR keystream XOR, counter = the full 128-bit block incremented mod 2^128."""
        if self._enc is not None:
            c = self._Cipher(self._alg, self._modes.CTR(bytes(counter_block)))
            return c.encryptor().update(bytes(data))
        out = bytearray(len(data))
        ctr = int.from_bytes(counter_block, "big")
        mask = (1 << 128) - 1
        for i in range(0, len(data), 16):
            ks = self._ecb.encrypt(ctr.to_bytes(16, "big"))
            chunk = data[i:i + 16]
            for j in range(len(chunk)):
                out[i + j] = chunk[j] ^ ks[j]
            ctr = (ctr + 1) & mask
        return bytes(out)

    # TPM 2.0 Part 1 §11.4.6.3: parameter encryption uses AES in full-block CFB mode. It is
    # composed from ECB blocks on every runtime (the payloads are small, and `cryptography` has
    # moved CFB to its "decrepit" module).
    def cfb_encrypt(self, iv, data):
        out = bytearray()
        reg = bytes(iv)
        for i in range(0, len(data), 16):
            ct = _xor(data[i:i + 16], self.encrypt_block(reg))
            out.extend(ct)
            reg = ct
        return bytes(out)

    def cfb_decrypt(self, iv, data):
        out = bytearray()
        reg = bytes(iv)
        for i in range(0, len(data), 16):
            chunk = bytes(data[i:i + 16])
            out.extend(_xor(chunk, self.encrypt_block(reg)))
            reg = chunk
        return bytes(out)

    # GCM (NIST SP 800-38D) is used by SRTP AEAD_AES_128_GCM (RFC 7714).
    def gcm_encrypt(self, iv, plaintext, aad, tag_len=16):
        """Returns ciphertext || tag."""
        if self._enc is not None and tag_len == 16:
            return self._gcm_ctx.encrypt(bytes(iv), bytes(plaintext), bytes(aad))
        ct, tag = self._gcm(iv, plaintext, aad, True)
        return ct + tag[:tag_len]

    def gcm_decrypt(self, iv, data, aad, tag_len=16):
        """Returns plaintext, or raises AuthenticationError when the tag does not verify."""
        if len(data) < tag_len:
            raise AuthenticationError("GCM input shorter than its tag")
        if self._enc is not None and tag_len == 16:
            from cryptography.exceptions import InvalidTag

            try:
                return self._gcm_ctx.decrypt(bytes(iv), bytes(data), bytes(aad))
            except InvalidTag:
                raise AuthenticationError("GCM authentication tag mismatch")
        ct, tag = data[:-tag_len], data[-tag_len:]
        pt, expected = self._gcm(iv, ct, aad, False)
        if not constant_time_equal(expected[:tag_len], tag):
            raise AuthenticationError("GCM authentication tag mismatch")
        return pt

    def _gcm(self, iv, data, aad, encrypting):
        table = getattr(self, "_ghash_tab", None)
        if table is None:
            h = int.from_bytes(self.encrypt_block(b"\x00" * 16), "big")
            table = self._ghash_tab = _ghash_table(h)
        if len(iv) == 12:
            j0 = bytes(iv) + b"\x00\x00\x00\x01"
        else:
            j0 = _ghash(0, b"", bytes(iv), table)
        # CTR in GCM increments only the low 32 bits (SP 800-38D §6.2 inc32).
        j0_int = int.from_bytes(j0, "big")
        ctr = (j0_int & ~0xFFFFFFFF) | ((j0_int + 1) & 0xFFFFFFFF)
        out = bytearray()
        for i in range(0, len(data), 16):
            ks = self.encrypt_block(ctr.to_bytes(16, "big"))
            out.extend(_xor(data[i:i + 16], ks))
            ctr = (ctr & ~0xFFFFFFFF) | ((ctr + 1) & 0xFFFFFFFF)
        out = bytes(out)
        ct = out if encrypting else bytes(data)
        s = _ghash(0, bytes(aad), ct, table)
        tag = _xor(self.encrypt_block(j0), s)
        return out, tag


class AuthenticationError(ValueError):
    pass


_R = 0xE1 << 120


def _gf_mult(x, y):
    # Bitwise GF(2^128) multiply (SP 800-38D §6.3); used only to build the table below.
    z = 0
    v = y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _ghash_table(h):
    """Per-key 4-bit table (32 nibble positions x 16 values): multiplying by H becomes 32 lookups
    instead of 128 shift/xor rounds, which is what makes GCM usable on MicroPython."""
    v = []
    cur = h
    for _ in range(128):
        v.append(cur)
        cur = (cur >> 1) ^ _R if cur & 1 else cur >> 1
    table = []
    for j in range(32):
        row = [0] * 16
        for nib in range(1, 16):
            acc = 0
            for b in range(4):
                if (nib >> b) & 1:
                    acc ^= v[127 - (4 * j + b)]
            row[nib] = acc
        table.append(row)
    return table


def _gf_mult_table(x, table):
    z = 0
    j = 0
    while x:
        z ^= table[j][x & 15]
        x >>= 4
        j += 1
    return z


def _ghash(h, aad, ct, table=None):
    if table is None:
        table = _ghash_table(h)

    def blocks(b):
        for i in range(0, len(b), 16):
            chunk = b[i:i + 16]
            yield chunk + b"\x00" * (16 - len(chunk))

    y = 0
    for blk in blocks(aad):
        y = _gf_mult_table(y ^ int.from_bytes(blk, "big"), table)
    for blk in blocks(ct):
        y = _gf_mult_table(y ^ int.from_bytes(blk, "big"), table)
    lens = (len(aad) * 8).to_bytes(8, "big") + (len(ct) * 8).to_bytes(8, "big")
    y = _gf_mult_table(y ^ int.from_bytes(lens, "big"), table)
    return y.to_bytes(16, "big")
