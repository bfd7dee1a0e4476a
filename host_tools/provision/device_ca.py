"""The device CA (issue 10): the vendor's CA that certifies a device's attestation key (AK),
and only after the device proved with TPM2_ActivateCredential that the AK lives in the same TPM as
an EK whose certificate chains to a known TPM manufacturer (identity.py). Its certificate,
``build/keys/device-ca.pem``, is the trust anchor peers and the host verifier use for quotes.

Created once under build/keys/ (key ``device-ca-key.pem``, mode 0600) and kept: AK certificates
already issued must keep verifying. ECDSA P-256 like the AKs it certifies.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_NAME = "device-ca.pem"
KEY_NAME = "device-ca-key.pem"
AK_CERT_DAYS = 3650


@dataclass
class DeviceCa:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def load_or_create(keys_dir: Path) -> DeviceCa:
    cert_path, key_path = keys_dir / CERT_NAME, keys_dir / KEY_NAME
    if cert_path.is_file() and key_path.is_file():
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an ECC private key")
        return DeviceCa(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
    keys_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Trusted phone vendor"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Trusted phone device CA")])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7300))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return DeviceCa(key, cert)


def issue_ak_cert(ca: DeviceCa, ak_key: ec.EllipticCurvePublicKey, device: str,
                  ak_name: bytes, ek_cert: x509.Certificate) -> x509.Certificate:
    """The AK certificate: subject CN = the device name, serialNumber = the AK's TPM Name (hex),
    issued by the device CA; digitalSignature only (it signs TPM quotes, nothing else). Call it
    only after ActivateCredential succeeded (identity.enroll)."""
    now = _now()
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Trusted phone vendor"),
                         x509.NameAttribute(NameOID.COMMON_NAME, device),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, ak_name.hex())])
    ek_id = ek_cert.fingerprint(hashes.SHA256()).hex()
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject)
            .public_key(ak_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=AK_CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(
                f"urn:trusted-phone:ek-cert-sha256:{ek_id}")]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ak_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                           critical=False)
            .sign(ca.key, hashes.SHA256()))


__all__ = ["DeviceCa", "load_or_create", "issue_ak_cert", "CERT_NAME", "KEY_NAME"]
