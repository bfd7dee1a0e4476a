"""The signed PCR policy file a phone receives over SMP (docs/sealing.md "Signed policy over SMP";
format: firmware/secrets/policy_entry.py). Built without any device's store: of the store's
metadata, only the anti-rollback index's Name enters the signed policy (PolicyNV), and that Name
is the same on every device provisioned with the index (firmware/secrets/rollback.py
written_name; host_tools.provision refuses a device whose index has another Name). The board, PCR
set and bank come from the reference; the key and policyRef are the vendor's. The device checks
each against its store before adding the entry."""

from __future__ import annotations

import json
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric import ec

from firmware.secrets import policy_entry as _pe
from host_tools.provision import _fw
from host_tools.provision.core import POLICY_REF, signed_entry
from host_tools.provision.reference import Reference
from host_tools.update import policy_key


def build(ref: Reference, key: ec.EllipticCurvePrivateKey, nv_index: int = _fw.ROLLBACK_INDEX) -> dict[str, Any]:
    nv_name = _fw.rollback_written_name(nv_index)
    entry = signed_entry(key, ref, nv_name)
    if not policy_key.verify(key.public_key(), bytes.fromhex(entry["approved"]), POLICY_REF,
                             bytes.fromhex(entry["r"]), bytes.fromhex(entry["s"])):
        raise ValueError("the signed policy does not verify")  # cannot happen unless broken
    return {"format": _pe.FORMAT, "type": _pe.TYPE, "board": ref.board, "pcr_bank": ref.bank,
            "pcrs": list(ref.pcrs), "key": policy_key.tpm_public(key).hex(),
            "policy_ref": POLICY_REF.hex(), "nv_name": nv_name.hex(), "entry": entry}


def dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def device_name(doc: dict[str, Any]) -> str:
    """Where the phone takes it over SMP file management (firmware/update/policy_upload.py)."""
    return f"/policy/{doc['entry']['image_version']}.json"


with_entry = cast("Any", _pe.with_entry)
