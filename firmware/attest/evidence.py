# Evidence of this device's boot, version 1 (the interface of issue 10, docs/attestation.md):
#
#   {"version": 1, "nonce": hex, "quote": b64 TPMS_ATTEST, "signature": b64 TPMT_SIGNATURE,
#    "ak_pub": PEM SPKI, "ak_cert": PEM (device CA), "pcr_bank": "sha256", "pcrs": {"N": hex},
#    "logs": {"firmware": b64 TCG PFP log, "phone": b64 PCR-14 log}, "board": str,
#    "image_version": str or null (claimed; an appraiser trusts only the replayed bundle event)}
#
# collect(nonce) asks the TPM (through the loader's broker on the device) for a quote over that
# nonce and adds the logs; encode/decode are pure: compact JSON with sorted keys (the same bytes
# on CPython and MicroPython) and a parser that checks every field's type, syntax and size and
# raises EvidenceError naming the field. decode checks form, not truth: the signature, nonce,
# certificate chain and replay are the appraiser's (firmware/attest/appraise.py).

import json

from firmware import canonjson
from firmware.attest import pem
from firmware.attest.errors import EvidenceError
from firmware.attest.quote import NONCE_MAX, NONCE_MIN, QUOTE_PCRS
from firmware.errors import ParseError

VERSION = 1
BANK_SIZES = {"sha256": 32}
FIELDS = ("version", "nonce", "quote", "signature", "ak_pub", "ak_cert", "pcr_bank", "pcrs", "logs",
          "board", "image_version")
LOG_NAMES = ("firmware", "phone")
MAX_ATTEST = 1024  # a TPMS_ATTEST of a quote is ~150 bytes
MAX_SIGNATURE = 512
MAX_PUBKEY = 1024
MAX_CERT = 8192
MAX_LOG = 512 * 1024
MAX_TEXT = 64  # board, image_version
MAX_ENCODED = 2 * 1024 * 1024

_default_device = None


def set_device(device):
    """The object collect() asks by default (the console's PhoneDevice registers itself): it has
    tpm_quote(nonce bytes) -> the broker's quote answer, firmware_log(), phone_log() -> bytes,
    board() and image_version() -> str or None."""
    global _default_device
    _default_device = device


def check_nonce(nonce):
    if not isinstance(nonce, (bytes, bytearray)) or not NONCE_MIN <= len(nonce) <= NONCE_MAX:
        raise EvidenceError("the nonce must be %d..%d bytes" % (NONCE_MIN, NONCE_MAX))
    return bytes(nonce)


def parse_nonce_hex(text):
    """NONCE_HEX as typed (2..128 hex digits, even) -> bytes; EvidenceError otherwise."""
    if not isinstance(text, str) or len(text) % 2 or not 2 * NONCE_MIN <= len(text) <= 2 * NONCE_MAX \
            or not _is_hex(text):
        raise EvidenceError("the nonce must be %d..%d hex digits, an even number"
                            % (2 * NONCE_MIN, 2 * NONCE_MAX))
    return bytes.fromhex(text)


def collect(nonce, device=None):
    """Evidence (the dict above) for `nonce` (bytes), checked by the same rules as decode."""
    nonce = check_nonce(nonce)
    dev = device if device is not None else _default_device
    if dev is None:
        raise EvidenceError("no device to collect evidence from")
    ans = dev.tpm_quote(nonce)
    ev = {"version": VERSION, "nonce": nonce.hex()}
    for k in ("quote", "signature", "ak_pub", "ak_cert", "pcr_bank", "pcrs"):
        if k not in ans:
            raise EvidenceError("the quote answer lacks %s" % k)
        ev[k] = ans[k]
    ev["logs"] = {"firmware": pem.b64encode(dev.firmware_log()), "phone": pem.b64encode(dev.phone_log())}
    ev["board"] = dev.board()
    ev["image_version"] = dev.image_version()
    check(ev)
    return ev


def canonical_json(v):
    """Compact JSON with sorted keys (firmware/canonjson.py)."""
    try:
        return canonjson.dumps(v)
    except ValueError as e:
        raise EvidenceError(str(e))


def encode(evidence):
    """UTF-8 bytes of the checked evidence: compact JSON, sorted keys."""
    check(evidence)
    return canonical_json(evidence).encode("utf-8")


