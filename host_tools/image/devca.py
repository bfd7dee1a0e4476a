"""Development CA for the bundle's ``ca-bundle`` component.

Created once on the first build under ``build/keys/`` and kept, like the development signing
key: a certificate carries validity dates and a random serial, so regenerating it per build
would break reproducibility.  Production builds pass ``--ca-bundle PATH`` (a PEM file).
ECDSA P-256 because the SIP registrar's TLS stack (Kamailio/OpenSSL) and the phone's
``ssl`` module both handle it.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT_NAME = "dev-ca.pem"
KEY_NAME = "dev-ca.key"


def load_or_create(keys_dir: Path) -> bytes:
    """PEM of the development CA certificate; create key and certificate when absent."""
    cert_path, key_path = keys_dir / CERT_NAME, keys_dir / KEY_NAME
    if cert_path.is_file():
        return cert_path.read_bytes()
    keys_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Trusted phone dev"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Trusted phone development CA")])
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(pem)
    return pem
