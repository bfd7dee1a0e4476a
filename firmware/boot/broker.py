# The TPM broker's protocol (issue 9 part 2, least privilege): the phone (uid 1000) never opens
# the TPM; a root process forked by the stage loader holds it and serves a few operations over a
# socketpair. This file is the sans-I/O core: request parsing and validation, dispatch to an
# operations object, answer encoding, and the client side's encoding. broker_io.py does the I/O.
#
# One request or answer per datagram (SOCK_SEQPACKET keeps the boundaries): a JSON object of at
# most MAX_REQUEST (answers MAX_ANSWER) bytes. Requests:
#   {"op": "credentials"}                 the boot release (done by the broker right after the
#                                          separator): status fields + the SIP account if released
#   {"op": "unlock", "pin": "1234"}       unseal the PIN-bound user secret: metadata only back
#   {"op": "pcrs", "bank": "sha256"}      every PCR of that bank
#   {"op": "da"}                          the dictionary-attack state
#   {"op": "shutdown"}                    TPM2_Shutdown(CLEAR) before power-off
#   {"op": "quote", "nonce": "<hex>"}     TPM2_Quote of the sha256 PCRs firmware/attest/quote.py
#                                          lists with the provisioned AK over that nonce (1..64
#                                          bytes: 2..128 hex digits): quote, signature, pcrs,
#                                          ak_pub, ak_cert (issue 10)
#   {"op": "trust"}                       the trust anchors provisioning put in the data
#                                          partition's store, for judging peers at call set-up:
#                                          device_ca (PEM), references + references_sig (base64
#                                          of the vendor-signed reference set; null when none)
# Firmware banks (docs/flashing.md; MCUboot semantics in firmware/update/slots.py). The banks and
# the slot record are on partitions only root writes; the phone's SMP server asks for these:
#   {"op": "slots"}                       SMP image state read: images (hash as hex) + the record's
#                                          summary (running, trial, confirmed, pending, last)
#   {"op": "slot_state", "hash": "<64 hex>" or null, "confirm": bool}
#                                          SMP image state write: test (confirm false) or permanent
#                                          (true) by hash; confirm with null confirms the running
#                                          image, and ending a trial raises the anti-rollback
#                                          floor to its counter (confirmed_counter in the answer)
#   {"op": "slot_erase", "slot": 1}       SMP image erase (slot 0 is refused by the slot logic;
#                                          2, 3: the UKI's slots, image 1)
#   {"op": "slot_install", "length": n, "sha": "<64 hex>"}
#                                          install the phone's staged upload (n bytes, that
#                                          SHA-256) into the inactive bank after checking it all
#                                          again (firmware/update/staged.py): signature, board,
#                                          the TPM's anti-rollback floor, every component, sha
#   {"op": "uki_install", "length": n, "sha": "<64 hex>"}
#                                          install the staged UKI package (image 1, full or delta)
#                                          into the inactive UKI bank on the ESP after checking it
#                                          again (firmware/boot/broker_uki.py); a state write by a
#                                          UKI's hash sets BootNext, confirm puts it in BootOrder
# Signed PCR policies (docs/sealing.md "Signed policy over SMP"): the store is on the data
# partition, which only root writes; the phone stages a delivered policy file and asks:
#   {"op": "policy_install", "length": n, "sha": "<64 hex>"}
#                                          check the staged policy file (n bytes, that SHA-256)
#                                          against the store (firmware/secrets/policy_entry.py:
#                                          form, board, PCRs, key, version, the TPM's signature
#                                          check) and write the store with it added, atomically
#                                          (firmware/secrets/store_write.py): image_version,
#                                          anti_rollback and the store's signed versions back
# A refused slot operation answers {"ok": false, "error", "rc": IMG_MGMT_ERR code, "reason"}.
# Anything else, or any field missing,
# extra or out of range, is refused with {"ok": false, "error": ...} and logged; the log line
# never holds a field's value (a PIN typed into the wrong field stays unlogged).

import json

