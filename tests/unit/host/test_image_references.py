"""host_tools/image/references.py: the vendor-signed reference set make image writes, checked with
the phone's own loader (firmware/attest/trust.py) and OpenSSL's Ed25519 (cryptography)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.attest import trust
from host_tools.image import references


def _entry(version: str, counter: int) -> dict[str, Any]:
    return {"version": version, "board": "qemu-x86_64", "anti_rollback_counter": counter,
            "bundle_sha256": "%064x" % counter, "pcr": 14,
            "components": [{"name": "phone-app", "version": version, "sha256": "%064x" % (counter + 100)}],
            "pcrs": {"sha256": {"14": "%064x" % (counter + 200)}}}


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def test_update_accumulates_images_and_revocations(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    references.update(tmp_path, key, "qemu-x86_64", [_entry("0.1.0", 1)], "0.1.0")
    doc = references.update(tmp_path, key, "qemu-x86_64", [_entry("0.2.0", 2)], "0.2.0",
                            revoke_versions=["0.0.5"], revoke_sha256=["ab" * 32])
    assert [im["version"] for im in doc["images"]] == ["0.1.0", "0.2.0"]
    assert doc["min_version"] == "0.2.0" and doc["revoked"] == {"versions": ["0.0.5"], "sha256": ["ab" * 32]}
    data = (tmp_path / "references.json").read_bytes()
    sig = (tmp_path / "references.sig").read_bytes()
    key.public_key().verify(sig, data)  # OpenSSL's Ed25519: the vendor signed these bytes
    t = trust.load(data, sig, _pem(key), ["-----BEGIN CERTIFICATE-----\n"])  # type: ignore[no-untyped-call]
    assert t.references["images"][1]["pcrs"]["sha256"][14] == bytes.fromhex("%064x" % 202)
    # the same version again replaces its entry; min_version stays when not given
    doc = references.update(tmp_path, key, "qemu-x86_64", [dict(_entry("0.2.0", 3))])
    assert [im["anti_rollback_counter"] for im in doc["images"]] == [1, 3] and doc["min_version"] == "0.2.0"


def test_a_set_signed_by_another_key_is_not_carried_over(tmp_path: Path) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    references.update(tmp_path, old, "qemu-x86_64", [_entry("0.1.0", 1)], "0.1.0")
    doc = references.update(tmp_path, new, "qemu-x86_64", [_entry("0.2.0", 2)], "0.2.0")
    assert [im["version"] for im in doc["images"]] == ["0.2.0"]
    with pytest.raises(InvalidSignature):
        old.public_key().verify((tmp_path / "references.sig").read_bytes(),
                                (tmp_path / "references.json").read_bytes())


def test_cli_revokes_and_re_signs(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    key_path = tmp_path / "key.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    references.update(tmp_path, key, "qemu-x86_64", [_entry("0.1.0", 1)], "0.1.0")
    assert references.main(["--dir", str(tmp_path), "--signing-key", str(key_path),
                            "--revoke-version", "0.1.0", "--min-version", "0.1.1"]) == 0
    doc = json.loads((tmp_path / "references.json").read_text())
    assert doc["revoked"]["versions"] == ["0.1.0"] and doc["min_version"] == "0.1.1"
    key.public_key().verify((tmp_path / "references.sig").read_bytes(),
                            (tmp_path / "references.json").read_bytes())
    assert references.main(["--dir", str(tmp_path / "none"), "--signing-key", str(key_path)]) == 2
