"""The signed phone bundle: manifest + Ed25519 signature + component files.

Manifest: one JSON object in canonical encoding (keys sorted, no whitespace, ASCII, UTF-8),
so the bytes that are signed are a function of the content alone::

    {"anti_rollback_counter":1,"board":"qemu-x86_64","bundle_version":"0.1.0",
     "components":[{"name":"phone-app","pcr":14,"sha256":"..","size":123,"version":"0.1.0"},...],
     "format_version":1}

``components`` is in measurement order: the stage loader extends the board's component register
(``pcr``: board.json ``component_pcr``, PCR 14 on qemu-x86_64) in exactly this order.
The signature is Ed25519 (RFC 8032) over the manifest bytes; Ed25519 is deterministic, so a
rebuild with the same key gives the same signature (ECDSA would not).

The bundle container is a POSIX ustar archive (uncompressed, 512-byte blocks, mtime 0, owner 0)
holding ``manifest.json``, ``manifest.sig`` and then one member per component named after it,
in manifest order.  ustar is parsed on the device in a few lines; see docs/image-format.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.pcr_registry import DEFAULT_COMPONENT_PCR, check_component_pcr

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
# the component register when the caller names none: qemu-x86_64's (board.json component_pcr)
PHONE_PCR = DEFAULT_COMPONENT_PCR
RESERVED_NAME = "bundle"  # the component register's bundle event's name in reference.json and the verifier


class BundleError(ValueError):
    """A bundle or manifest is malformed or its signature does not verify."""


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    data: bytes

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.data).digest()

    def manifest_entry(self, pcr: int = PHONE_PCR) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "size": len(self.data),
                "sha256": self.sha256.hex(), "pcr": pcr}


def canonical_json(obj: object) -> bytes:
    """Sorted keys, no whitespace, ASCII only: one encoding per value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def manifest(board: str, bundle_version: str, anti_rollback_counter: int,
             components: list[Component], pcr: int = PHONE_PCR) -> bytes:
    """The canonical manifest; every component is to be measured into `pcr`, the board's
    component register (firmware/pcr_registry.py refuses one the boot chain uses)."""
    check_component_pcr(pcr)  # type: ignore[no-untyped-call]
    names = [c.name for c in components]
    if len(set(names)) != len(names):
        raise BundleError(f"duplicate component names in {names}")
    if RESERVED_NAME in names:
        raise BundleError(f"component name {RESERVED_NAME!r} is reserved for the bundle event "
                          "(docs/eventlog.md)")
    return canonical_json({
        "format_version": FORMAT_VERSION,
        "board": board,
        "bundle_version": bundle_version,
        "anti_rollback_counter": anti_rollback_counter,
        "components": [c.manifest_entry(pcr) for c in components],
    })


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def ustar(members: list[tuple[str, bytes]]) -> bytes:
    """An uncompressed ustar archive of *members* in the given order, fixed metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            _tar_member(tar, name, data)
    return buf.getvalue()


def tree_files(root: Path, subdirs: list[str], exclude: tuple[str, ...] = ()
               ) -> list[tuple[str, bytes]]:
    """(path relative to *root*, contents) of the ``*.py`` files under root/<subdirs>, sorted;
    *exclude* lists paths relative to *root* whose files are left out."""
    files: list[tuple[str, bytes]] = []
    for sub in subdirs:
        base = root / sub
        paths = [base] if base.is_file() else sorted(base.rglob("*.py"))
        for p in paths:
            rel = p.relative_to(root).as_posix()
            if any(rel == e or rel.startswith(e + "/") for e in exclude):
                continue
            files.append((rel, p.read_bytes()))
    return sorted(set(files))


def sign(key: Ed25519PrivateKey, manifest_bytes: bytes) -> bytes:
    return key.sign(manifest_bytes)


def verify(public_key: Ed25519PublicKey, manifest_bytes: bytes, signature: bytes) -> None:
    from cryptography.exceptions import InvalidSignature
    try:
        public_key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise BundleError("manifest signature does not verify with the vendor key") from None


def pack(manifest_bytes: bytes, signature: bytes, components: list[Component]) -> bytes:
    return ustar([(MANIFEST_NAME, manifest_bytes), (SIGNATURE_NAME, signature)]
                 + [(c.name, c.data) for c in components])


def load_or_create_key(path: Path, create: bool) -> Ed25519PrivateKey:
    """Read a PEM (PKCS#8) Ed25519 key; create it (mode 0600) when absent and *create*."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise BundleError(f"{path}: signing key must be Ed25519, got {type(key).__name__}")
        return key
    if not create:
        raise BundleError(f"signing key {path} does not exist")
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.touch(mode=0o600)
    path.write_bytes(pem)
    return key


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
