"""host_tools.image.pe and .uki: PE parsing, Authenticode digest (osslsigncode as the oracle),
reproducible UKI assembly with objcopy."""

from __future__ import annotations

import datetime
import re
import struct
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from host_tools.image import pe, uki

STUB = uki.DEFAULT_STUB


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authenticode test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    (tmp / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return tmp / "c.pem", tmp / "k.pem"


def osslsigncode_digest(image: Path, tmp: Path) -> tuple[bytes, bytes]:
    """Sign a copy with a throw-away key; return (signed file, digest osslsigncode computes).

    osslsigncode (Debian package ``osslsigncode``) is an independent Authenticode
    implementation; its "Calculated message digest" is the PE image hash of the signed file,
    which by definition excludes the certificate table it added."""
    cert, key = _self_signed(tmp)
    signed = tmp / "signed.efi"
    subprocess.run(["osslsigncode", "sign", "-certs", str(cert), "-key", str(key), "-h", "sha256",
                    "-in", str(image), "-out", str(signed)], check=True, capture_output=True)
    out = subprocess.run(["osslsigncode", "verify", "-in", str(signed)], capture_output=True,
                         text=True, check=False).stdout
    m = re.search(r"Calculated message digest\s*:\s*([0-9A-Fa-f]{64})", out)
    assert m, out
    return signed.read_bytes(), bytes.fromhex(m.group(1))


def test_stub_sections() -> None:
    img = pe.parse(STUB.read_bytes())
    names = [s.name for s in img.sections]
    assert ".text" in names and ".sdmagic" in names
    assert img.magic == 0x20B  # PE32+


def test_authenticode_matches_osslsigncode_on_stub(tmp_path: Path) -> None:
    signed, oracle = osslsigncode_digest(STUB, tmp_path)
    assert pe.parse(signed).cert_table[1] > 0
    assert pe.authenticode_digest(signed) == oracle
    # osslsigncode pads the unsigned file to 8 bytes before signing; the padding is hashed
    data = STUB.read_bytes()
    assert pe.authenticode_digest(data + b"\0" * (-len(data) % 8)) == oracle


def test_authenticode_matches_osslsigncode_on_uki(tmp_path: Path) -> None:
    data = uki.build_uki(STUB, {".osrel": b"ID=t\n", ".cmdline": b"console=ttyS0",
                                ".linux": STUB.read_bytes(), ".initrd": b"\x07" * 5000},
                         tmp_path / "u.efi")
    _signed, oracle = osslsigncode_digest(tmp_path / "u.efi", tmp_path)
    assert pe.authenticode_digest(data + b"\0" * (-len(data) % 8)) == oracle


def test_uki_layout_and_reproducibility(tmp_path: Path) -> None:
    sections = {".osrel": b"ID=t\n", ".cmdline": b"quiet", ".linux": b"K" * 10000,
                ".initrd": b"I" * 70000}
    a = uki.build_uki(STUB, sections, tmp_path / "a.efi")
    time.sleep(1.1)  # objcopy stamps the wall clock: a second apart must still be identical
    b = uki.build_uki(STUB, sections, tmp_path / "b.efi")
    assert a == b
    img = pe.parse(a)
    assert struct.unpack_from("<I", a, img.timestamp_offset)[0] == 0
    assert struct.unpack_from("<I", a, img.checksum_offset)[0] == 0
    added = [img.section(n) for n in uki.SECTION_ORDER]
    stub_end = pe.parse(STUB.read_bytes()).end_of_image_rva()
    assert added[0].virtual_address >= stub_end
    for prev, cur in zip(added, added[1:]):
        assert cur.virtual_address % 0x1000 == 0
        assert cur.virtual_address >= prev.virtual_address + prev.virtual_size
    for name, content in sections.items():
        assert img.section_data(name) == content


def test_uki_rejects_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(uki.UkiError, match="unknown UKI sections"):
        uki.build_uki(STUB, {".evil": b"x"}, tmp_path / "x.efi")


def test_zero_timestamp_and_checksum_keeps_everything_else() -> None:
    data = bytearray(STUB.read_bytes())
    img = pe.parse(bytes(data))
    struct.pack_into("<I", data, img.timestamp_offset, 0x12345678)
    struct.pack_into("<I", data, img.checksum_offset, 0x9ABC)
    out = pe.zero_timestamp_and_checksum(bytes(data))
    assert len(out) == len(data)
    diff = [i for i in range(len(out)) if out[i] != data[i]]
    assert diff and all(img.timestamp_offset <= i < img.timestamp_offset + 4
                        or img.checksum_offset <= i < img.checksum_offset + 4 for i in diff)
    # the checksum is outside the Authenticode hash, the timestamp is inside
    assert pe.authenticode_digest(out) != pe.authenticode_digest(bytes(data))


def test_bad_input_names_the_field() -> None:
    with pytest.raises(pe.PeError, match="DOS header"):
        pe.parse(b"MZ")
    with pytest.raises(pe.PeError, match="'MZ'"):
        pe.parse(b"\0" * 64)
    stub = bytearray(STUB.read_bytes())
    (pe_off,) = struct.unpack_from("<I", stub, 0x3C)
    bad = bytearray(stub)
    bad[pe_off:pe_off + 4] = b"PX\0\0"
    with pytest.raises(pe.PeError, match=f"PE signature missing at offset {pe_off}"):
        pe.parse(bytes(bad))
    img = pe.parse(bytes(stub))
    with pytest.raises(pe.PeError, match="section table"):
        pe.parse(bytes(stub[:img.sections[0].header_offset + 10]))
    last = img.sections[-1]
    with pytest.raises(pe.PeError, match="runs past the end of the file"):
        pe.parse(bytes(stub[:last.raw_offset + 1]))
    big = bytearray(stub)
    struct.pack_into("<I", big, img.opt_offset + 60, len(stub) + 1)
    with pytest.raises(pe.PeError, match="SizeOfHeaders"):
        pe.parse(bytes(big))
