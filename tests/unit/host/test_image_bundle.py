"""host_tools.image.bundle: canonical manifest, Ed25519 signature, ustar container, keys."""

from __future__ import annotations

import io
import json
import stat
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from host_tools.image import bundle

COMPONENTS = [bundle.Component("phone-app", "1.2.3", b"code"),
              bundle.Component("device-config", "1.2.3", b'{"a":1}')]


def test_manifest_is_canonical_and_complete() -> None:
    raw = bundle.manifest("qemu-x86_64", "1.2.3", 7, COMPONENTS)
    assert b" " not in raw and b"\n" not in raw
    obj = json.loads(raw)
    assert raw == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    assert obj["format_version"] == 1 and obj["board"] == "qemu-x86_64"
    assert obj["bundle_version"] == "1.2.3" and obj["anti_rollback_counter"] == 7
    assert [c["name"] for c in obj["components"]] == ["phone-app", "device-config"]
    assert obj["components"][0] == {
        "name": "phone-app", "version": "1.2.3", "size": 4, "pcr": 14,
        # sha256("code")
        "sha256": "5694d08a2e53ffcae0c3103e5ad6f6076abd960eb1f8a56577040bc1028f702b"}


def test_manifest_rejects_duplicate_names() -> None:
    with pytest.raises(bundle.BundleError, match="duplicate component names"):
        bundle.manifest("b", "1", 1, COMPONENTS + COMPONENTS[:1])


def test_signature_is_deterministic_and_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    raw = bundle.manifest("b", "1", 1, COMPONENTS)
    sig = bundle.sign(key, raw)
    assert len(sig) == 64 and sig == bundle.sign(key, raw)  # RFC 8032: deterministic
    bundle.verify(key.public_key(), raw, sig)
    tampered = raw.replace(b'"anti_rollback_counter":1', b'"anti_rollback_counter":2')
    with pytest.raises(bundle.BundleError, match="does not verify with the vendor key"):
        bundle.verify(key.public_key(), tampered, sig)
    with pytest.raises(bundle.BundleError, match="does not verify"):
        bundle.verify(Ed25519PrivateKey.generate().public_key(), raw, sig)


def test_pack_is_ustar_in_measurement_order_with_fixed_metadata() -> None:
    key = Ed25519PrivateKey.generate()
    raw = bundle.manifest("b", "1", 1, COMPONENTS)
    packed = bundle.pack(raw, bundle.sign(key, raw), COMPONENTS)
    assert packed == bundle.pack(raw, bundle.sign(key, raw), COMPONENTS)
    assert len(packed) % 512 == 0 and packed[257:263] == b"ustar\0"  # POSIX ustar magic
    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["manifest.json", "manifest.sig", "phone-app",
                                             "device-config"]
        for m in members:
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (0, 0, 0, "", "", 0o644)
        f = tar.extractfile("phone-app")
        assert f is not None and f.read() == b"code"


def test_tree_files_sorted_with_excludes(tmp_path: Path) -> None:
    for rel in ("firmware/b.py", "firmware/a/x.py", "firmware/sip/s.py", "firmware/a/n.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    files = bundle.tree_files(tmp_path, ["firmware"], ("firmware/sip",))
    assert [n for n, _ in files] == ["firmware/a/x.py", "firmware/b.py"]
    assert bundle.tree_files(tmp_path, ["firmware/missing"]) == []


def test_dev_key_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "k.pem"
    with pytest.raises(bundle.BundleError, match="does not exist"):
        bundle.load_or_create_key(path, create=False)
    k1 = bundle.load_or_create_key(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    k2 = bundle.load_or_create_key(path, create=False)
    assert bundle.public_pem(k1) == bundle.public_pem(k2)
    pub = load_pem_public_key(bundle.public_pem(k1))
    assert pub.public_bytes_raw() == k1.public_key().public_bytes_raw()  # type: ignore[union-attr]


def test_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    k = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.pem"
    path.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    with pytest.raises(bundle.BundleError, match="must be Ed25519"):
        bundle.load_or_create_key(path, create=False)
