"""The vendor-signed UKI package (docs/image-format.md "UKI package"): what an SMP update of the
UKI slot carries. A ustar archive (the bundle's tar writer, fixed metadata, so the same inputs
give the same bytes) of ``uki-manifest.json`` (canonical JSON, firmware/canonjson.py),
``uki-manifest.sig`` (Ed25519 with the vendor's bundle key over ``DOMAIN + manifest``: never a
valid bundle signature, see firmware/update/uki_package.py) and one payload: ``uki.efi`` (the
whole signed UKI) or ``uki.delta`` (host_tools/image/uki_delta.py).

The device side (parse, verify, rebuild, the SMP upload session) is
firmware/update/uki_package.py; this module only writes packages.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware import canonjson
from firmware.update import uki_package as device
from host_tools.image import bundle

PACKAGE_NAME = "uki.tar"  # build/<board>/uki.tar: the full package `make image` writes
DOMAIN = device.DOMAIN


def manifest(board: str, version: str, anti_rollback_counter: int, uki: bytes) -> bytes:
    """The canonical manifest of *uki* (the whole signed UKI as it goes onto the ESP)."""
    obj = {"format_version": device.FORMAT_VERSION, "kind": device.KIND, "board": board,
           "version": version, "anti_rollback_counter": anti_rollback_counter,
           "uki": {"size": len(uki), "sha256": hashlib.sha256(uki).hexdigest()}}
    data: bytes = canonjson.dumps(obj).encode()  # type: ignore[no-untyped-call]
    device.parse_manifest(data)  # type: ignore[no-untyped-call]  # what the device will accept
    return data


def sign(key: Ed25519PrivateKey, manifest_bytes: bytes) -> bytes:
    """Ed25519 over the domain-separated message (deterministic: same key, same signature)."""
    return key.sign(DOMAIN + manifest_bytes)


def pack(manifest_bytes: bytes, signature: bytes, payload_name: str, payload: bytes) -> bytes:
    if payload_name not in (device.FULL_NAME, device.DELTA_NAME):
        raise ValueError(f"payload member {payload_name!r} is not "
                         f"{device.FULL_NAME} or {device.DELTA_NAME}")
    return bundle.ustar([(device.MANIFEST_NAME, manifest_bytes),
                         (device.SIGNATURE_NAME, signature), (payload_name, payload)])


def build_package(key: Ed25519PrivateKey, board: str, version: str, anti_rollback_counter: int,
                  uki: bytes) -> bytes:
    """The full package of *uki*: signed manifest, signature, ``uki.efi``."""
    man = manifest(board, version, anti_rollback_counter, uki)
    return pack(man, sign(key, man), device.FULL_NAME, uki)
