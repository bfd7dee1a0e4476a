# TPMT_PUBLIC (Part 2 §12.2.4): building key templates, parsing public areas and computing object
# Names (Part 1 §16: Name = nameAlg || H_nameAlg(TPMT_PUBLIC)).

from firmware import compat
from firmware.errors import ParseError
from firmware.tcg_alg import HASH_ALG_NAMES
from firmware.tpm import constants as C
from firmware.tpm.marshal import Reader, Writer
from firmware.tpm.structures import SCHEME, SYM_DEF

AES128_CFB = (C.TPM_ALG_AES, 128, C.TPM_ALG_CFB)

# TCG "TPM 2.0 Provisioning Guidance" §7.5.1 / EK Credential Profile 2.5 template L-2 style
# attributes for a storage root key: restricted decryption key, created inside the TPM, usable with
# an empty auth value; noDA so SRK use never counts against the dictionary-attack lockout.
SRK_ATTRIBUTES = (C.TPMA_OBJECT_FIXEDTPM | C.TPMA_OBJECT_FIXEDPARENT
                  | C.TPMA_OBJECT_SENSITIVEDATAORIGIN | C.TPMA_OBJECT_USERWITHAUTH
                  | C.TPMA_OBJECT_NODA | C.TPMA_OBJECT_RESTRICTED | C.TPMA_OBJECT_DECRYPT)

# Attestation key: a restricted signing key (it signs only TPM-generated data such as quotes).
AK_ATTRIBUTES = (C.TPMA_OBJECT_FIXEDTPM | C.TPMA_OBJECT_FIXEDPARENT
                 | C.TPMA_OBJECT_SENSITIVEDATAORIGIN | C.TPMA_OBJECT_USERWITHAUTH
                 | C.TPMA_OBJECT_RESTRICTED | C.TPMA_OBJECT_SIGN_ENCRYPT)


def ecc_template(attributes, symmetric=None, scheme=None, name_alg=C.TPM_ALG_SHA256,
                 curve=C.TPM_ECC_NIST_P256, auth_policy=b"", unique_x=b"", unique_y=b""):
    """Marshalled TPMT_PUBLIC for an ECC key (TPMS_ECC_PARMS, Part 2 §12.2.3.6)."""
    w = Writer()
    w.u16(C.TPM_ALG_ECC).u16(name_alg).u32(attributes).tpm2b(auth_policy)
    SYM_DEF.write(w, symmetric)
    SCHEME.write(w, scheme)
    w.u16(curve)
    SCHEME.write(w, None)  # kdf: TPM_ALG_NULL
    w.tpm2b(unique_x).tpm2b(unique_y)
    return w.bytes()


def srk_template_ecc():
    """ECC P-256 storage key: AES-128-CFB for its children, no signing scheme."""
    return ecc_template(SRK_ATTRIBUTES, symmetric=AES128_CFB)


def ak_template_ecc():
    """ECC P-256 restricted signing key with ECDSA-SHA256 (for TPM2_Quote)."""
    return ecc_template(AK_ATTRIBUTES, scheme=(C.TPM_ALG_ECDSA, C.TPM_ALG_SHA256))


# An outside verification key (loaded with LoadExternal: never fixedTPM): sign only, so the TPM
# uses it to check signatures and nothing else.
VERIFY_KEY_ATTRIBUTES = C.TPMA_OBJECT_USERWITHAUTH | C.TPMA_OBJECT_SIGN_ENCRYPT


def ecc_verify_key_template(x, y):
    """TPMT_PUBLIC of an external ECC P-256 ECDSA-SHA256 public key (x, y: 32-byte coordinates)."""
    if len(x) != 32 or len(y) != 32:
        raise ValueError("P-256 coordinates must be 32 bytes each, got %d and %d" % (len(x), len(y)))
    return ecc_template(VERIFY_KEY_ATTRIBUTES, scheme=(C.TPM_ALG_ECDSA, C.TPM_ALG_SHA256),
                        unique_x=x, unique_y=y)


