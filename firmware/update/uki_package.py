# The vendor-signed UKI package (docs/image-format.md "UKI package"; built by
# host_tools/image/uki_package.py), sans-I/O: a ustar archive of exactly three members,
#   uki-manifest.json  canonical JSON (firmware/canonjson.py):
#                      {"anti_rollback_counter", "board", "format_version": 1, "kind": "uki",
#                       "uki": {"sha256": hex, "size": int}, "version"}
#   uki-manifest.sig   Ed25519 (RFC 8032) with the vendor's bundle key over DOMAIN + manifest
#   uki.efi | uki.delta  the whole signed UKI, or the delta against the installed one
#                      (firmware/update/uki_delta.py)
# The domain prefix keeps the two signed formats apart: the bundle's signature is over the bare
# manifest bytes (host_tools/image/bundle.py), so a UKI manifest signature never verifies as a
# bundle's, nor a bundle's as a UKI's. The member names differ too (manifest.json vs
# uki-manifest.json), so each parser refuses the other's archive on its first header.
#
# verify() checks everything that needs no base UKI (signature, board, anti-rollback floor, the
# payload's form); rebuild() makes the UKI from the payload and the base and refuses it unless
# its size and SHA-256 are the signed manifest's. UkiUpload is the SMP upload session for a
# package (firmware/update/upload.py's checks before and after writing, with these formats).

import json

from firmware import canonjson, compat
from firmware.boot import manifest as manifest_mod
from firmware.boot import stage, ustar
from firmware.errors import ParseError
from firmware.update import uki_delta
from firmware.update import upload as upload_mod
from firmware.update.uki_delta import BaseMismatch, DeltaError, UkiError  # noqa: F401

DOMAIN = b"trusted-phone/uki-manifest/v1\x00"
KIND = "uki"
FORMAT_VERSION = 1
MANIFEST_NAME = "uki-manifest.json"
SIGNATURE_NAME = "uki-manifest.sig"
FULL_NAME = "uki.efi"
DELTA_NAME = "uki.delta"
MAX_MANIFEST = 4096
MAX_SIZE = uki_delta.MAX_SIZE
KEYS = ("anti_rollback_counter", "board", "format_version", "kind", "uki", "version")


class PackageError(UkiError):
    """The package's archive, manifest, signature, board or counter is refused."""

    def __init__(self, reason):
        super().__init__(reason)
        if reason.startswith("anti-rollback"):  # as upload.Upload answers it
            self.rc = upload_mod.IMG_CURRENT_VERSION_IS_NEWER


class TargetMismatch(UkiError):
    """The rebuilt UKI's size or SHA-256 is not the signed manifest's."""

    rc = upload_mod.IMG_INVALID_HASH


def parse_manifest(data):
    """The manifest as a dict (uki.sha256 as its 64 lowercase hex digits, as signed and as the
    slot record keeps hashes); ParseError naming the field. No signature check: verify() does
    that first."""
    if len(data) > MAX_MANIFEST:
        raise ParseError("manifest of %d bytes (at most %d)" % (len(data), MAX_MANIFEST),
                         field="manifest")
    try:
        obj = json.loads(bytes(data).decode("utf-8"))
    except (ValueError, UnicodeError, RuntimeError) as e:
        raise ParseError("manifest is not JSON: %s" % e, field="manifest")
    if not isinstance(obj, dict):
        raise ParseError("manifest must be a JSON object", field="manifest")
    for k in obj:
        if k not in KEYS:
            raise ParseError("unknown key", field=k)
    if manifest_mod._int(obj, "format_version", "") != FORMAT_VERSION:
        raise ParseError("format_version is not %d" % FORMAT_VERSION, field="format_version")
    if obj.get("kind") != KIND:
        raise ParseError("kind %r is not %r" % (obj.get("kind"), KIND), field="kind")
    counter = manifest_mod._int(obj, "anti_rollback_counter", "")
    if counter > manifest_mod.MAX_COUNTER:
        raise ParseError("must be at most 2**64-1", field="anti_rollback_counter")
    uki = obj.get("uki")
    if not isinstance(uki, dict) or sorted(uki) != ["sha256", "size"]:
        raise ParseError("must be an object of size and sha256", field="uki")
    size = manifest_mod._int(uki, "size", "uki.")
    if size == 0 or size > MAX_SIZE:
        raise ParseError("size %d outside 1..%d" % (size, MAX_SIZE), field="uki.size")
    digest_hex = manifest_mod._str(uki, "sha256", "uki.", 64)
    try:
        digest = bytes.fromhex(digest_hex)
    except ValueError:
        digest = b""
    if len(digest) != 32 or digest.hex() != digest_hex:
        raise ParseError("must be 64 lowercase hex digits", field="uki.sha256")
    out = {"format_version": FORMAT_VERSION, "kind": KIND,
           "board": manifest_mod._str(obj, "board", ""),
           "version": manifest_mod._str(obj, "version", ""),
           "anti_rollback_counter": counter, "uki": {"size": size, "sha256": digest_hex}}
    if canonjson.dumps(out).encode() != bytes(data):
        raise ParseError("not in canonical form (firmware/canonjson.py)", field="manifest")
    return out


def signed_sha(manifest):
    return bytes.fromhex(manifest["uki"]["sha256"])


