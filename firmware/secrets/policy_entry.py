# A vendor-signed PCR policy delivered to the phone (docs/sealing.md "Signed policy over SMP"):
# the file `python -m host_tools.update --entry-out FILE` writes and the phone receives over SMP
# file management (docs/flashing.md). Canonical JSON:
#   {"format": 1, "type": "signed-pcr-policy", "board", "pcr_bank", "pcrs",
#    "key": <TPMT_PUBLIC hex of the policy key>, "policy_ref": <hex>, "nv_name": <hex>,
#    "entry": {"image_version", "anti_rollback", "expected", "components", "approved", "r", "s"}}
# `entry` is one element of the store's authorized.signed[] (firmware/secrets/store.py). Nothing in
# it names a device: the approved policy is PolicyPCR(the predicted PCRs) + PolicyNV(the
# anti-rollback index's Name, bit v clear), and the index's Name is the same on every device
# (firmware/secrets/rollback.py), so one file serves the fleet.
#
# The root broker checks it against the store before writing it (check): form, board, PCR set and
# bank, the same policy key, policyRef and NV index as the store's, an approved digest that
# recomputes from the entry's PCRs, a version not older than the store's newest, and the
# signature (the TPM's TPM2_VerifySignature through `verify`). The TPM would refuse a bad entry
# anyway when the phone runs PolicyAuthorize (TPM 2.0 Part 3 §23.16: the ticket must come from
# VerifySignature of aHash = H(approvedPolicy || policyRef) with the key named keySign); checking
# here keeps a bad file from displacing a good entry and says why at once.

import json

from firmware.secrets import flows, store

FORMAT = 1
TYPE = "signed-pcr-policy"
MAX_FILE = 16 * 1024
FIELDS = ("format", "type", "board", "pcr_bank", "pcrs", "key", "policy_ref", "nv_name", "entry")
ENTRY_FIELDS = ("image_version", "anti_rollback", "expected", "components", "approved", "r", "s")


class PolicyRefused(ValueError):
    """The delivered policy is not accepted; `reason` says what is wrong. `rc` (MGMT_ERR EINVAL)
    lets the broker send the reason back like a slot refusal."""

    rc = 3

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def parse(data):
    """The file's dict, shape-checked; PolicyRefused otherwise."""
    if len(data) > MAX_FILE:
        raise PolicyRefused("policy file of %d bytes (at most %d)" % (len(data), MAX_FILE))
    try:
        doc = json.loads(bytes(data).decode("utf-8"))
    except (ValueError, UnicodeError):
        raise PolicyRefused("policy file is not UTF-8 JSON")
    if not isinstance(doc, dict):
        raise PolicyRefused("policy file is not a JSON object")
    for k in FIELDS:
        if k not in doc:
            raise PolicyRefused("policy file: missing field %s" % k)
    for k in doc:
        if k not in FIELDS:
            raise PolicyRefused("policy file: unexpected field %s" % k)
    if doc["format"] != FORMAT or doc["type"] != TYPE:
        raise PolicyRefused("policy file: not a format %d %s file" % (FORMAT, TYPE))
    e = doc["entry"]
    if not isinstance(e, dict) or sorted(e.keys()) != sorted(ENTRY_FIELDS):
        raise PolicyRefused("policy file: entry must have exactly %s" % ", ".join(ENTRY_FIELDS))
    return doc


def _hex_field(doc, key):
    v = doc[key]
    if not isinstance(v, str):
        raise PolicyRefused("policy file: %s must be hex" % key)
    return v.lower()


def with_entry(meta, entry):
    """The store metadata with `entry` added (replacing one of the same anti-rollback version;
    every other entry kept), the new image as the reference the diagnosis compares against.
    Validated (store.validate names the bad field)."""
    new = json.loads(json.dumps(meta))
    a = new["authorized"]
    signed = [s for s in a["signed"] if s["anti_rollback"] != entry["anti_rollback"]]
    signed.append(json.loads(json.dumps(entry)))
    a["signed"] = sorted(signed, key=lambda s: s["anti_rollback"])
    new["image_version"] = entry["image_version"]
    new["expected"] = entry["expected"]
    new["components"] = entry["components"]
    store.validate(new)
    return new


