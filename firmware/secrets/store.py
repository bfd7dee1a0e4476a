# The sealed-credential store on the phone's data partition (GPT name "phone-data"): a raw,
# documented layout (docs/sealing.md) the device reads without a filesystem driver.
#
#   offset  size  field
#   0       8     magic "PHSEALED"
#   8       2     format version (u16, big-endian) = 1
#   10      2     reserved, zero
#   12      4     body length N (u32, big-endian), at most MAX_BODY
#   16      32    SHA-256 of the body (catches torn or corrupt writes; NOT a security check: the
#                 TPM's policy is what protects the secrets, and the blobs are useless off this TPM)
#   48      N     body: UTF-8 JSON metadata (below); the rest of the partition is zero
#
# Nothing in the store is secret: TPM2B_PRIVATE is encrypted by the TPM under the SRK, and the
# metadata (expected PCRs, components, signed policies) is public. An attacker who edits it can
# only make the diagnosis wrong or the release fail, never release a secret.

import json

from firmware import canonjson, compat
from firmware.errors import ParseError

MAGIC = b"PHSEALED"
FORMAT = 1
HEADER_SIZE = 48
MAX_BODY = 256 * 1024
BANK_SIZES = {"sha256": 32}
POLICY_PCR = "pcr"
POLICY_AUTHORIZED = "authorized"
MAX_VERSION = 63  # anti-rollback versions are bit numbers of a 64-bit NV bit field


def pack(meta):
    """Store bytes for a metadata dict (validated first, so a bad store is never written)."""
    validate(meta)
    body = canonical_json(meta).encode()
    if len(body) > MAX_BODY:
        raise ValueError("store body of %d bytes exceeds %d" % (len(body), MAX_BODY))
    head = MAGIC + FORMAT.to_bytes(2, "big") + b"\x00\x00" + len(body).to_bytes(4, "big")
    return head + compat.sha256(body) + body


def canonical_json(v):
    """Compact JSON with sorted keys (firmware/canonjson.py), so the same metadata always packs
    to the same bytes."""
    try:
        return canonjson.dumps(v)
    except ValueError as e:
        raise ValueError("%s in the metadata" % e)


def parse_header(head):
    """-> body length, after checking magic, format and bounds. `head` is the first 48 bytes."""
    if len(head) < HEADER_SIZE:
        raise ParseError("store header truncated: %d of %d bytes" % (len(head), HEADER_SIZE),
                         offset=0, field="header")
    if head[:8] != MAGIC:
        if head[:8] == b"\x00" * 8:
            raise ParseError("no sealed store on the data partition (it is blank)", offset=0, field="magic")
        raise ParseError("bad store magic %s" % head[:8].hex(), offset=0, field="magic")
    fmt = int.from_bytes(head[8:10], "big")
    if fmt != FORMAT:
        raise ParseError("store format %d is not supported (expected %d)" % (fmt, FORMAT), offset=8,
                         field="format")
    n = int.from_bytes(head[12:16], "big")
    if n == 0 or n > MAX_BODY:
        raise ParseError("store body length %d out of range 1..%d" % (n, MAX_BODY), offset=12,
                         field="length")
    return n


def unpack(data):
    """Parse store bytes (trailing zeros of the partition allowed) -> validated metadata dict."""
    n = parse_header(data[:HEADER_SIZE])
    if len(data) < HEADER_SIZE + n:
        raise ParseError("store body truncated: %d of %d bytes" % (len(data) - HEADER_SIZE, n),
                         offset=HEADER_SIZE, field="body")
    body = bytes(data[HEADER_SIZE:HEADER_SIZE + n])
    if not compat.constant_time_equal(compat.sha256(body), bytes(data[16:48])):
        raise ParseError("store body does not match its SHA-256 (torn or corrupt write)", offset=16,
                         field="sha256")
    try:
        meta = json.loads(body)
    except ValueError as e:
        raise ParseError("store body is not JSON: %s" % e, offset=HEADER_SIZE, field="body")
    validate(meta)
    return meta


# A store rewritten on the device (firmware/secrets/store_write.py: a signed PCR policy delivered
# over SMP) is first written whole here, then at offset 0: a write torn by a power cut leaves one of
# the two copies whole. Between the largest store and the slot record (firmware/update/
# partition_flash.py RECORD_OFFSET, 1 MiB); zero on a store host_tools wrote (it zeroes the
# partition), so it only counts when the copy at offset 0 does not parse.
JOURNAL_OFFSET = 512 * 1024
SPAN = HEADER_SIZE + MAX_BODY  # bytes a copy may occupy


