"""The vendor-signed reference set (firmware/attest/trust.py has the format and the loader).

`make image` writes ``build/<board>/references.json`` and ``references.sig`` (Ed25519 over the
file's bytes with the vendor key, like the bundle's manifest) next to ``reference.json``. The set
accumulates images: images already in a set the same vendor key signed are kept (the vendor still
accepts older releases, they judge as ``outdated`` once below ``min_version``), the image just built
replaces any entry of the same version. ``min_version`` is board.json's ``min_version`` when given,
else the version just built. Revocations and older images are managed with

    python -m host_tools.image.references --dir build/qemu-x86_64 [--add-reference FILE]
        [--min-version V] [--revoke-version V] [--revoke-sha256 HEX]

which re-signs the set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from host_tools.image import bundle

REFERENCES_NAME = "references.json"
SIGNATURE_NAME = "references.sig"
SCHEMA_VERSION = 1


class ReferenceSetError(ValueError):
    """An input reference or set is unusable; names the file and field."""


def version_key(v: str) -> tuple[int, ...]:
    """'0.10.0' -> (0, 10, 0): versions compare as numbers (firmware/attest/trust.py does the same)."""
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        raise ReferenceSetError("version %r is not dot-separated numbers" % v) from None


def image_entry(reference: dict[str, Any]) -> dict[str, Any]:
    """The set's entry for one image, from that image's reference.json (build.py's output)."""
    try:
        b = reference["bundle"]
        return {"version": reference["image_version"], "board": reference["board"],
                "anti_rollback_counter": b["anti_rollback_counter"],
                "bundle_sha256": b["sha256"], "pcr": b["pcr"],
                "components": [{"name": c["name"], "version": c["version"], "sha256": c["sha256"]}
                               for c in reference["components"]],
                "pcrs": {"sha256": dict(reference["pcrs"]["sha256"])}}
    except (KeyError, TypeError) as e:
        raise ReferenceSetError("reference.json lacks %s" % e) from None


def make_set(board: str, images: Sequence[dict[str, Any]], min_version: str,
             revoked_versions: Sequence[str] = (), revoked_sha256: Sequence[str] = ()) -> bytes:
    doc = {"schema_version": SCHEMA_VERSION, "board": board, "min_version": min_version,
           "revoked": {"versions": sorted(set(revoked_versions)),
                       "sha256": sorted(set(revoked_sha256))},
           "images": sorted(images, key=lambda im: (im["board"], im["version"]))}
    return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return bundle.sign(key, data)


def read_signed(out: Path, key: Ed25519PrivateKey) -> dict[str, Any] | None:
    """The set in `out` if it exists and `key` signed it, else None (a set from another vendor
    key, or a damaged one, is not carried over)."""
    path, sig = out / REFERENCES_NAME, out / SIGNATURE_NAME
    if not path.is_file() or not sig.is_file():
        return None
    data = path.read_bytes()
    try:
        key.public_key().verify(sig.read_bytes(), data)
        doc = json.loads(data)
    except (InvalidSignature, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def write_set(out: Path, key: Ed25519PrivateKey, data: bytes) -> None:
    (out / REFERENCES_NAME).write_bytes(data)
    (out / SIGNATURE_NAME).write_bytes(sign(key, data))


def update(out: Path, key: Ed25519PrivateKey, board: str, add: Sequence[dict[str, Any]] = (),
           min_version: str | None = None, revoke_versions: Sequence[str] = (),
           revoke_sha256: Sequence[str] = ()) -> dict[str, Any]:
    """Merge `add` (image entries) into the set in `out` (kept only if `key` signed it), re-sign."""
    old = read_signed(out, key) or {}
    images = {(im["board"], im["version"]): im for im in old.get("images", [])}
    for im in add:
        images[(im["board"], im["version"])] = im
    if not images:
        raise ReferenceSetError("a reference set needs at least one image")
    revoked = old.get("revoked", {})
    mv = min_version or old.get("min_version") or max((v for _, v in images), key=version_key)
    data = make_set(board, list(images.values()), mv,
                    list(revoked.get("versions", [])) + list(revoke_versions),
                    list(revoked.get("sha256", [])) + list(revoke_sha256))
    write_set(out, key, data)
    doc: dict[str, Any] = json.loads(data)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    from host_tools.image.build import SIGNING_KEY_NAME
    ap = argparse.ArgumentParser(prog="python -m host_tools.image.references",
                                 description="Add images to, set the minimum version of, or "
                                             "revoke in the vendor-signed reference set.")
    ap.add_argument("--dir", type=Path, default=Path("build/qemu-x86_64"),
                    help="the board's build directory (holds references.json)")
    ap.add_argument("--signing-key", type=Path, help="vendor key (default build/keys/%s)"
                    % SIGNING_KEY_NAME)
    ap.add_argument("--add-reference", type=Path, action="append", default=[], metavar="FILE",
                    help="an image's reference.json to accept (repeatable)")
    ap.add_argument("--min-version")
    ap.add_argument("--revoke-version", action="append", default=[])
    ap.add_argument("--revoke-sha256", action="append", default=[])
    args = ap.parse_args(argv)
    try:
        key = bundle.load_or_create_key(args.signing_key or Path("build/keys") / SIGNING_KEY_NAME,
                                        create=False)
        adds = [image_entry(json.loads(p.read_text())) for p in args.add_reference]
        old = read_signed(args.dir, key)
        if old is None and not adds:
            raise ReferenceSetError("%s: no set signed by this key (run make image)"
                                    % (args.dir / REFERENCES_NAME))
        board = adds[0]["board"] if adds else str(old["board"] if old else "")
        doc = update(args.dir, key, board, adds, args.min_version, args.revoke_version,
                     args.revoke_sha256)
    except (OSError, ValueError) as e:
        print("references: error: %s" % e, file=sys.stderr)
        return 2
    print("references: %s: %d images, min_version %s, revoked %s" % (
        args.dir / REFERENCES_NAME, len(doc["images"]), doc["min_version"], doc["revoked"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
