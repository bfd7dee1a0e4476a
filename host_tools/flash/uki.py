"""What `host_tools.flash --uki PKG [--uki-base UKI]` sends as MCUmgr image 1: the vendor-signed
UKI package as built, or the same signed manifest with a delta against the UKI the phone runs
(host_tools/image/uki_delta.py), and the SHA-256 of the UKI the phone will hold (the hash its
image-state list shows, which `--test` names)."""

from __future__ import annotations

import io
import json
import tarfile

MANIFEST = "uki-manifest.json"


class UkiPackageError(ValueError):
    pass


def target_sha(package: bytes) -> bytes:
    """The signed manifest's `uki.sha256` (the device checks the signature; this only names it)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(package), mode="r:") as tar:
            member = tar.extractfile(MANIFEST)
            if member is None:
                raise UkiPackageError(f"no {MANIFEST}: not a UKI package")
            man = json.loads(member.read())
        digest = bytes.fromhex(man["uki"]["sha256"])
    except (tarfile.TarError, KeyError, ValueError, TypeError) as e:
        raise UkiPackageError(f"not a UKI package ({e.__class__.__name__}: {e})") from None
    if len(digest) != 32:
        raise UkiPackageError("uki.sha256 is not a SHA-256")
    return digest


def uki_payload(package: bytes, base: bytes | None) -> tuple[bytes, bytes]:
    """(bytes to upload, SHA-256 of the UKI they make on the device)."""
    digest = target_sha(package)
    if base is None:
        return package, digest
    from host_tools.image import uki_delta
    try:
        return uki_delta.make_delta(package, base), digest
    except ValueError as e:
        raise UkiPackageError(f"cannot make a delta: {e}") from None