def _read_at(f, offset):
    f.seek(offset)
    head = f.read(HEADER_SIZE)
    n = parse_header(head)
    data = head + f.read(n)
    return data, unpack(data)  # the body's SHA-256 and fields: a torn copy fails here


def _read(path):
    """(header + body, metadata) of the store on a block device or file (header first, so only
    the body is read): the copy at offset 0, else the journal copy (JOURNAL_OFFSET) when offset 0
    does not parse; the error is offset 0's when neither does."""
    with open(path, "rb") as f:
        try:
            return _read_at(f, 0)
        except ParseError as e:
            first = e
        try:
            return _read_at(f, JOURNAL_OFFSET)
        except (ParseError, OSError):
            raise first


def read_bytes(path):
    return _read(path)[0]


def read_file(path):
    """The store's metadata from a block device or file (offset 0, else the journal copy)."""
    return _read(path)[1]


# --- metadata validation (fails with the field's name) -----------------------------------------

def _need(obj, key, kind, where):
    if not isinstance(obj, dict) or key not in obj:
        raise ParseError("missing %s" % (where + key), field=where + key)
    v = obj[key]
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise ParseError("%s must be an integer" % (where + key), field=where + key)
    if kind is not int and not isinstance(v, kind):
        raise ParseError("%s has the wrong type" % (where + key), field=where + key)
    return v


def unhex(text, field, size=None, max_size=None):
    if not isinstance(text, str) or len(text) % 2:
        raise ParseError("%s is not hex" % field, field=field)
    try:
        out = bytes.fromhex(text)
    except ValueError:
        raise ParseError("%s is not hex" % field, field=field)
    if size is not None and len(out) != size:
        raise ParseError("%s has %d bytes, expected %d" % (field, len(out), size), field=field)
    if max_size is not None and len(out) > max_size:
        raise ParseError("%s has %d bytes, at most %d" % (field, len(out), max_size), field=field)
    return out


def pcr_values(obj, pcrs, bank, where):
    """{"4": hex, ...} -> {4: bytes} covering exactly `pcrs`."""
    if not isinstance(obj, dict):
        raise ParseError("%s must be an object" % where, field=where)
    out = {}
    for k in obj:
        if not isinstance(k, str) or not k.isdigit() or int(k) not in pcrs:
            raise ParseError("%s has PCR %r outside the policy set" % (where, k), field=where)
        out[int(k)] = unhex(obj[k], "%s.%s" % (where, k), BANK_SIZES[bank])
    for i in pcrs:
        if i not in out:
            raise ParseError("%s lacks PCR %d" % (where, i), field=where)
    return out


def components(obj, where):
    if not isinstance(obj, list):
        raise ParseError("%s must be a list" % where, field=where)
    for i, c in enumerate(obj):
        w = "%s[%d]." % (where, i)
        _need(c, "name", str, w)
        _need(c, "version", str, w)
        unhex(_need(c, "sha256", str, w), w + "sha256", 32)
    return obj


