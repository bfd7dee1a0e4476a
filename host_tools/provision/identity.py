"""Device identity rooted in the TPM (issue 10 part 1): enrollment of an attestation key.

1. The EK certificate is read from the TPM's NV (TCG EK Credential Profile: RSA 2048 EK
   certificate at index 0x01c00002) and must chain to a known manufacturer CA
   (manufacturer.known_cas): signatures, validity, CA flags. Otherwise: no AK certificate.
2. The AK is created under the SRK (owner hierarchy; see AK_HANDLE) from firmware/tpm/public.py's
   template: ECC P-256, ECDSA-SHA256, restricted signing, fixedTPM|fixedParent|
   sensitiveDataOrigin|userWithAuth, empty authValue, and made persistent (TPM2_EvictControl).
3. The host makes a credential (credential.py, Part 1 §24) for the EK *from the certificate*
   (never a key the TPM reports) bound to the AK's Name; the TPM must return it with
   TPM2_ActivateCredential (Part 3 §12.5), authorizing the EK with its policy
   PolicySecret(TPM_RH_ENDORSEMENT) (Part 3 §23.4) using the endorsement authorization from the
   provisioning record, proven in a salted HMAC session (the value never crosses the interface).
   A TPM without that EK's private key, or without an object of that Name, fails (its TPM
   error code is named). Only then does the device CA issue the AK certificate.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.tpm import constants as C
from firmware.tpm import errors as E
from firmware.tpm.errors import TpmError
from host_tools.provision import credential, device_ca
from host_tools.provision._fw import TpmClient as Tpm
from host_tools.provision._fw import ak_template_ecc

# TCG EK Credential Profile 2.x §2.2.1.4 (low range): RSA 2048 EK certificate NV index, and the
# TCG Provisioning Guidance / Registry of Reserved Handles persistent handle of the RSA EK
# (swtpm_setup puts it there; template L-1).
EK_CERT_INDEX = 0x01C00002
EK_HANDLE = 0x81010001
# Persistent handle of the AK. The TCG handle registry reserves 0x81000000-0x8100FFFF for storage
# primaries (the SRK is 0x81000001), 0x81010000-0x8101FFFF for EKs, and 0x81020000-0x8102FFFF
# for device identity/attestation keys (TCG TPM 2.0 Keys for Device Identity and Attestation: the
# IAK). The AK is a child of the SRK (owner hierarchy): it is usable by the device with no
# hierarchy authorization (the endorsement authorization stays on the vendor's host), and a
# TPM2_Clear (new owner) removes it with the SRK, as an identity tied to this ownership should be.
AK_HANDLE = 0x81020000
CREDENTIAL_SIZE = 32
NV_CHUNK = 512  # below any TPM's TPM_PT_NV_BUFFER_MAX (1024 on swtpm)


class IdentityError(RuntimeError):
    """No AK certificate: the EK certificate does not chain to a known manufacturer CA, or the
    activation failed (the message says which, with the TPM's error; never a secret)."""


# --- EK certificate -------------------------------------------------------------------------------

def read_nv(tpm: Tpm, index: int) -> bytes:
    """The whole data of an NV index readable with its own (empty) authorization (TPMA_NV_AUTHREAD)."""
    size = tpm.nv_read_public(index)["parsed"]["dataSize"]
    out = b""
    while len(out) < size:
        n = min(NV_CHUNK, size - len(out))
        out += tpm.nv_read(index, n, len(out))
    return bytes(out)


def ek_certificate(tpm: Tpm, index: int = EK_CERT_INDEX) -> x509.Certificate:
    try:
        der = read_nv(tpm, index)
    except TpmError as e:
        if e.base == E.TPM_RC_HANDLE:
            raise IdentityError(f"the TPM has no EK certificate (NV index 0x{index:08x}): a TPM "
                                "without one from its manufacturer cannot be enrolled (a device "
                                "whose TPM state predates manufacturing: start from a fresh TPM "
                                "state, or provision with --no-attestation)") from None
        raise
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise IdentityError(f"NV index 0x{index:08x} holds no DER certificate: {e}") from None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def verify_ek_chain(cert: x509.Certificate, roots: list[x509.Certificate],
                    intermediates: list[x509.Certificate]) -> list[x509.Certificate]:
    """The chain [ek, ..., root] if `cert` chains to one of `roots` through `intermediates`
    (signatures, issuer names, CA basic constraints, validity now); IdentityError otherwise."""
    now = datetime.datetime.now(datetime.timezone.utc)
    chain = [cert]
    for _ in range(4):
        cur = chain[-1]
        if not cur.not_valid_before_utc <= now <= cur.not_valid_after_utc:
            raise IdentityError(f"certificate {cur.subject.rfc4514_string()!r} is not valid now")
        root = next((r for r in roots if _issued_by(cur, r)), None)
        if root is not None:
            _need_ca(root)
            return chain + [root]
        nxt = next((i for i in intermediates if i not in chain and _issued_by(cur, i)), None)
        if nxt is None:
            raise IdentityError(f"EK certificate does not chain to a known TPM manufacturer CA "
                                f"(issuer {cur.issuer.rfc4514_string()!r} is not one): no AK certificate")
        _need_ca(nxt)
        chain.append(nxt)
    raise IdentityError("EK certificate chain too long")


def _need_ca(cert: x509.Certificate) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise IdentityError(f"{cert.subject.rfc4514_string()!r} is not a CA certificate")


# --- AK -----------------------------------------------------------------------------------------

def create_ak(tpm: Tpm, srk: int, owner_auth: bytes, handle: int = AK_HANDLE) -> dict[str, Any]:
    """A new AK under the SRK (transient handle `srk`), persistent at `handle` (an old key there
    is evicted first); -> {handle, public (TPMT_PUBLIC bytes), name, parsed}."""
    blob = tpm.create(srk, ak_template_ecc())
    h = tpm.load(srk, blob["private"], blob["public"])
    try:
        try:
            tpm.read_public(handle)
            tpm.evict_control(handle, handle, auth=owner_auth)  # Part 3 §28.5: removes it
        except TpmError as e:
            if e.base != E.TPM_RC_HANDLE:
                raise
        tpm.evict_control(h, handle, auth=owner_auth)
    finally:
        tpm.flush_context(h)
    out: dict[str, Any] = tpm.read_public(handle)
    if out["public"] != blob["public"]:
        raise IdentityError(f"the key at 0x{handle:08x} is not the AK just created")
    out["handle"] = handle
    return out


def ak_public_key(parsed: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicNumbers(int.from_bytes(parsed["x"], "big"), int.from_bytes(parsed["y"], "big"),
                                         ec.SECP256R1()).public_key()


# --- ActivateCredential -------------------------------------------------------------------------

# The EK's authPolicy (TCG EK Credential Profile 2.5 §B.6): PolicyA = PolicySecret(TPM_RH_ENDORSEMENT)
# alone (low-range templates such as L-1, the RSA EK), or, for high-range templates (swtpm's ECC
# P-384 EK), PolicyOR(PolicyA, PolicyC) where PolicyC is the profile's PolicyAuthorizeNV branch.
EK_POLICY_C = {"sha384": bytes.fromhex("d6032ce61f2fb3c240eb3cf6a33237ef2b6a16f4293c22b455e261cffd217ad5"
                                       "b4947c2d73e63005eed2dc2b3593d165")}
_HASH_IDS = {0x000B: "sha256", 0x000C: "sha384"}


def ek_policy_branches(name_alg: int, auth_policy: bytes) -> list[bytes] | None:
    """None when the EK's authPolicy is PolicyA itself; the PolicyOR branch list [A, C] when it is
    PolicyOR(A, C); IdentityError for any other policy (fail closed: nothing else is satisfied)."""
    name = _HASH_IDS.get(name_alg)
    if name is None:
        raise IdentityError(f"EK nameAlg 0x{name_alg:04x} is not supported")
    size = hashlib.new(name).digest_size
    cc_secret, cc_or = C.TPM_CC_PolicySecret.to_bytes(4, "big"), C.TPM_CC_PolicyOR.to_bytes(4, "big")
    a = hashlib.new(name, hashlib.new(name, bytes(size) + cc_secret
                                      + C.TPM_RH_ENDORSEMENT.to_bytes(4, "big")).digest()).digest()
    if auth_policy == a:
        return None
    c = EK_POLICY_C.get(name)
    if c is not None and auth_policy == hashlib.new(name, bytes(size) + cc_or + a + c).digest():
        return [a, c]
    raise IdentityError(f"EK authPolicy {auth_policy.hex()} is neither PolicySecret(TPM_RH_ENDORSEMENT) "
                        "nor the EK profile's PolicyOR of it")


def activate(tpm: Tpm, ak_handle: int, ek_handle: int, blob: bytes, secret: bytes,
             endorsement_auth: bytes, salt_key: int, salt_public: dict[str, Any] | None = None) -> bytes:
    """TPM2_ActivateCredential of (blob, secret) with the EK at `ek_handle` (policy
    PolicySecret(TPM_RH_ENDORSEMENT), proven with `endorsement_auth` in an HMAC session salted
    with `salt_key`) for the AK at `ak_handle`; -> the credential. TpmError when the TPM refuses."""
    ek = tpm.read_public(ek_handle)["parsed"]
    branches = ek_policy_branches(ek["nameAlg"], ek["authPolicy"])
    policy = tpm.start_auth_session(C.TPM_SE_POLICY, hash_alg=ek["nameAlg"])
    try:
        hs = tpm.start_auth_session(C.TPM_SE_HMAC, salt_key=salt_key, salt_public=salt_public)
        try:
            tpm.policy_secret(policy, C.TPM_RH_ENDORSEMENT, auth=endorsement_auth, auth_session=hs)
        finally:
            tpm.flush_context(hs.handle)
        if branches is not None:
            tpm.policy_or(policy, branches)
        out: bytes = tpm.activate_credential(ak_handle, ek_handle, blob, secret, policy)
        return out
    finally:
        try:
            tpm.flush_context(policy.handle)
        except TpmError:
            pass  # a failed command may already have ended it


def enroll(tpm: Tpm, device: str, srk: int, srk_public: dict[str, Any] | None, owner_auth: bytes,
           endorsement_auth: bytes, ca: device_ca.DeviceCa, roots: list[x509.Certificate],
           intermediates: list[x509.Certificate], ek_cert_index: int = EK_CERT_INDEX,
           ek_handle: int = EK_HANDLE, ek_cert: x509.Certificate | None = None) -> dict[str, Any]:
    """The whole enrollment (module comment); -> the store's "attestation" record. `ek_cert`
    overrides the certificate read from the TPM (tests: another TPM's genuine certificate)."""
    cert = ek_cert if ek_cert is not None else ek_certificate(tpm, ek_cert_index)
    verify_ek_chain(cert, roots, intermediates)  # before anything is created in the TPM
    params = credential.ek_params(cert.public_key())
    ak = create_ak(tpm, srk, owner_auth)
    challenge = os.urandom(CREDENTIAL_SIZE)
    blob, secret = credential.make_credential(params, challenge, ak["name"])
    try:
        answer = activate(tpm, ak["handle"], ek_handle, blob, secret, endorsement_auth, srk, srk_public)
    except TpmError as e:
        if "PolicySecret" in str(e):
            raise IdentityError(f"the TPM refused the endorsement authorization ({e}): is this the "
                                "device's provisioning record? No AK certificate") from None
        raise IdentityError(f"TPM2_ActivateCredential failed ({e}): this TPM does not hold the "
                            "certified EK's private key (or the AK): no AK certificate") from None
    if not hmac.compare_digest(answer, challenge):
        raise IdentityError("TPM2_ActivateCredential returned another credential: no AK certificate")
    ak_cert = device_ca.issue_ak_cert(ca, ak_public_key(ak["parsed"]), device, ak["name"], cert)
    return {"ak_handle": ak["handle"], "ak_name": bytes(ak["name"]).hex(),
            "ak_cert": ak_cert.public_bytes(serialization.Encoding.PEM).decode(), "device_ca": ca.pem}


__all__ = ["IdentityError", "enroll", "activate", "create_ak", "ek_certificate", "verify_ek_chain",
           "read_nv", "AK_HANDLE", "EK_HANDLE", "EK_CERT_INDEX"]