def signed_verifier(verify_signature):
    """The vendor key's verify(message, sig) as this format's: over DOMAIN + manifest."""
    if verify_signature is None:
        return None

    def verify(man_bytes, sig):
        return verify_signature(DOMAIN + bytes(man_bytes), sig)

    return verify


def check_manifest(man_bytes, sig, verify_signature, board, floor, floor_error=None):
    """(manifest, None) when the signature (with the domain prefix), board and anti-rollback
    floor pass, else (None, reason). The same checks as a bundle's (stage.check_manifest)."""
    manifest = err = None
    try:
        manifest = parse_manifest(man_bytes)
    except ParseError as e:
        err = e
    reason = stage.check_manifest(man_bytes, sig, manifest, err,
                                  signed_verifier(verify_signature), board, floor or 0,
                                  floor_error, what="UKI package")
    return (None, reason) if reason is not None else (manifest, None)


def split(package):
    """(manifest bytes, signature, payload name, payload) of a well-formed package;
    PackageError naming what is wrong."""
    try:
        members = ustar.parse(package)
    except ParseError as e:
        raise PackageError("UKI package archive malformed: %s" % e)
    names = [n for n, _ in members]
    if names and names[0] == stage.MANIFEST_NAME:
        raise PackageError("not a UKI package: a firmware bundle (%s)" % stage.MANIFEST_NAME)
    if len(names) != 3 or names[0] != MANIFEST_NAME or names[1] != SIGNATURE_NAME \
            or names[2] not in (FULL_NAME, DELTA_NAME):
        raise PackageError("not a UKI package: members %s, not %s, %s and one of %s, %s"
                           % (",".join(names[:4]) or "none", MANIFEST_NAME, SIGNATURE_NAME,
                              FULL_NAME, DELTA_NAME))
    return members[0][1], members[1][1], names[2], members[2][1]


def _check_payload(manifest, name, payload):
    """None, or the reason the payload can never give the signed UKI (no base needed)."""
    want = manifest["uki"]["size"]
    if name == FULL_NAME:
        if len(payload) != want:
            return "uki.efi of %d bytes, the signed manifest says %d" % (len(payload), want)
        if not compat.constant_time_equal(compat.sha256(payload), signed_sha(manifest)):
            return "uki.efi: sha256 differs from the signed manifest"
        return None
    try:
        _, _, target = uki_delta.check(payload)
    except DeltaError as e:
        return e.reason
    if target != want:
        return "uki.delta builds %d bytes, the signed manifest says %d" % (target, want)
    return None


def verify(package, verify_signature, board, floor, floor_error=None):
    """The signed manifest of a package this device may install; PackageError otherwise: the
    archive, the signature (vendor key, domain prefix), the board, the anti-rollback floor, and
    the payload (a full UKI: size and SHA-256; a delta: its form and target size)."""
    man, sig, name, payload = split(package)
    manifest, reason = check_manifest(man, sig, verify_signature, board, floor, floor_error)
    if reason is None:
        reason = _check_payload(manifest, name, payload)
    if reason is not None:
        raise PackageError(reason)
    return manifest


def rebuild(package, read_base):
    """The UKI the package's payload makes: uki.efi as it is, uki.delta applied to the base
    (`read_base(off, n)` -> bytes). Refused (UkiError subclasses: PackageError, DeltaError,
    BaseMismatch, TargetMismatch) unless its size and SHA-256 equal the signed manifest's `uki`.
    The caller has checked the signature with verify() (UkiUpload did, at upload); a full
    payload never calls read_base."""
    man, _, name, payload = split(package)
    try:
        manifest = parse_manifest(man)
    except ParseError as e:
        raise PackageError("UKI manifest malformed: %s" % e)
    out = payload if name == FULL_NAME else uki_delta.apply(payload, read_base)
    want = manifest["uki"]
    if len(out) != want["size"]:
        raise TargetMismatch("rebuilt UKI of %d bytes, the signed manifest says %d"
                             % (len(out), want["size"]))
    if not compat.constant_time_equal(compat.sha256(out), signed_sha(manifest)):
        raise TargetMismatch("rebuilt UKI: sha256 differs from the signed manifest")
    return bytes(out)


class UkiUpload(upload_mod.Upload):
    """An SMP image upload of a UKI package: upload.Upload's session (offsets, resume, the
    announced sha, read back) with this format's checks: the signed manifest on the first bytes
    before anything reaches the sink, verify() on what the sink holds at the end. No rebuild:
    the root broker rebuilds with the base UKI it reads from the ESP."""

    WHAT = "UKI package"
    image = 1  # MCUmgr image 1 (firmware/update/brokered.py sends it to the broker's uki_install)
    MANIFEST_NAME = MANIFEST_NAME
    SIGNATURE_NAME = SIGNATURE_NAME

    def __init__(self, sink, length, sha, verify_signature, board, floor, capacity):
        upload_mod.Upload.__init__(self, sink, length, sha, verify_signature, board, floor,
                                   capacity)

    def _check_signed(self, man_bytes, sig_bytes):
        floor_error = None if self.floor is not None else "the TPM did not give the floor"
        return check_manifest(man_bytes, sig_bytes, self.verify_signature, self.board,
                              self.floor, floor_error)

    def _check_written(self, written):
        try:
            verify(written, self.verify_signature, self.board, self.floor)
        except PackageError as e:
            return e.reason
        return None