def validate(meta):
    """Check the metadata's shape and sizes; returns it. Every length is bounded here so later
    code never meets an oversized value."""
    if not isinstance(meta, dict):
        raise ParseError("store metadata must be an object", field="body")
    if _need(meta, "format", int, "") != FORMAT:
        raise ParseError("metadata format %r is not %d" % (meta["format"], FORMAT), field="format")
    _need(meta, "board", str, "")
    bank = _need(meta, "pcr_bank", str, "")
    if bank not in BANK_SIZES:
        raise ParseError("PCR bank %r is not supported" % bank, field="pcr_bank")
    pcrs = _need(meta, "pcrs", list, "")
    if not pcrs or len(pcrs) > 24 or any(isinstance(p, bool) or not isinstance(p, int) or p < 0 or p > 23
                                         for p in pcrs) or sorted(set(pcrs)) != pcrs:
        raise ParseError("pcrs must be a sorted, non-empty list of distinct PCRs 0..23", field="pcrs")
    pcr_values(_need(meta, "expected", dict, ""), pcrs, bank, "expected")
    components(_need(meta, "components", list, ""), "components")
    mode = _need(meta, "policy", str, "")
    if mode == POLICY_AUTHORIZED:
        a = _need(meta, "authorized", dict, "")
        unhex(_need(a, "key", str, "authorized."), "authorized.key", max_size=512)
        unhex(_need(a, "policy_ref", str, "authorized."), "authorized.policy_ref", max_size=64)
        idx = _need(a, "nv_index", int, "authorized.")
        if idx >> 24 != 0x01:
            raise ParseError("authorized.nv_index 0x%x is not an NV index" % idx, field="authorized.nv_index")
        unhex(_need(a, "nv_name", str, "authorized."), "authorized.nv_name", 34)
        for i, s in enumerate(_need(a, "signed", list, "authorized.")):
            w = "authorized.signed[%d]." % i
            v = _need(s, "anti_rollback", int, w)
            if v < 0 or v > MAX_VERSION:
                raise ParseError("%santi_rollback %d outside 0..%d" % (w, v, MAX_VERSION), field=w + "anti_rollback")
            _need(s, "image_version", str, w)
            pcr_values(_need(s, "expected", dict, w), pcrs, bank, w + "expected")
            components(_need(s, "components", list, w), w + "components")
            unhex(_need(s, "approved", str, w), w + "approved", 32)
            unhex(_need(s, "r", str, w), w + "r", 32)
            unhex(_need(s, "s", str, w), w + "s", 32)
    elif mode != POLICY_PCR:
        raise ParseError("policy %r is not %r or %r" % (mode, POLICY_PCR, POLICY_AUTHORIZED), field="policy")
    if "srk" in meta:
        srk = _need(meta, "srk", dict, "")
        h = _need(srk, "handle", int, "srk.")
        if h >> 24 != 0x81:  # TPM_HT_PERSISTENT (Part 2 §7.2)
            raise ParseError("srk.handle 0x%x is not a persistent handle" % h, field="srk.handle")
        unhex(_need(srk, "name", str, "srk."), "srk.name", 34)
    if "attestation" in meta:
        attestation_record(_need(meta, "attestation", dict, ""))
    if "references" in meta:
        references_record(_need(meta, "references", dict, ""))
    objs = _need(meta, "objects", list, "")
    seen = []
    for i, o in enumerate(objs):
        w = "objects[%d]." % i
        name = _need(o, "name", str, w)
        if name in seen:
            raise ParseError("object %r appears twice" % name, field=w + "name")
        seen.append(name)
        if not isinstance(_need(o, "pin", bool, w), bool):
            raise ParseError("%spin must be true or false" % w, field=w + "pin")
        unhex(_need(o, "public", str, w), w + "public", max_size=1024)
        unhex(_need(o, "private", str, w), w + "private", max_size=1024)
    return meta


MAX_PEM = 8192


def _pem(obj, key, label, where):
    v = _need(obj, key, str, where)
    if len(v) > MAX_PEM or not v.startswith("-----BEGIN %s-----" % label) \
            or not v.rstrip().endswith("-----END %s-----" % label):
        raise ParseError("%s is not a PEM %s of at most %d characters" % (where + key, label, MAX_PEM),
                         field=where + key)


def attestation_record(a):
    """The "attestation" record provisioning writes (issue 10, docs/attestation.md): the AK's
    persistent handle and Name, its certificate from the device CA, and the device CA's
    certificate (PEM). All public."""
    w = "attestation."
    h = _need(a, "ak_handle", int, w)
    if h >> 24 != 0x81:  # TPM_HT_PERSISTENT (Part 2 §7.2)
        raise ParseError("attestation.ak_handle 0x%x is not a persistent handle" % h, field=w + "ak_handle")
    unhex(_need(a, "ak_name", str, w), w + "ak_name", 34)
    _pem(a, "ak_cert", "CERTIFICATE", w)
    _pem(a, "device_ca", "CERTIFICATE", w)
    return a


MAX_REFERENCES_B64 = 96 * 1024


def references_record(r):
    """The vendor-signed reference set provisioning copies from the build (docs/attestation.md):
    base64 of references.json ("json") and of its 64-byte Ed25519 signature ("sig"). Public; a
    phone checks the signature with the vendor key before it uses the set (firmware/attest/
    trust.py), so an edited copy is refused, never believed."""
    w = "references."
    for k in ("json", "sig"):
        v = _need(r, k, str, w)
        if not v or len(v) > MAX_REFERENCES_B64:
            raise ParseError("%s%s must be base64 of at most %d characters" % (w, k, MAX_REFERENCES_B64),
                             field=w + k)
    return r


def trust_anchors(meta):
    """{"device_ca": PEM, "references": b64, "references_sig": b64} from a validated store
    (the "trust" broker op); ValueError names what provisioning did not record."""
    if "attestation" not in meta:
        raise ValueError("the store has no attestation record (provisioned with --no-attestation?)")
    if "references" not in meta:
        raise ValueError("the store has no vendor reference set (provisioned before issue 10?)")
    return {"device_ca": meta["attestation"]["device_ca"], "references": meta["references"]["json"],
            "references_sig": meta["references"]["sig"]}


def pcr_hex(values):
    """{4: bytes} -> {"4": hex} as the store keeps them."""
    return {str(i): values[i].hex() for i in sorted(values)}
