"""The TPM's hierarchy authorizations and the vendor's provisioning record (issue 9 part 2).

After provisioning, ownerAuth, endorsementAuth and lockoutAuth are 32 random bytes each (TPM 2.0
Part 3 §24.8 TPM2_HierarchyChangeAuth), so nobody holding the device's TPM can reset the
dictionary-attack lockout (§25.2), clear the TPM (§24.6), delete owner NV indices (§31.4) or
change a hierarchy's authorization. They are kept only in the provisioning record on the vendor's
host (build/devices/NAME/provisioning-record.json, mode 0600): never in the image, the device's
flash, a log, the console or an exception text. Re-provisioning reads them back from the record.

Which authorization the TPM expects now is read from TPMA_PERMANENT (Part 2 §8.6:
ownerAuthSet, endorsementAuthSet, lockoutAuthSet), so a run interrupted between writing the
record and changing the TPM is finished by the next one.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.tpm import constants as C
from host_tools.provision import _fw
from host_tools.provision._fw import TpmClient as Tpm

RECORD_NAME = "provisioning-record.json"
RECORD_FORMAT = 1
AUTH_SIZE = 32  # the size of a SHA-256 digest: the most a TPM2B_AUTH carries for sha256 (Part 2 §10.3.3)
HIERARCHIES = {"owner": C.TPM_RH_OWNER, "endorsement": C.TPM_RH_ENDORSEMENT, "lockout": C.TPM_RH_LOCKOUT}
_AUTH_SET = {"owner": C.TPMA_PERMANENT_OWNERAUTHSET, "endorsement": C.TPMA_PERMANENT_ENDORSEMENTAUTHSET,
             "lockout": C.TPMA_PERMANENT_LOCKOUTAUTHSET}


class RecordError(RuntimeError):
    """The provisioning record is missing, unreadable or does not fit the TPM (no secret inside)."""


@dataclass
class HierarchyAuth:
    """Authorization values of the owner, endorsement and lockout hierarchies (platform: empty,
    the vendor's station is the platform at provisioning; the device's loader disables it)."""
    owner: bytes = b""
    endorsement: bytes = b""
    lockout: bytes = b""
    platform: bytes = b""

    def get(self, name: str) -> bytes:
        value: bytes = getattr(self, name)
        return value

    def __repr__(self) -> str:  # never print the values
        return "HierarchyAuth(<%s>)" % ", ".join(n for n in HIERARCHIES if self.get(n))

    @classmethod
    def generate(cls) -> "HierarchyAuth":
        return cls(*(secrets.token_bytes(AUTH_SIZE) for _ in HIERARCHIES))


def record_path(device_dir: Path) -> Path:
    return device_dir / RECORD_NAME


def read_record(path: Path) -> HierarchyAuth | None:
    """The record's authorizations, None when there is no record. A record readable by others
    is refused: it holds the keys to the device's TPM."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if st.st_mode & 0o077:
        raise RecordError(f"{path} is readable by group or others (mode {st.st_mode & 0o777:o}): "
                          "chmod 600 it and rotate the device's TPM authorizations")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RecordError(f"{path}: not a provisioning record ({e.__class__.__name__})") from None
    try:
        if doc["format"] != RECORD_FORMAT:
            raise RecordError(f"{path}: record format {doc['format']!r} is not {RECORD_FORMAT}")
        h = doc["hierarchy_auth"]
        values = [bytes.fromhex(h[n]) for n in HIERARCHIES]
    except (KeyError, TypeError, ValueError):
        raise RecordError(f"{path}: hierarchy_auth must hold owner, endorsement and lockout "
                          f"as {AUTH_SIZE}-byte hex strings") from None
    if any(len(v) != AUTH_SIZE for v in values):
        raise RecordError(f"{path}: hierarchy_auth values must be {AUTH_SIZE} bytes")
    return HierarchyAuth(*values)


def write_record(path: Path, device: str, auth: HierarchyAuth, extra: dict[str, Any] | None = None) -> None:
    """Write the record with mode 0600 from its creation on (never a moment world-readable)."""
    doc: dict[str, Any] = {"format": RECORD_FORMAT, "device": device,
                           "hierarchy_auth": {n: auth.get(n).hex() for n in HIERARCHIES}}
    doc.update(extra or {})
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def auth_set(tpm: Tpm) -> dict[str, bool]:
    """Which hierarchies have a non-empty authorization now (TPMA_PERMANENT, Part 2 §8.6)."""
    perm: int = tpm.properties(C.TPM_PT_PERMANENT, 1)[C.TPM_PT_PERMANENT]
    return {n: bool(perm & bit) for n, bit in _AUTH_SET.items()}


def current_auth(tpm: Tpm, record: HierarchyAuth | None, where: Path) -> HierarchyAuth:
    """What the TPM expects now: the record's value where TPMA_PERMANENT says an authorization
    is set, empty elsewhere. A set authorization with no record: RecordError."""
    is_set = auth_set(tpm)
    if record is None:
        if any(is_set.values()):
            raise RecordError(
                f"the TPM's {', '.join(n for n, v in is_set.items() if v)} authorization is set but "
                f"there is no provisioning record at {where}: only the vendor's record can "
                "re-provision this TPM (restore it, or start from a fresh TPM state)")
        return HierarchyAuth()
    return HierarchyAuth(*(record.get(n) if is_set[n] else b"" for n in HIERARCHIES))


def change_auth(tpm: Tpm, current: HierarchyAuth, new: HierarchyAuth) -> None:
    """TPM2_HierarchyChangeAuth of owner, endorsement and lockout to `new`, each in a salted
    session with parameter encryption (the new value never crosses the interface in clear)."""
    srk = tpm.create_primary(C.TPM_RH_OWNER, _fw.srk_template_ecc(), hierarchy_auth=current.owner)
    try:
        for name, handle in HIERARCHIES.items():
            if current.get(name) == new.get(name):
                continue
            hs = tpm.start_auth_session(C.TPM_SE_HMAC, salt_key=srk["handle"], symmetric=_fw.AES128_CFB,
                                        attributes=C.TPMA_SESSION_DECRYPT, salt_public=srk["parsed"])
            try:
                tpm.hierarchy_change_auth(handle, new.get(name), auth=current.get(name), encrypt_session=hs)
            finally:
                tpm.flush_context(hs.handle)
    finally:
        tpm.flush_context(srk["handle"])
