"""Secrets to seal: from a provisioning input file or freshly generated.

Input file (JSON, read once, never copied)::

    {"sip-account": {"username": "phone1", "password": "..."},
     "user-secret": "<text>"  or  {"hex": "<hex>"}}

The SIP account is sealed as compact JSON ``{"password":..,"username":..}`` (at most 128 bytes).
Generated secrets come from the OS RNG and are never written anywhere but into the TPM.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from host_tools.provision.core import MAX_SEALED, SIP_ACCOUNT, USER_SECRET, ProvisionError


def sip_blob(username: str, password: str) -> bytes:
    data = json.dumps({"password": password, "username": username}, sort_keys=True,
                      separators=(",", ":")).encode()
    if len(data) > MAX_SEALED:
        raise ProvisionError(f"SIP account too long to seal ({len(data)} > {MAX_SEALED} bytes)")
    return data


def generate(account: str) -> dict[str, bytes]:
    password = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
    return {SIP_ACCOUNT: sip_blob(account, password), USER_SECRET: os.urandom(32)}


def read(path: Path) -> dict[str, bytes]:
    try:
        doc = json.loads(path.read_bytes())
    except OSError as e:
        raise ProvisionError(f"{path}: {e.strerror}") from None
    except ValueError:
        raise ProvisionError(f"{path}: not JSON") from None  # no excerpt: it holds secrets
    if not isinstance(doc, dict):
        raise ProvisionError(f"{path}: not a JSON object")
    out: dict[str, bytes] = {}
    sip = doc.get(SIP_ACCOUNT)
    if sip is not None:
        if (not isinstance(sip, dict) or not isinstance(sip.get("username"), str)
                or not isinstance(sip.get("password"), str)):
            raise ProvisionError(f"{path}: {SIP_ACCOUNT} needs username and password strings")
        out[SIP_ACCOUNT] = sip_blob(sip["username"], sip["password"])
    user = doc.get(USER_SECRET)
    if user is not None:
        if isinstance(user, str):
            out[USER_SECRET] = user.encode()
        elif isinstance(user, dict) and isinstance(user.get("hex"), str):
            try:
                out[USER_SECRET] = bytes.fromhex(user["hex"])
            except ValueError:
                raise ProvisionError(f"{path}: {USER_SECRET}.hex is not hex") from None
        else:
            raise ProvisionError(f"{path}: {USER_SECRET} must be a string or {{\"hex\": ...}}")
    unknown = sorted(set(doc) - {SIP_ACCOUNT, USER_SECRET})
    if unknown:
        raise ProvisionError(f"{path}: unknown keys {', '.join(unknown)}")
    if not out:
        raise ProvisionError(f"{path}: no secrets")
    return out
