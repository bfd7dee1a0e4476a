"""The project's TPM manufacturer CA (issue 10 part 1): every emulated TPM gets an EK certificate
from it when its state is created, as a real TPM ships with one from its vendor.

``swtpm_setup --tpm2 --create-ek-cert`` with a swtpm-localca configuration of ours that keeps the
CA under ``build/keys/manufacturer-ca/`` (never /var/lib/swtpm-localca): on first use
``swtpm_localca`` creates a root CA (``swtpm-localca-rootca-cert.pem``) and an issuing CA
(``issuercert.pem``, key ``signkey.pem``) there. swtpm_setup makes an RSA 2048 EK (persistent at
0x81010001, certificate in NV index 0x01c00002) and an ECC P-384 EK (0x81010016, certificate at
0x01c00016), both certified by the issuing CA. With --create-ek-cert swtpm_setup activates only
sha256 unless told otherwise: this keeps all four banks, as an empty state directory has
(DESIGN.md; the firmware log and PCR predictions are per bank).
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from host_tools.swtpm_proc import swtpm_setup

CA_DIR_NAME = "manufacturer-ca"
ROOT_CERT = "swtpm-localca-rootca-cert.pem"
ISSUER_CERT = "issuercert.pem"
PCR_BANKS = ("sha1", "sha256", "sha384", "sha512")
STATE_FILE = "tpm2-00.permall"


def ca_workdir(keys_dir: Path) -> Path:
    return keys_dir / CA_DIR_NAME


def manufactured(tpm_dir: Path) -> bool:
    return (tpm_dir / STATE_FILE).is_file()


def manufacture(tpm_dir: Path, keys_dir: Path) -> str:
    """Create the TPM state in *tpm_dir* with EK certificates from the CA in *keys_dir*
    (created on first use); -> swtpm_setup's log."""
    return swtpm_setup(tpm_dir, PCR_BANKS, create_certs=True, workdir=ca_workdir(keys_dir))


def known_cas(keys_dir: Path) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """(trust anchors, intermediates) of the manufacturer CA in *keys_dir*: empty lists when it
    was never created (then no EK certificate is trusted)."""
    d = ca_workdir(keys_dir) / "localca"
    roots, inter = [], []
    if (d / ROOT_CERT).is_file():
        roots.append(x509.load_pem_x509_certificate((d / ROOT_CERT).read_bytes()))
    if (d / ISSUER_CERT).is_file():
        inter.append(x509.load_pem_x509_certificate((d / ISSUER_CERT).read_bytes()))
    return roots, inter


def load_certs(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file (a manufacturer's root CAs)."""
    certs = x509.load_pem_x509_certificates(path.read_bytes())
    if not certs:
        raise ValueError(f"{path}: no PEM certificate")
    return certs


__all__ = ["load_certs", "manufacture", "manufactured", "known_cas", "ca_workdir", "PCR_BANKS"]
