"""TPM2_MakeCredential computed on the host (TPM 2.0 Part 1 §24 "Credential Protection", Part 3
§12.6; the secret sharing of Part 1 Annex B.10.4 (RSA) and C.6.4 (ECC)), so the device CA needs
no TPM of its own to challenge a device's EK. The TPM's TPM2_ActivateCredential (Part 3 §12.5)
returns the credential only if it holds the EK's private key *and* an object with the Name the
credential was made for.

For an EK public key (from its certificate) and the AK's Name:

* seed: RSA EK: random, nameAlg-digest-sized, RSA-OAEP(nameAlg) with label "IDENTITY\\0";
  ECC EK: one-pass ECDH with an ephemeral key, seed = KDFe(nameAlg, Z, "IDENTITY", ephX, ekX)
  and the secret is the ephemeral point (TPMS_ECC_POINT);
* symKey = KDFa(nameAlg, seed, "STORAGE", akName, "", symBits); encIdentity =
  AES-CFB(symKey, IV 0) of TPM2B_DIGEST(credential);
* HMACkey = KDFa(nameAlg, seed, "INTEGRITY", "", "", digestBits); outerHMAC =
  HMAC(HMACkey, encIdentity || akName); credentialBlob = TPM2B(outerHMAC) || encIdentity.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from typing import Callable, cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from firmware.tpm import kdf as _kdf

kdfa = cast(Callable[[str, bytes, str, bytes, bytes, int], bytes], _kdf.kdfa)
kdfe = cast(Callable[[str, bytes, str, bytes, bytes, int], bytes], _kdf.kdfe)

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}
_SIZES = {"sha256": 32, "sha384": 48}
_CURVES = {"secp256r1": 32, "secp384r1": 48}


class CredentialError(ValueError):
    """The EK key cannot be used for MakeCredential (type, size or curve)."""


@dataclass
class EkParams:
    """What MakeCredential needs of the EK: its public key and the template's nameAlg and
    symmetric key size (TCG EK Credential Profile 2.x, Annex B templates)."""
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    name_alg: str
    sym_bits: int


def ek_params(key: object) -> EkParams:
    """EK template parameters for an EK public key from its certificate: RSA 2048 -> template
    L-1 (sha256, AES-128-CFB); ECC P-256 -> L-2 (sha256, AES-128); ECC P-384 -> H-3 style
    (sha384, AES-256, as swtpm_setup makes it)."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size != 2048:
            raise CredentialError(f"RSA EK of {key.key_size} bits: only RSA 2048 (template L-1) is supported")
        return EkParams(key, "sha256", 128)
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name == "secp256r1":
            return EkParams(key, "sha256", 128)
        if key.curve.name == "secp384r1":
            return EkParams(key, "sha384", 256)
        raise CredentialError(f"ECC EK on curve {key.curve.name} is not supported")
    raise CredentialError(f"EK key of type {type(key).__name__} is not RSA or ECC")


def _tpm2b(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def make_seed(ek: EkParams) -> tuple[bytes, bytes]:
    """(seed, encrypted secret: the TPM2B_ENCRYPTED_SECRET's contents) for `ek`."""
    h = _HASHES[ek.name_alg]
    size = _SIZES[ek.name_alg]
    if isinstance(ek.key, rsa.RSAPublicKey):
        seed = os.urandom(size)
        secret = ek.key.encrypt(seed, padding.OAEP(mgf=padding.MGF1(h()), algorithm=h(), label=b"IDENTITY\0"))
        return seed, secret
    n = _CURVES[ek.key.curve.name]
    eph = ec.generate_private_key(ek.key.curve)
    z = eph.exchange(ec.ECDH(), ek.key)
    e = eph.public_key().public_numbers()
    ekx = ek.key.public_numbers().x.to_bytes(n, "big")
    ex, ey = e.x.to_bytes(n, "big"), e.y.to_bytes(n, "big")
    seed = kdfe(ek.name_alg, z, "IDENTITY", ex, ekx, 8 * size)
    return seed, _tpm2b(ex) + _tpm2b(ey)


def credential_blob(name_alg: str, sym_bits: int, seed: bytes, credential: bytes, object_name: bytes) -> bytes:
    """The TPM2B_ID_OBJECT contents for `credential` bound to `object_name` under `seed`."""
    size = _SIZES[name_alg]
    if not 0 < len(credential) <= size:
        raise CredentialError(f"credential of {len(credential)} bytes (1..{size})")
    sym = kdfa(name_alg, seed, "STORAGE", object_name, b"", sym_bits)
    enc = Cipher(algorithms.AES(sym), modes.CFB(bytes(16))).encryptor()
    enc_identity = enc.update(_tpm2b(credential)) + enc.finalize()
    hkey = kdfa(name_alg, seed, "INTEGRITY", b"", b"", 8 * size)
    outer = hmac.new(hkey, enc_identity + object_name, name_alg).digest()
    return _tpm2b(outer) + enc_identity


def make_credential(ek: EkParams, credential: bytes, object_name: bytes) -> tuple[bytes, bytes]:
    """-> (credentialBlob, secret) as TPM2_MakeCredential returns them (contents of the
    TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET)."""
    seed, secret = make_seed(ek)
    return credential_blob(ek.name_alg, ek.sym_bits, seed, credential, object_name), secret


__all__ = ["EkParams", "ek_params", "make_credential", "make_seed", "credential_blob", "CredentialError"]
