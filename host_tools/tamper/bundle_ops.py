"""What an attacker can do to the signed phone bundle, with no I/O: parse the firmware partition,
change it, pack it again.

The bundle (docs/image-format.md) is a ustar archive: ``manifest.json``, ``manifest.sig``, then
one member per component in manifest (= measurement) order.  Every operation takes an optional
signing key:

* with the key (``--resign yes``): the manifest is rewritten to describe the new contents and
  signed again with it -- what a compromised build server holding the vendor key does.  The
  stage loader then *accepts* the bundle; only the measurements in PCR 14 give it away;
* without it (``--resign no``): manifest and signature stay as they were, now stale.  The stage
  loader measures what it finds, then refuses to start it.

Packing reuses ``host_tools.image.bundle`` (same ustar metadata, same canonical JSON), so an
untouched bundle packs to the very bytes the image builder wrote, and a ``--resign no`` byte
change differs from the original partition in exactly that one byte.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from host_tools.image import bundle

MANIFEST = bundle.MANIFEST_NAME
SIGNATURE = bundle.SIGNATURE_NAME


class TamperError(ValueError):
    """The request cannot be carried out (unknown component, bad offset, ...); says why."""


@dataclass(frozen=True)
class Bundle:
    manifest: bytes
    signature: bytes
    components: tuple[tuple[str, bytes], ...]  # (name, data) in archive order

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.components]

    def manifest_obj(self) -> dict[str, Any]:
        try:
            obj = json.loads(self.manifest)
        except ValueError as e:
            raise TamperError(f"{MANIFEST} on the flash is not JSON: {e}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("components"), list):
            raise TamperError(f"{MANIFEST} on the flash has no 'components' list")
        return obj

    def data(self, name: str) -> bytes:
        for n, d in self.components:
            if n == name:
                return d
        raise TamperError(f"no component {name!r} in the bundle on this flash (it has: "
                          f"{', '.join(self.names) or 'none'})")

    def pack(self) -> bytes:
        return bundle.ustar([(MANIFEST, self.manifest), (SIGNATURE, self.signature),
                             *self.components])

    def signed_by(self, key: Ed25519PrivateKey) -> bool:
        try:
            bundle.verify(key.public_key(), self.manifest, self.signature)
        except bundle.BundleError:
            return False
        return True


def parse(raw: bytes) -> Bundle:
    """The bundle at the start of the firmware partition *raw* (zero padding after it is fine)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            members: list[tuple[str, bytes]] = []
            for info in tar.getmembers():
                if not info.isfile():
                    raise TamperError(f"bundle member {info.name!r} is not a regular file")
                f = tar.extractfile(info)
                assert f is not None  # a regular file always has data
                members.append((info.name, f.read()))
    except tarfile.TarError as e:
        raise TamperError(f"the firmware partition does not hold a ustar bundle: {e}") from None
    if len(members) < 2 or members[0][0] != MANIFEST or members[1][0] != SIGNATURE:
        raise TamperError(f"the bundle does not start with {MANIFEST} and {SIGNATURE} "
                          f"(members: {[n for n, _ in members]}); reflash the device")
    return Bundle(members[0][1], members[1][1], tuple(members[2:]))


def _resigned(b: Bundle, obj: dict[str, Any], key: Ed25519PrivateKey | None) -> Bundle:
    if key is None:
        return b  # stale: manifest and signature as they were
    manifest = bundle.canonical_json(obj)
    return replace(b, manifest=manifest, signature=bundle.sign(key, manifest))


def _entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = obj["components"]
    return entries


def _entry(obj: dict[str, Any], name: str) -> dict[str, Any]:
    for e in _entries(obj):
        if isinstance(e, dict) and e.get("name") == name:
            return e
    raise TamperError(f"component {name!r} is on the flash but not in its manifest")


def change_byte(b: Bundle, name: str, offset: int | None, key: Ed25519PrivateKey | None
                ) -> tuple[Bundle, str]:
    """Add 1 (mod 256) to one byte of component *name*; default the last byte (for the code
    archives that is tar padding, so a re-signed bundle still installs and runs)."""
    data = bytearray(b.data(name))
    if not data:
        raise TamperError(f"component {name!r} is empty: no byte to change")
    at = len(data) - 1 if offset is None else offset
    if not 0 <= at < len(data):
        raise TamperError(f"offset {at} is outside component {name!r} ({len(data)} bytes)")
    old = data[at]
    data[at] = (old + 1) & 0xFF
    comps = tuple((n, bytes(data) if n == name else d) for n, d in b.components)
    obj = b.manifest_obj()
    if key is not None:
        _entry(obj, name)["sha256"] = hashlib.sha256(data).hexdigest()
    out = _resigned(replace(b, components=comps), obj, key)
    return out, f"{name}: byte {at} of {len(data)} changed {old:#04x} -> {data[at]:#04x}"


def replace_data(b: Bundle, name: str, data: bytes, key: Ed25519PrivateKey | None
                 ) -> tuple[Bundle, str]:
    """Component *name* with new contents (size and digest re-signed with *key*, else stale)."""
    b.data(name)  # must exist
    obj = b.manifest_obj()
    if key is not None:
        _entry(obj, name).update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    comps = tuple((n, data if n == name else d) for n, d in b.components)
    return _resigned(replace(b, components=comps), obj, key), f"{name}: replaced ({len(data)} bytes)"


