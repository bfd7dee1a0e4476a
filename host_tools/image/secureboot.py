"""UEFI Secure Boot with the vendor's own keys (issue 9): PK, KEK and db, the UKI signed with the
db key, an OVMF variable store with the three enrolled, and what OVMF measures into PCR 7.

Keys: RSA-2048 with self-signed X.509 certificates (what OVMF's PKCS#7 verifier takes), created
once under ``build/keys/`` and kept, like the bundle's development key (a certificate has dates
and a random serial: regenerating it per build would change PCR 7 and the signed UKI).
Production builds bring their own keys into that directory.

Signing: ``osslsigncode`` (Authenticode, SHA-256) with the signing time fixed to the board's
SOURCE_DATE_EPOCH, so the signed UKI is bit-identical build to build (sbsign writes the current
time into the PKCS#7 signingTime attribute and cannot be told otherwise). RSA PKCS#1 v1.5
signatures are deterministic. Signing appends the WIN_CERTIFICATE table and pads the image to 8
bytes: the Authenticode digest (PCR 4) is that of the *signed* file (pe.authenticode_digest
excludes the table, and the padding is hashed), so prediction uses the signed bytes.

PCR 7 with Secure Boot on (TCG PC Client PFP 1.05 §3.3.4.8, §10.4.4; EDK2 Tcg2Dxe
MeasureAllSecureVariables and DxeImageVerificationLib): EV_EFI_VARIABLE_DRIVER_CONFIG for
SecureBoot (1), PK, KEK, db, dbx, each the digest of UEFI_VARIABLE_DATA with the variable's
contents (EFI_SIGNATURE_LISTs, UEFI 2.10 §32.4.1), then EV_SEPARATOR, then for the boot
application one EV_EFI_VARIABLE_AUTHORITY: UEFI_VARIABLE_DATA of "db" whose data is the
EFI_SIGNATURE_DATA (owner GUID + DER certificate) that verified the image.
"""

from __future__ import annotations

import datetime
import struct
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from host_tools.image import pe, predict
from host_tools.qemu import uefivars

OVMF_VARS_TEMPLATE = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
ENROLLED_VARS_NAME = "OVMF_VARS.secboot.fd"
# SignatureOwner of our PK/KEK/db entries (UEFI 2.10 §32.4.1 EFI_SIGNATURE_DATA): the vendor's.
VENDOR_OWNER = uuid.UUID("7f5a3d1e-9c2b-4e8a-b6d1-2a9f0c3e5b71")
KEY_ROLES = ("pk", "kek", "db")
_COMMON_NAMES = {"pk": "Trusted phone Platform Key", "kek": "Trusted phone Key Exchange Key",
                 "db": "Trusted phone image signing (db)"}


class SecureBootError(RuntimeError):
    """A key, the signer or the enrollment failed; names the file or tool."""


@dataclass(frozen=True)
class SbKey:
    role: str
    key: Path   # PEM private key (0600)
    cert: Path  # PEM certificate

    def cert_der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.cert.read_bytes()).public_bytes(
            serialization.Encoding.DER)


def load_or_create_keys(keys_dir: Path, create: bool = True) -> dict[str, SbKey]:
    out = {}
    for role in KEY_ROLES:
        k = SbKey(role, keys_dir / f"secureboot-{role}.key", keys_dir / f"secureboot-{role}.pem")
        if not k.cert.is_file() or not k.key.is_file():
            if not create:
                raise SecureBootError(f"no Secure Boot {role} key {k.key} / {k.cert}")
            _create(k)
        out[role] = k
    return out


def _create(k: SbKey) -> None:
    k.key.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Trusted phone dev"),
                      x509.NameAttribute(NameOID.COMMON_NAME, _COMMON_NAMES[k.role])])
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    k.key.touch(mode=0o600)
    k.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption()))
    k.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def sign_pe(data: bytes, db: SbKey, signing_time: int) -> bytes:
    """Authenticode-sign a PE image with the db key (osslsigncode, SHA-256, fixed time)."""
    with tempfile.TemporaryDirectory(prefix="sbsign-") as tmp:
        src, dst = Path(tmp) / "in.efi", Path(tmp) / "out.efi"
        src.write_bytes(data)
        proc = subprocess.run(["osslsigncode", "sign", "-certs", str(db.cert), "-key", str(db.key),
                               "-h", "sha256", "-time", str(signing_time), "-in", str(src),
                               "-out", str(dst)], capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not dst.is_file():
            raise SecureBootError(f"osslsigncode sign failed ({proc.returncode}): "
                                  f"{(proc.stderr or proc.stdout).strip()[-500:]}")
        return dst.read_bytes()


# signing time of a UKI re-signed by the tamper tool (any fixed value: nobody checks it)
TAMPER_SIGNING_TIME = 1767225600
_SECURITY_DIR_INDEX = 4  # IMAGE_DIRECTORY_ENTRY_SECURITY (PE Format §2.4, data directories)


def is_signed(data: bytes) -> bool:
    return pe.parse(data).cert_table != (0, 0)


def strip_signature(data: bytes) -> bytes:
    """*data* without its Authenticode signature: the certificate table (which signing appends
    at the end of the file) cut off and its data-directory entry zeroed."""
    img = pe.parse(data)
    off, size = img.cert_table
    if (off, size) == (0, 0):
        return data
    if off + size != len(data):
        raise SecureBootError(f"certificate table at {off}+{size} is not at the end of the "
                              f"{len(data)}-byte image")
    out = bytearray(data[:off])
    struct.pack_into("<II", out, img.data_dir_offset + 8 * _SECURITY_DIR_INDEX, 0, 0)
    return bytes(out)


def enroll_vars(keys: dict[str, SbKey], dest: Path, template: Path = OVMF_VARS_TEMPLATE) -> None:
    """The board's OVMF variable store with PK/KEK/db enrolled and Secure Boot on."""
    uefivars.enroll(template, dest, str(VENDOR_OWNER), keys["pk"].cert, keys["kek"].cert,
                    keys["db"].cert)


def signature_data(owner: uuid.UUID, cert_der: bytes) -> bytes:
    """EFI_SIGNATURE_DATA (UEFI 2.10 §32.4.1): SignatureOwner GUID, then the X.509 DER."""
    return owner.bytes_le + cert_der


def pcr7_events(enrolled_vars: Path, db_cert_der: bytes) -> list[predict.Event]:
    """What OVMF extends into PCR 7 booting the signed UKI with *enrolled_vars* (module doc)."""
    variables: list[tuple[uuid.UUID, str, bytes]] = [
        (predict.EFI_GLOBAL_VARIABLE, "SecureBoot", b"\x01")]
    for guid, name in ((predict.EFI_GLOBAL_VARIABLE, "PK"), (predict.EFI_GLOBAL_VARIABLE, "KEK"),
                       (predict.EFI_IMAGE_SECURITY_DATABASE, "db"),
                       (predict.EFI_IMAGE_SECURITY_DATABASE, "dbx")):
        data = uefivars.variable_data(enrolled_vars, name)
        if data is None:
            raise SecureBootError(f"{enrolled_vars}: no {name} variable (not enrolled)")
        variables.append((guid, name, data))
    events = predict.pcr7_events(tuple(variables))
    authority = predict.uefi_variable_data(predict.EFI_IMAGE_SECURITY_DATABASE, "db",
                                           signature_data(VENDOR_OWNER, db_cert_der))
    events.append(predict.Event(7, "EV_EFI_VARIABLE_AUTHORITY", predict.sha256(authority),
                                "db certificate that verified the UKI"))
    return events