def decode(data):
    """The evidence dict from bytes (or str); EvidenceError on anything malformed."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray)):
        raise EvidenceError("evidence must be bytes")
    if len(data) > MAX_ENCODED:
        raise EvidenceError("evidence of %d bytes (at most %d)" % (len(data), MAX_ENCODED))
    try:
        ev = json.loads(bytes(data).decode("utf-8"))
    except (ValueError, UnicodeError):
        raise EvidenceError("evidence is not UTF-8 JSON")
    check(ev)
    return ev


def _is_hex(text):
    for c in text:
        if c not in "0123456789abcdefABCDEF":
            return False
    return True


def _hex(v, field, size=None, max_size=None):
    if not isinstance(v, str) or len(v) % 2 or not _is_hex(v):
        raise EvidenceError("%s must be a hex string" % field)
    n = len(v) // 2
    if size is not None and n != size:
        raise EvidenceError("%s has %d bytes, expected %d" % (field, n, size))
    if max_size is not None and n > max_size:
        raise EvidenceError("%s has %d bytes, at most %d" % (field, n, max_size))
    return bytes.fromhex(v)


def _text(v, field, nullable=False):
    if v is None and nullable:
        return
    if not isinstance(v, str) or not 0 < len(v) <= MAX_TEXT:
        raise EvidenceError("%s must be a string of 1..%d characters" % (field, MAX_TEXT))
    for ch in v:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise EvidenceError("%s holds a control character" % field)


def check(ev):
    """Check the evidence dict's shape, syntax and sizes (see the module comment); -> ev."""
    if not isinstance(ev, dict):
        raise EvidenceError("evidence is not a JSON object")
    for k in FIELDS:
        if k not in ev:
            raise EvidenceError("evidence lacks %s" % k)
    for k in ev:
        if k not in FIELDS:
            raise EvidenceError("evidence has an unknown field %r" % (k if len(k) <= 32 else k[:32] + "..."))
    v = ev["version"]
    if isinstance(v, bool) or v != VERSION:
        raise EvidenceError("evidence version %r is not %d" % (v, VERSION))
    nonce = _hex(ev["nonce"], "nonce")
    if not NONCE_MIN <= len(nonce) <= NONCE_MAX:
        raise EvidenceError("nonce has %d bytes (%d..%d)" % (len(nonce), NONCE_MIN, NONCE_MAX))
    quote = pem.b64decode(ev["quote"], "quote", MAX_ATTEST)
    sig = pem.b64decode(ev["signature"], "signature", MAX_SIGNATURE)
    _check_tpm_structures(quote, sig)
    pem.pem_decode(ev["ak_pub"], "PUBLIC KEY", "ak_pub", MAX_PUBKEY)
    pem.pem_decode(ev["ak_cert"], "CERTIFICATE", "ak_cert", MAX_CERT)
    bank = ev["pcr_bank"]
    if bank not in BANK_SIZES:
        raise EvidenceError("pcr_bank %r is not one of %s" % (bank if isinstance(bank, str) else type(bank).__name__,
                                                               ", ".join(sorted(BANK_SIZES))))
    pcrs = ev["pcrs"]
    if not isinstance(pcrs, dict) or not pcrs:
        raise EvidenceError("pcrs must be a non-empty object")
    for k in pcrs:
        if not isinstance(k, str) or not k.isdigit() or len(k) > 2 or int(k) > 23 or str(int(k)) != k:
            raise EvidenceError("pcrs: %r is not a PCR index 0..23" % (k[:8] if isinstance(k, str) else k))
        _hex(pcrs[k], "pcrs.%s" % k, BANK_SIZES[bank])
    logs = ev["logs"]
    if not isinstance(logs, dict) or sorted(logs) != sorted(LOG_NAMES):
        raise EvidenceError("logs must hold exactly %s" % " and ".join(LOG_NAMES))
    for n in LOG_NAMES:
        pem.b64decode(logs[n], "logs.%s" % n, MAX_LOG)
    _text(ev["board"], "board")
    _text(ev["image_version"], "image_version", nullable=True)
    return ev


def _check_tpm_structures(quote, sig):
    from firmware.tpm.attest import parse_attest
    from firmware.tpm.marshal import Reader
    from firmware.tpm.structures import SIGNATURE

    try:
        parse_attest(quote)
    except ParseError as e:
        raise EvidenceError("quote is not a TPMS_ATTEST of a quote: %s" % e)
    try:
        r = Reader(sig)
        SIGNATURE.read(r, "signature")
        r.done("TPMT_SIGNATURE")
    except ParseError as e:
        raise EvidenceError("signature is not a TPMT_SIGNATURE: %s" % e)


def quoted_pcrs():
    return list(QUOTE_PCRS)