def remove(b: Bundle, name: str, key: Ed25519PrivateKey | None) -> tuple[Bundle, str]:
    b.data(name)  # must exist
    obj = b.manifest_obj()
    if key is not None:
        _entry(obj, name)
        obj["components"] = [e for e in _entries(obj) if e.get("name") != name]
        if not obj["components"]:
            raise TamperError("cannot remove the last component: a manifest lists at least one")
    comps = tuple((n, d) for n, d in b.components if n != name)
    return _resigned(replace(b, components=comps), obj, key), f"{name}: removed"


def add(b: Bundle, name: str, data: bytes, key: Ed25519PrivateKey | None
        ) -> tuple[Bundle, str]:
    """Append a component (measured last, after the genuine ones)."""
    if not name or "/" in name or name in (MANIFEST, SIGNATURE) or name in b.names:
        raise TamperError(f"cannot add component {name!r}: the name is empty, has a '/', is "
                          f"reserved or already in the bundle ({', '.join(b.names)})")
    if len(name.encode()) > 99:
        raise TamperError(f"component name {name!r} is longer than a ustar name (99 bytes)")
    obj = b.manifest_obj()
    if key is not None:
        version = str(obj.get("bundle_version", "0"))
        # into the register the signed entries name (the board's component register)
        pcrs = [e["pcr"] for e in _entries(obj) if isinstance(e.get("pcr"), int)]
        pcr = int(pcrs[0]) if pcrs else bundle.PHONE_PCR
        _entries(obj).append(bundle.Component(name, version, data).manifest_entry(pcr))
    comps = b.components + ((name, data),)
    return (_resigned(replace(b, components=comps), obj, key),
            f"{name}: added ({len(data)} bytes) after {b.names[-1] if b.names else 'nothing'}")


def swap(b: Bundle, first: str, second: str, key: Ed25519PrivateKey | None
         ) -> tuple[Bundle, str]:
    """Exchange the positions of two components (so they are measured in the other order)."""
    if first == second:
        raise TamperError(f"--swap needs two different components, got {first!r} twice")
    b.data(first)
    b.data(second)

    def swapped(seq: list[Any], key_of: Any) -> list[Any]:
        i = next(k for k, x in enumerate(seq) if key_of(x) == first)
        j = next(k for k, x in enumerate(seq) if key_of(x) == second)
        seq = list(seq)
        seq[i], seq[j] = seq[j], seq[i]
        return seq

    obj = b.manifest_obj()
    if key is not None:
        _entry(obj, first)
        _entry(obj, second)
        obj["components"] = swapped(_entries(obj), lambda e: e.get("name"))
    comps = tuple(swapped(list(b.components), lambda c: c[0]))
    return (_resigned(replace(b, components=comps), obj, key),
            f"{first} and {second}: swapped (order now {', '.join(n for n, _ in comps)})")


def older_version(version: str) -> str:
    """The release before *version* for a dotted numeric version: the last non-zero field goes
    down by one and the fields after it become 9 (0.1.0 -> 0.0.9, 2.0 -> 1.9)."""
    try:
        fields = [int(x) for x in version.split(".")]
    except ValueError:
        raise TamperError(f"bundle_version {version!r} is not dotted numbers: give "
                          "--rollback-version") from None
    for i in range(len(fields) - 1, -1, -1):
        if fields[i] > 0:
            fields[i] -= 1
            fields[i + 1:] = [9] * (len(fields) - i - 1)
            return ".".join(str(x) for x in fields)
    raise TamperError(f"bundle_version {version!r} has no older release: give --rollback-version")


def rollback(b: Bundle, key: Ed25519PrivateKey, version: str | None = None,
             counter: int | None = None) -> tuple[Bundle, str]:
    """The same components as an older, genuinely signed release: lower ``bundle_version`` (also
    each component's version, as the image builder labels them) and a lower
    ``anti_rollback_counter``, signed with *key*.  What a downgrade attack replays."""
    obj = b.manifest_obj()
    old_v = str(obj.get("bundle_version"))
    old_c = obj.get("anti_rollback_counter")
    if not isinstance(old_c, int):
        raise TamperError("manifest has no integer anti_rollback_counter")
    new_c = old_c - 1 if counter is None else counter
    if not 0 <= new_c < old_c:
        raise TamperError(f"rollback needs an anti-rollback counter in 0..{old_c - 1} (the flash "
                          f"has {old_c}), got {new_c}")
    new_v = older_version(old_v) if version is None else version
    if not new_v or new_v == old_v:
        raise TamperError(f"rollback version must differ from the current {old_v!r}")
    obj["bundle_version"] = new_v
    obj["anti_rollback_counter"] = new_c
    for e in _entries(obj):
        if isinstance(e, dict) and e.get("version") == old_v:
            e["version"] = new_v
    return (_resigned(b, obj, key),
            f"bundle {old_v} (anti-rollback counter {old_c}) -> {new_v} (counter {new_c})")