MAX_REQUEST = 256
MAX_ANSWER = 8192
PIN_MIN, PIN_MAX = 4, 16
BANKS = ("sha1", "sha256", "sha384", "sha512")
OPS = {  # op -> its fields other than "op"
    "credentials": (),
    "unlock": ("pin",),
    "pcrs": ("bank",),
    "da": (),
    "shutdown": (),
    "quote": ("nonce",),
    "trust": (),
    "slots": (),
    "slot_state": ("hash", "confirm"),
    "slot_erase": ("slot",),
    "slot_install": ("length", "sha"),
    "uki_install": ("length", "sha"),
    "policy_install": ("length", "sha"),
}
MAX_POLICY = 16 * 1024  # bytes of a policy file (firmware/secrets/policy_entry.py MAX_FILE)
MAX_INSTALL = 64 << 20  # bytes: above any bank (board.json partitions_mib); the bank size decides
NONCE_HEX_MIN, NONCE_HEX_MAX = 2, 128  # 1..64 bytes (firmware/attest/quote.py NONCE_MIN/MAX)


class RequestError(ValueError):
    """A request the broker refuses; the message names what is wrong, never a value."""


def _is_hex(text):
    for c in text:
        if c not in "0123456789abcdefABCDEF":
            return False
    return True


def _is_digits(text):
    for c in text:
        if c < "0" or c > "9":
            return False
    return True


def _is_sha256_hex(text):
    return isinstance(text, str) and len(text) == 64 and _is_hex(text)


def parse_request(data):
    """Validated request dict from one datagram; RequestError otherwise."""
    req = _load(data, MAX_REQUEST, "request", RequestError)
    if not isinstance(req, dict):
        raise RequestError("request is not a JSON object")
    op = req.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise RequestError("operation not allowed")
    fields = OPS[op]
    for k in req:
        if k != "op" and k not in fields:
            raise RequestError("%s: unexpected field" % op)
    for k in fields:
        if k not in req:
            raise RequestError("%s: missing field %s" % (op, k))
    if op == "unlock":
        pin = req["pin"]
        if not isinstance(pin, str) or not PIN_MIN <= len(pin) <= PIN_MAX or not _is_digits(pin):
            raise RequestError("unlock: the PIN must be %d..%d digits" % (PIN_MIN, PIN_MAX))
    if op == "quote":
        n = req["nonce"]
        if not isinstance(n, str) or not NONCE_HEX_MIN <= len(n) <= NONCE_HEX_MAX or len(n) % 2 \
                or not _is_hex(n):
            raise RequestError("quote: the nonce must be %d..%d hex digits, an even number"
                               % (NONCE_HEX_MIN, NONCE_HEX_MAX))
    if op == "slot_state":
        h = req["hash"]
        if h is not None and not _is_sha256_hex(h):
            raise RequestError("slot_state: hash must be 64 hex digits or null")
        if not isinstance(req["confirm"], bool):
            raise RequestError("slot_state: confirm must be true or false")
    if op == "slot_erase" and (isinstance(req["slot"], bool) or req["slot"] not in (0, 1, 2, 3)):
        raise RequestError("slot_erase: slot must be 0..3")
    if op in ("slot_install", "uki_install"):
        n = req["length"]
        if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= MAX_INSTALL:
            raise RequestError("%s: length must be 1..%d" % (op, MAX_INSTALL))
        if not _is_sha256_hex(req["sha"]):
            raise RequestError("%s: sha must be 64 hex digits" % op)
    if op == "policy_install":
        n = req["length"]
        if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= MAX_POLICY:
            raise RequestError("policy_install: length must be 1..%d" % MAX_POLICY)
        if not _is_sha256_hex(req["sha"]):
            raise RequestError("policy_install: sha must be 64 hex digits")
    if op == "pcrs" and req["bank"] not in BANKS:
        raise RequestError("pcrs: bank must be one of %s" % ", ".join(BANKS))
    return req


def encode(obj, limit):
    data = json.dumps(obj).encode("utf-8")
    if len(data) > limit:
        raise ValueError("message of %d bytes (at most %d)" % (len(data), limit))
    return data