def check(meta, doc, verify):
    """The store metadata with the delivered entry in it, after every check against `meta` (the
    device's store); PolicyRefused naming the first failure. `verify(key_public, approved,
    policy_ref, r, s)` -> True when the signature verifies (the broker: the TPM)."""
    if meta.get("policy") != store.POLICY_AUTHORIZED:
        raise PolicyRefused("this device is sealed with policy %r (to one image): a signed policy "
                            "cannot apply; re-provision with --policy authorized" % meta.get("policy"))
    a = meta["authorized"]
    if doc["board"] != meta["board"]:
        raise PolicyRefused("policy is for board %r, this is %r" % (doc["board"], meta["board"]))
    if doc["pcr_bank"] != meta["pcr_bank"] or doc["pcrs"] != meta["pcrs"]:
        raise PolicyRefused("policy seals PCRs %r (%s); this device's store uses %r (%s)"
                            % (doc["pcrs"], doc["pcr_bank"], meta["pcrs"], meta["pcr_bank"]))
    if _hex_field(doc, "key") != a["key"].lower():
        raise PolicyRefused("policy is signed for another policy key than this device's objects")
    if _hex_field(doc, "policy_ref") != a["policy_ref"].lower():
        raise PolicyRefused("policy has another policyRef than this device's objects")
    if _hex_field(doc, "nv_name") != a["nv_name"].lower():
        raise PolicyRefused("policy is bound to another anti-rollback NV index than this device's")
    entry = doc["entry"]
    try:
        new = with_entry(meta, entry)  # validates every field of the entry
    except store.ParseError as e:
        raise PolicyRefused("policy entry: %s" % e)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise PolicyRefused("policy entry is malformed (%s)" % e.__class__.__name__)
    v = entry["anti_rollback"]
    newest = max([s["anti_rollback"] for s in a["signed"]] + [0])
    if v < newest:
        raise PolicyRefused("policy version %d is older than this device's newest signed policy "
                            "(%d): that would be a downgrade" % (v, newest))
    expected = dict((int(k), bytes.fromhex(h)) for k, h in entry["expected"].items())
    approved = flows.approved_policy(expected, bytes.fromhex(a["nv_name"]), v, meta["pcr_bank"])
    if approved.hex() != entry["approved"].lower():
        raise PolicyRefused("policy entry's approved digest does not match its PCRs and version")
    if not verify(bytes.fromhex(a["key"]), approved, bytes.fromhex(a["policy_ref"]),
                  bytes.fromhex(entry["r"]), bytes.fromhex(entry["s"])):
        raise PolicyRefused("policy signature does not verify with this device's policy key")
    return new


def tpm_verify(tpm):
    """`verify` for check(): TPM2_VerifySignature (Part 3 §20.1) of the ECDSA signature over
    H(approved || policyRef) with the store's key loaded as an external public key."""
    def verify(key_public, approved, policy_ref, r, s):
        try:
            flows.verify_signed(tpm, key_public, approved, policy_ref, r, s)
        except Exception:  # noqa: BLE001  TPM_RC_SIGNATURE and friends: not verified
            return False
        return True
    return verify


def install(path, data, verify):
    """Check the delivered file `data` against the store on `path` (the data partition) and write
    the store with the entry added (firmware/secrets/store_write.py). -> the new entry."""
    from firmware.secrets import store_write
    doc = parse(data)
    try:
        meta = store.read_file(path)
    except (OSError, store.ParseError) as e:
        raise PolicyRefused("no sealed store to add the policy to: %s" % e)
    new = check(meta, doc, verify)
    store_write.write(path, new)
    return doc["entry"]