def sealed_template(auth_policy, with_auth_value=False, name_alg=C.TPM_ALG_SHA256):
    """TPMT_PUBLIC for a sealed data object (KEYEDHASH with a NULL scheme, Part 1 §27.3).

    With a policy, userWithAuth is CLEAR so the auth value alone can never unseal (it would bypass
    the PCR policy); the PIN is then demanded by PolicyAuthValue inside the policy instead.
    `with_auth_value` only matters without a policy (plain password/HMAC unseal)."""
    attrs = C.TPMA_OBJECT_FIXEDTPM | C.TPMA_OBJECT_FIXEDPARENT
    if not auth_policy or with_auth_value:
        attrs |= C.TPMA_OBJECT_USERWITHAUTH
    if auth_policy:
        attrs &= ~C.TPMA_OBJECT_USERWITHAUTH
    w = Writer()
    w.u16(C.TPM_ALG_KEYEDHASH).u16(name_alg).u32(attrs).tpm2b(auth_policy)
    SCHEME.write(w, None)
    w.tpm2b(b"")  # unique: the TPM fills in H(seedValue || data)
    return w.bytes()


def parse_public(data, base=0):
    """Parse a TPMT_PUBLIC into a dict (type, nameAlg, objectAttributes, authPolicy, and per type:
    symmetric, scheme, curveID/kdf/x/y, keyBits/exponent/n, unique). Rejects trailing bytes."""
    r = Reader(data, base)
    out = {"type": r.u16("type"), "nameAlg": r.u16("nameAlg"),
           "objectAttributes": r.u32("objectAttributes"), "authPolicy": r.tpm2b("authPolicy", 64)}
    t = out["type"]
    if t == C.TPM_ALG_ECC:
        out["symmetric"] = SYM_DEF.read(r, "parameters.symmetric")
        out["scheme"] = SCHEME.read(r, "parameters.scheme")
        out["curveID"] = r.u16("parameters.curveID")
        out["kdf"] = SCHEME.read(r, "parameters.kdf")
        out["x"] = r.tpm2b("unique.x", 66)
        out["y"] = r.tpm2b("unique.y", 66)
    elif t == C.TPM_ALG_RSA:
        out["symmetric"] = SYM_DEF.read(r, "parameters.symmetric")
        out["scheme"] = SCHEME.read(r, "parameters.scheme")
        out["keyBits"] = r.u16("parameters.keyBits")
        out["exponent"] = r.u32("parameters.exponent") or 65537
        out["n"] = r.tpm2b("unique.rsa", 512)
    elif t == C.TPM_ALG_KEYEDHASH:
        scheme = r.u16("parameters.scheme")
        out["scheme"] = None
        if scheme == C.TPM_ALG_HMAC:
            out["scheme"] = (scheme, r.u16("parameters.details.hashAlg"))
        elif scheme == C.TPM_ALG_XOR:
            out["scheme"] = (scheme, r.u16("parameters.details.hashAlg"), r.u16("parameters.details.kdf"))
        elif scheme != C.TPM_ALG_NULL:
            raise ParseError("unknown keyedhash scheme 0x%04x" % scheme, offset=r.offset - 2,
                             field="parameters.scheme")
        out["unique"] = r.tpm2b("unique.keyedHash", 64)
    elif t == C.TPM_ALG_SYMCIPHER:
        out["symmetric"] = SYM_DEF.read(r, "parameters.sym")
        out["unique"] = r.tpm2b("unique.sym", 64)
    else:
        raise ParseError("unknown object type 0x%04x" % t, offset=base, field="type")
    r.done("TPMT_PUBLIC")
    return out


def object_name(public_bytes):
    """Name of an object from its marshalled TPMT_PUBLIC (Part 1 §16)."""
    if len(public_bytes) < 4:
        raise ParseError("TPMT_PUBLIC too short for a Name", offset=0, field="nameAlg")
    alg = int.from_bytes(public_bytes[2:4], "big")
    name = HASH_ALG_NAMES.get(alg)
    if name is None or name not in compat.DIGEST_SIZES:
        # Part 1 §16: the Name hashes the public area with nameAlg; one this runtime cannot hash
        # (SM3_256) is refused as input, not raised as UnsupportedAlgorithm (tests/fuzz)
        raise ParseError("unknown or unsupported nameAlg 0x%04x" % alg, offset=2, field="nameAlg")
    return public_bytes[2:4] + compat.digest(name, public_bytes)
