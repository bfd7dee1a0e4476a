"""The vendor's policy-signing key: ECDSA P-256, since the TPM (TPM2_VerifySignature) checks the
signature. It is a different key from the Ed25519 bundle-signing key, which TPMs cannot verify."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from host_tools.provision import _fw

DEFAULT_KEY = Path("build/keys/policy-signing-key.pem")


class PolicyKeyError(RuntimeError):
    """The policy-signing key cannot be read or is not ECDSA P-256."""


def load_or_create(path: Path, create: bool = True) -> ec.EllipticCurvePrivateKey:
    """The key in *path* (PEM, PKCS#8, unencrypted dev key); created 0600 if missing and *create*."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise PolicyKeyError(f"{path}: not an ECDSA P-256 private key")
        return key
    if not create:
        raise PolicyKeyError(f"{path}: no policy-signing key")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def tpm_public(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """TPMT_PUBLIC the device loads with TPM2_LoadExternal; its Name goes into PolicyAuthorize."""
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    n = pub.public_numbers()
    return bytes(_fw.ecc_verify_key_template(n.x.to_bytes(32, "big"), n.y.to_bytes(32, "big")))


def sign(key: ec.EllipticCurvePrivateKey, approved: bytes, policy_ref: bytes) -> tuple[bytes, bytes]:
    """ECDSA-SHA256 over aHash = H(approvedPolicy || policyRef) (Part 3 §23.16) -> (r, s)."""
    digest = bytes(_fw.authorize_digest(approved, policy_ref))
    der = key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(32, "big"), s.to_bytes(32, "big")


def verify(pub: ec.EllipticCurvePublicKey, approved: bytes, policy_ref: bytes, r: bytes, s: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    digest = bytes(_fw.authorize_digest(approved, policy_ref))
    der = utils.encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
    try:
        pub.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return False
    return True