def _describe(data):
    """What a refused request was, for the log: its op when it names an allowed one, else its
    size; never a field value."""
    try:
        op = json.loads(bytes(data).decode("utf-8")).get("op")
    except Exception:  # noqa: BLE001  anything unparsable is described by its size
        op = None
    if isinstance(op, str) and op in OPS:
        return "op %s, %d bytes" % (op, len(data))
    return "%d bytes" % len(data)


class Broker:
    """handle(datagram) -> (answer bytes, log line or None). `ops` has credentials(),
    unlock(pin bytes), pcrs(bank), da(), shutdown(), quote(nonce bytes), each returning a
    JSON-able dict."""

    def __init__(self, ops):
        self.ops = ops
        self.refused = 0

    def handle(self, data):
        try:
            req = parse_request(data)
        except RequestError as e:
            self.refused += 1
            return encode({"ok": False, "error": "refused: %s" % e}, MAX_ANSWER), \
                "broker: refused a request (%s): %s" % (_describe(data), e)
        op = req["op"]
        try:
            if op == "unlock":
                pin = bytearray(req["pin"].encode())
                req["pin"] = None
                try:
                    out = self.ops.unlock(pin)
                finally:
                    for i in range(len(pin)):
                        pin[i] = 0
            elif op == "pcrs":
                out = self.ops.pcrs(req["bank"])
            elif op == "quote":
                out = self.ops.quote(bytes.fromhex(req["nonce"]))
            else:
                out = getattr(self.ops, op)(*[req[k] for k in OPS[op]])
        except Exception as e:  # noqa: BLE001  the TPM's error names its code; no secret in it
            rc = getattr(e, "rc", None)
            if isinstance(rc, int) and isinstance(getattr(e, "reason", None), str):
                # a slot refusal (SlotError, UploadRefused): its IMG_MGMT_ERR code goes back;
                # a policy refusal (PolicyRefused): MGMT_ERR EINVAL
                return encode({"ok": False, "error": "%s refused: %s" % (op, e.reason), "rc": rc,
                               "reason": e.reason}, MAX_ANSWER), "broker: %s refused: %s" % (op, e.reason)
            return encode({"ok": False, "error": "%s failed: %s: %s" % (op, e.__class__.__name__, e)},
                          MAX_ANSWER), "broker: %s failed: %s" % (op, e.__class__.__name__)
        ans = {"ok": True}
        ans.update(out)
        return encode(ans, MAX_ANSWER), None


def _load(data, limit, what, error):
    """The JSON value of one datagram of at most `limit` bytes; `error` (naming `what`) if not.
    Both sides read datagrams through it: parse_request (loader) and parse_answer (phone)."""
    if len(data) > limit:
        raise error("%s of %d bytes (at most %d)" % (what, len(data), limit))
    try:
        return json.loads(bytes(data).decode("utf-8"))
    except (ValueError, UnicodeError):
        raise error("%s is not UTF-8 JSON" % what)


# --- the phone's side -------------------------------------------------------------------------


class BrokerError(RuntimeError):
    """The broker refused or failed a request (its message), or the channel broke. A refused
    slot operation carries the IMG_MGMT_ERR code `rc` and the `reason`."""

    def __init__(self, message, rc=None, reason=None):
        super().__init__(message)
        self.rc = rc
        self.reason = reason


def request(op, **fields):
    req = {"op": op}
    req.update(fields)
    return encode(req, MAX_REQUEST)


def parse_answer(data):
    ans = _load(data, MAX_ANSWER, "answer", BrokerError)
    if not isinstance(ans, dict) or not isinstance(ans.get("ok"), bool):
        raise BrokerError("answer is not a broker answer")
    if not ans["ok"]:
        err = ans.get("error")
        rc, reason = ans.get("rc"), ans.get("reason")
        ok_rc = isinstance(rc, int) and not isinstance(rc, bool) and isinstance(reason, str)
        raise BrokerError(err if isinstance(err, str) else "refused",
                          rc if ok_rc else None, reason if ok_rc else None)
    return ans
