# What an appraiser trusts (docs/attestation.md "## Integrity levels"): the device CA
# certificate(s) that issue AK certificates, and the vendor-signed reference set.
#
# The reference set (`references.json`, signed by the vendor's Ed25519 key in `references.sig`, a
# detached RFC 8032 signature over the file's exact bytes, like the bundle's manifest) lists the
# images the vendor accepts, the minimum version and revocations:
#
#   {"schema_version": 1, "board": "qemu-x86_64", "min_version": "0.1.0",
#    "revoked": {"versions": ["0.0.7"], "sha256": ["<component digest hex>"]},
#    "images": [{"version": "0.1.0", "board": "qemu-x86_64", "anti_rollback_counter": 1,
#                "bundle_sha256": hex, "pcr": 14,
#                "components": [{"name": "phone-app", "version": "0.1.0", "sha256": hex}, ...],
#                "pcrs": {"sha256": {"4": hex, ...}}}]}
#
# It reaches a phone at provisioning (the data partition, next to the AK certificate; not in the
# measured bundle, which cannot contain its own digest), so a phone judges a peer offline.
# load() checks the signature before it parses anything: an unsigned or re-signed set is refused
# with TrustError, never partly used.

import json

from firmware.boot import signature as vendor_sig

SCHEMA_VERSION = 1
REFERENCES_NAME = "references.json"
SIGNATURE_NAME = "references.sig"
MAX_REFERENCES = 1024 * 1024
MAX_TEXT = 64
BANK_SIZES = {"sha256": 32}


class TrustError(ValueError):
    """The trust material is unusable: bad signature, malformed set, no device CA. Names what."""


class Trust:
    """device_cas: list of PEM certificates (strings); references: the parsed set (dict above,
    digests as bytes, PCR keys as ints)."""

    def __init__(self, device_cas, references):
        if not device_cas:
            raise TrustError("no device CA certificate to check AK certificates with")
        for pem in device_cas:
            if not isinstance(pem, str) or "-----BEGIN CERTIFICATE-----" not in pem:
                raise TrustError("a device CA is not a PEM certificate")
        self.device_cas = list(device_cas)
        self.references = references

    @property
    def board(self):
        return self.references["board"]

    @property
    def min_version(self):
        return self.references["min_version"]


def parse_version(text):
    """'0.1.0' -> (0, 1, 0): dot-separated decimal numbers (what board.json's image_version is).
    ValueError for anything else, so versions compare numerically and never as strings."""
    if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
        raise ValueError("version must be a short string")
    out = []
    for part in text.split("."):
        if not part or not part.isdigit() or len(part) > 9:
            raise ValueError("version %r is not dot-separated numbers" % text)
        out.append(int(part))
    return tuple(out)


def version_below(version, minimum):
    """True when `version` < `minimum`; a version that does not parse counts as below."""
    try:
        return parse_version(version) < parse_version(minimum)
    except ValueError:
        return True


def load(references, signature, vendor_pubkey_pem, device_cas):
    """Trust from the set's bytes, its signature, the vendor key (PEM) and the device CA PEMs."""
    if not isinstance(references, (bytes, bytearray)) or len(references) > MAX_REFERENCES:
        raise TrustError("%s must be at most %d bytes" % (REFERENCES_NAME, MAX_REFERENCES))
    try:
        verify = vendor_sig.load_public_key(vendor_pubkey_pem)
    except ValueError as e:
        raise TrustError("vendor key: %s" % e)
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != 64 \
            or not verify(bytes(references), bytes(signature)):
        raise TrustError("%s: signature does not verify with the vendor key" % REFERENCES_NAME)
    try:
        doc = json.loads(bytes(references).decode("utf-8"))
    except (ValueError, UnicodeError):
        raise TrustError("%s is not UTF-8 JSON" % REFERENCES_NAME)
    return Trust(device_cas, parse_references(doc))


def _text(obj, key, where):
    v = obj.get(key)
    if not isinstance(v, str) or not 0 < len(v) <= MAX_TEXT:
        raise TrustError("%s: %r must be a string of 1..%d characters" % (where, key, MAX_TEXT))
    return v


def _int(obj, key, where, lo, hi):
    v = obj.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise TrustError("%s: %r must be an integer %d..%d" % (where, key, lo, hi))
    return v


