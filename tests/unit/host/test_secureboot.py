"""host_tools.image.secureboot and host_tools.qemu.uefivars without a boot: keys, reproducible
Authenticode signing (checked with sbverify and osslsigncode), enrollment into a real OVMF
variable store (read back with virt-fw-vars), the predicted PCR 7 events, boot entries."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from host_tools.image import pe, predict, secureboot
from host_tools.qemu import uefivars

STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, secureboot.SbKey]:
    return secureboot.load_or_create_keys(tmp_path_factory.mktemp("sbkeys"))


def test_keys_are_created_once_and_kept(keys: dict[str, secureboot.SbKey]) -> None:
    again = secureboot.load_or_create_keys(keys["db"].key.parent, create=False)
    assert {r: k.cert.read_bytes() for r, k in again.items()} == \
        {r: k.cert.read_bytes() for r, k in keys.items()}
    assert keys["db"].key.stat().st_mode & 0o077 == 0
    with pytest.raises(secureboot.SecureBootError, match="no Secure Boot pk key"):
        secureboot.load_or_create_keys(keys["db"].key.parent / "missing", create=False)


def test_signing_is_reproducible_and_verifies(keys: dict[str, secureboot.SbKey],
                                              tmp_path: Path) -> None:
    data = STUB.read_bytes()
    a = secureboot.sign_pe(data, keys["db"], 1767225600)
    b = secureboot.sign_pe(data, keys["db"], 1767225600)
    assert a == b and secureboot.is_signed(a) and not secureboot.is_signed(data)
    f = tmp_path / "signed.efi"
    f.write_bytes(a)
    sb = subprocess.run(["sbverify", "--cert", str(keys["db"].cert), str(f)],
                        capture_output=True, text=True, check=False)
    assert sb.returncode == 0, sb.stderr
    out = subprocess.run(["osslsigncode", "verify", "-in", str(f)], capture_output=True,
                         text=True, check=False).stdout
    m = re.search(r"Calculated message digest\s*:\s*([0-9A-Fa-f]{64})", out)
    assert m and pe.authenticode_digest(a).hex() == m.group(1).lower()
    # without the signature: no certificate table, sbverify finds nothing to verify
    stripped = secureboot.strip_signature(a)
    assert not secureboot.is_signed(stripped) and stripped.startswith(data[:0x3C])
    f.write_bytes(stripped)
    assert subprocess.run(["sbverify", "--cert", str(keys["db"].cert), str(f)],
                          capture_output=True, check=False).returncode != 0


def test_enrollment_and_pcr7_prediction(keys: dict[str, secureboot.SbKey], tmp_path: Path) -> None:
    vars_file = tmp_path / "vars.fd"
    secureboot.enroll_vars(keys, vars_file)
    again = tmp_path / "vars2.fd"
    secureboot.enroll_vars(keys, again)
    assert vars_file.read_bytes() == again.read_bytes()  # fixed timestamps: reproducible
    # virt-fw-vars' own listing (the CLI of the package; our code uses its API)
    listing = subprocess.run([sys.executable, "-m", "virt.firmware.vars", "-i", str(vars_file),
                              "-p"], capture_output=True, text=True, check=True).stdout
    for name in ("PK", "KEK", "db", "dbx", "SecureBootEnable"):
        assert re.search(rf"\b{name}\b", listing), (name, listing)
    for role, var in (("pk", "PK"), ("kek", "KEK"), ("db", "db")):
        data = uefivars.variable_data(vars_file, var)
        assert data is not None and keys[role].cert_der() in data
        # EFI_SIGNATURE_DATA of our owner precedes the certificate (UEFI 2.10 §32.4.1)
        assert secureboot.VENDOR_OWNER.bytes_le + keys[role].cert_der() in data
    events = secureboot.pcr7_events(vars_file, keys["db"].cert_der())
    assert [e.event_type for e in events] == ["EV_EFI_VARIABLE_DRIVER_CONFIG"] * 5 + [
        "EV_SEPARATOR", "EV_EFI_VARIABLE_AUTHORITY"]
    assert [e.description for e in events[:5]] == ["SecureBoot", "PK", "KEK", "db", "dbx"]
    assert events[0].digest == predict.sha256(predict.uefi_variable_data(
        predict.EFI_GLOBAL_VARIABLE, "SecureBoot", b"\x01"))
    assert events[-1].digest == predict.sha256(predict.uefi_variable_data(
        predict.EFI_IMAGE_SECURITY_DATABASE, "db",
        secureboot.VENDOR_OWNER.bytes_le + keys["db"].cert_der()))
    with pytest.raises(secureboot.SecureBootError, match="no PK variable"):
        secureboot.pcr7_events(Path(secureboot.OVMF_VARS_TEMPLATE), keys["db"].cert_der())


def test_boot_entry_with_load_options(tmp_path: Path) -> None:
    vars_file = tmp_path / "vars.fd"
    vars_file.write_bytes(secureboot.OVMF_VARS_TEMPLATE.read_bytes())
    n = uefivars.add_boot_entry(vars_file, "\\EFI\\BOOT\\BOOTX64.EFI", "quiet evil=1")
    assert uefivars.variable_data(vars_file, "BootNext") == n.to_bytes(2, "little")
    order = uefivars.variable_data(vars_file, "BootOrder")
    assert order is not None and order[:2] == n.to_bytes(2, "little")
    entry = uefivars.variable_data(vars_file, "Boot%04X" % n)
    assert entry is not None and entry.endswith("quiet evil=1\0".encode("utf-16-le"))
    # EFI_LOAD_OPTION (UEFI 2.10 §3.1.3): Attributes LOAD_OPTION_ACTIVE first
    assert int.from_bytes(entry[:4], "little") & 1
    with pytest.raises(uefivars.VarsError, match="not an edk2 variable store"):
        bad = tmp_path / "bad.fd"
        bad.write_bytes(b"\0" * 4096)
        uefivars.add_boot_entry(bad, "\\x.efi", None)


def test_owner_guid_is_fixed() -> None:
    assert secureboot.VENDOR_OWNER == uuid.UUID("7f5a3d1e-9c2b-4e8a-b6d1-2a9f0c3e5b71")
