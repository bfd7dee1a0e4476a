"""Provisioning against a TPM (any transport): SRK, dictionary-attack parameters, anti-rollback
field, sealed objects, store metadata. No files or processes here (see __main__.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric import ec

from firmware.tpm import constants as C
from firmware.tpm import errors as E
from firmware.tpm.errors import TpmError
from host_tools.provision import _fw
from host_tools.provision._fw import TpmClient as Tpm
from host_tools.provision.hierarchy import HierarchyAuth
from host_tools.provision.reference import Reference
from host_tools.update import policy_key

SIP_ACCOUNT = "sip-account"
USER_SECRET = "user-secret"
MAX_SEALED = 128  # MAX_SYM_DATA: the most TPM2_Create seals in one object (Part 2 §10.4.4)
POLICY_REF = b"trusted-phone/sealed-credentials/v1"  # fixed: it is part of every object's policy
# The SRK stays in the TPM (TPM2_EvictControl, Part 3 §28.5) at the TCG's SRK handle (TCG TPM v2.0
# Provisioning Guidance §7.8): the device cannot CreatePrimary under an owner whose authorization
# it does not know, and needs none to use a persistent key whose own authValue is empty.
SRK_HANDLE = 0x81000001


@dataclass
class DaParameters:
    """TPM2_DictionaryAttackParameters (Part 3 §25.3)."""
    max_tries: int = 5
    recovery_time: int = 600  # seconds per forgiven failure
    lockout_recovery: int = 86400  # after a failed lockoutAuth


class ProvisionError(RuntimeError):
    """Provisioning cannot proceed (the message says why; it never contains a secret)."""


def set_da(tpm: Tpm, da: DaParameters, lockout_auth: bytes = b"") -> None:
    tpm.dictionary_attack_parameters(da.max_tries, da.recovery_time, da.lockout_recovery,
                                     lockout_auth=lockout_auth)


def _migrate_legacy_index(tpm: Tpm, index: int, info: dict[str, Any], owner_auth: bytes) -> int:
    """An owner-created anti-rollback index (devices provisioned before it became undeletable):
    keep its revocation bits, delete it with ownerAuth and re-define it under the platform below;
    -> the bits to set again."""
    bits = tpm.nv_read_u64(index) if info["parsed"]["attributes"] & C.TPMA_NV_WRITTEN else 0
    tpm.nv_undefine_space(index, owner_auth=owner_auth)
    return int(bits)


def ensure_rollback_index(tpm: Tpm, index: int, owner_auth: bytes = b"", platform_auth: bytes = b"") -> bytes:
    """Define the anti-rollback bit field if missing (an existing one keeps its revocations) and
    write it once so its Name is final; -> that Name. It is defined under TPM_RH_PLATFORM (the
    provisioning station's platformAuth) with TPMA_NV_POLICY_DELETE: see firmware/secrets/rollback.py."""
    keep = 0
    try:
        info = tpm.nv_read_public(index)
    except TpmError as e:
        if e.base != E.TPM_RC_HANDLE:
            raise
        info = None
    if info is not None and info["parsed"]["attributes"] & ~C.TPMA_NV_WRITTEN == _fw.ROLLBACK_LEGACY_ATTRIBUTES:
        keep = _migrate_legacy_index(tpm, index, info, owner_auth)
        info = None
    if info is None:
        tpm.nv_define_space(_fw.rollback_public_area(index), hierarchy=C.TPM_RH_PLATFORM,
                            owner_auth=platform_auth)
    elif info["parsed"]["attributes"] & ~C.TPMA_NV_WRITTEN != _fw.ROLLBACK_ATTRIBUTES:
        raise ProvisionError(f"NV index 0x{index:08x} exists with other attributes; "
                             "refusing to reuse it")
    tpm.nv_set_bits(index, keep)
    name: bytes = tpm.nv_read_public(index)["name"]
    if name != _fw.rollback_written_name(index):
        raise ProvisionError(f"NV index 0x{index:08x} has an unexpected Name")
    return name


def signed_entry(key: ec.EllipticCurvePrivateKey, ref: Reference, nv_name: bytes,
                 policy_ref: bytes = POLICY_REF) -> dict[str, Any]:
    """The vendor-signed approved policy of one image (store metadata "authorized.signed[]")."""
    approved = _fw.approved_policy(ref.expected, nv_name, ref.anti_rollback, ref.bank)
    r, s = policy_key.sign(key, approved, policy_ref)
    return {"image_version": ref.image_version, "anti_rollback": ref.anti_rollback,
            "expected": _fw.pcr_hex(ref.expected), "components": ref.components_meta(),
            "approved": approved.hex(), "r": r.hex(), "s": s.hex()}


def provision(tpm: Tpm, ref: Reference, secrets: dict[str, bytes], pin: bytes | None,
              mode: str = _fw.POLICY_PCR, key: ec.EllipticCurvePrivateKey | None = None,
              nv_index: int = _fw.ROLLBACK_INDEX, da: DaParameters | None = None,
              created: str | None = None, auth: HierarchyAuth | None = None,
              enroll: Callable[[Tpm, int, HierarchyAuth], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Seal *secrets* ({object name: bytes}; USER_SECRET is bound to *pin*) and return the store
    metadata. Secrets go to the TPM inside a salted session with parameter encryption. *auth*:
    the hierarchy authorizations the TPM expects now (hierarchy.current_auth). *enroll*(tpm,
    SRK handle, auth) -> the "attestation" record (identity.enroll: AK + its certificate)."""
    auth = auth or HierarchyAuth()
    if mode not in (_fw.POLICY_PCR, _fw.POLICY_AUTHORIZED):
        raise ProvisionError(f"policy mode {mode!r} is not pcr or authorized")
    if mode == _fw.POLICY_AUTHORIZED and key is None:
        raise ProvisionError("authorized policy needs the vendor policy-signing key")
    for name, value in secrets.items():
        if not 0 < len(value) <= MAX_SEALED:
            raise ProvisionError(f"secret {name} must be 1..{MAX_SEALED} bytes, not {len(value)}")
    if USER_SECRET in secrets and not pin:
        raise ProvisionError("the user secret needs a PIN")
    set_da(tpm, da or DaParameters(), auth.lockout)
    meta: dict[str, Any] = {
        "format": _fw.STORE_FORMAT, "board": ref.board,
        "created": created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "image_version": ref.image_version, "pcr_bank": ref.bank, "pcrs": ref.pcrs,
        "expected": _fw.pcr_hex(ref.expected), "components": ref.components_meta(),
        "policy": mode, "objects": []}
    key_public = b""
    if mode == _fw.POLICY_AUTHORIZED:
        if key is None:
            raise ProvisionError("authorized policy needs the vendor policy-signing key")
        nv_name = ensure_rollback_index(tpm, nv_index, auth.owner, auth.platform)
        key_public = policy_key.tpm_public(key)
        meta["authorized"] = {"key": key_public.hex(), "policy_ref": POLICY_REF.hex(),
                              "nv_index": nv_index, "nv_name": nv_name.hex(),
                              "signed": [signed_entry(key, ref, nv_name)]}
    srk, srk_name = persist_srk(tpm, auth.owner)
    meta["srk"] = {"handle": SRK_HANDLE, "name": srk_name.hex()}
    try:
        if enroll is not None:
            meta["attestation"] = enroll(tpm, srk, auth)
        for name in sorted(secrets):
            with_pin = name == USER_SECRET
            pol = _fw.object_policy(mode, with_pin, expected=ref.expected, key_public=key_public,
                                      policy_ref=POLICY_REF, bank=ref.bank)
            # Salted HMAC session with the decrypt attribute: TPM2B_SENSITIVE_CREATE (PIN and
            # secret) crosses the interface encrypted (Part 1 §21).
            hs = tpm.start_auth_session(C.TPM_SE_HMAC, salt_key=srk, symmetric=_fw.AES128_CFB,
                                        attributes=C.TPMA_SESSION_DECRYPT)
            try:
                blob = tpm.create(srk, _fw.sealed_template(pol), secrets[name],
                                  pin if with_pin and pin else b"", session=hs)
            finally:
                tpm.flush_context(hs.handle)
            attrs = _fw.parse_public(blob["public"])["objectAttributes"]
            if attrs & C.TPMA_OBJECT_USERWITHAUTH:
                raise ProvisionError(f"{name}: sealed with userWithAuth set")  # fail closed
            meta["objects"].append({"name": name, "pin": with_pin, "public": blob["public"].hex(),
                                    "private": blob["private"].hex()})
    finally:
        tpm.flush_context(srk)
    _fw.validate(meta)
    return meta


def persist_srk(tpm: Tpm, owner_auth: bytes) -> tuple[int, bytes]:
    """The SRK (the same template, so the same key, as the device's sealed blobs need) made
    persistent at SRK_HANDLE, replacing another object there; -> (a transient handle of it to
    seal with and flush, its Name)."""
    primary = tpm.create_primary(C.TPM_RH_OWNER, _fw.srk_template_ecc(), hierarchy_auth=owner_auth)
    try:
        old = tpm.read_public(SRK_HANDLE)["name"]
    except TpmError as e:
        if e.base != E.TPM_RC_HANDLE:
            raise
        old = None
    if old is not None and old != primary["name"]:
        tpm.evict_control(SRK_HANDLE, SRK_HANDLE, auth=owner_auth)  # Part 3 §28.5: removes it
    if old != primary["name"]:
        tpm.evict_control(primary["handle"], SRK_HANDLE, auth=owner_auth)
    return primary["handle"], bytes(primary["name"])