def _digest(v, where, size=32):
    if not isinstance(v, str) or len(v) != 2 * size:
        raise TrustError("%s must be %d hex bytes" % (where, size))
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise TrustError("%s is not hex" % where)


def _keys(obj, allowed, where):
    if not isinstance(obj, dict):
        raise TrustError("%s must be an object" % where)
    for k in obj:
        if k not in allowed:
            raise TrustError("%s: unknown field %r" % (where, str(k)[:32]))


def parse_references(doc):
    """The validated set with bytes digests and int PCR indices; TrustError names the field."""
    _keys(doc, ("schema_version", "board", "min_version", "revoked", "images"), "references")
    if doc.get("schema_version") != SCHEMA_VERSION or isinstance(doc.get("schema_version"), bool):
        raise TrustError("references: schema_version %r is not %d" % (doc.get("schema_version"),
                                                                      SCHEMA_VERSION))
    out = {"schema_version": SCHEMA_VERSION, "board": _text(doc, "board", "references")}
    out["min_version"] = _text(doc, "min_version", "references")
    try:
        parse_version(out["min_version"])
    except ValueError as e:
        raise TrustError("references: min_version: %s" % e)
    rev = doc.get("revoked", {})
    _keys(rev, ("versions", "sha256"), "references.revoked")
    versions = rev.get("versions", [])
    digests = rev.get("sha256", [])
    if not isinstance(versions, list) or not isinstance(digests, list):
        raise TrustError("references.revoked: versions and sha256 must be lists")
    for i, v in enumerate(versions):
        if not isinstance(v, str) or not 0 < len(v) <= MAX_TEXT:
            raise TrustError("references.revoked.versions[%d] must be a version string" % i)
    out["revoked"] = {"versions": list(versions),
                      "sha256": [_digest(d, "references.revoked.sha256[%d]" % i)
                                 for i, d in enumerate(digests)]}
    images = doc.get("images")
    if not isinstance(images, list) or not images:
        raise TrustError("references: 'images' must be a non-empty list")
    out["images"] = []
    seen = {}
    for i, img in enumerate(images):
        where = "references.images[%d]" % i
        _keys(img, ("version", "board", "anti_rollback_counter", "bundle_sha256", "pcr",
                    "components", "pcrs"), where)
        im = {"version": _text(img, "version", where), "board": _text(img, "board", where),
              "anti_rollback_counter": _int(img, "anti_rollback_counter", where, 0, 0xFFFFFFFFFFFFFFFF),
              "bundle_sha256": _digest(img.get("bundle_sha256"), where + ".bundle_sha256"),
              "pcr": _int(img, "pcr", where, 0, 23)}
        key = (im["board"], im["version"])
        if key in seen:
            raise TrustError("%s: image %s %s listed twice" % (where, im["board"], im["version"]))
        seen[key] = True
        comps = img.get("components")
        if not isinstance(comps, list) or not comps:
            raise TrustError("%s: 'components' must be a non-empty list" % where)
        im["components"] = []
        names = {}
        for j, c in enumerate(comps):
            cw = "%s.components[%d]" % (where, j)
            _keys(c, ("name", "version", "sha256"), cw)
            name = _text(c, "name", cw)
            if name in names:
                raise TrustError("%s: component %r listed twice" % (cw, name))
            names[name] = True
            im["components"].append({"name": name, "version": _text(c, "version", cw),
                                     "sha256": _digest(c.get("sha256"), cw + ".sha256")})
        pcrs = img.get("pcrs")
        _keys(pcrs, tuple(BANK_SIZES), where + ".pcrs")
        im["pcrs"] = {}
        for bank in pcrs:
            values = pcrs[bank]
            _keys(values, tuple(str(n) for n in range(24)), "%s.pcrs.%s" % (where, bank))
            im["pcrs"][bank] = dict((int(k), _digest(v, "%s.pcrs.%s.%s" % (where, bank, k),
                                                     BANK_SIZES[bank]))
                                    for k, v in values.items())
        out["images"].append(im)
    return out


def find_image(references, board, version):
    for im in references["images"]:
        if im["board"] == board and im["version"] == version:
            return im
    return None


def known_digests(references, name):
    """Every sha256 the set accepts for component `name` (any image)."""
    out = []
    for im in references["images"]:
        for c in im["components"]:
            if c["name"] == name:
                out.append(c["sha256"])
    return out
