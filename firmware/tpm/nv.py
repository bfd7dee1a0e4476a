# NV index public areas (TPMS_NV_PUBLIC, Part 2 §13.5) and their Names (Part 1 §16:
# Name = nameAlg || H_nameAlg(TPMS_NV_PUBLIC)). TPMA_NV_WRITTEN is part of the public area, so an
# index's Name changes on its first write: policies naming an index (PolicyNV) must be computed
# from the written form.

from firmware import compat
from firmware.errors import ParseError
from firmware.tcg_alg import HASH_ALG_NAMES
from firmware.tpm import constants as C
from firmware.tpm.marshal import Reader, Writer

# NV indices are 0x01xxxxxx (Part 2 §7.2 TPM_HT_NV_INDEX); the TCG handle registry leaves
# 0x01000000-0x013FFFFF to the owner (higher ranges belong to platform makers and the TCG).
OWNER_INDEX_FIRST = 0x01000000
OWNER_INDEX_LAST = 0x013FFFFF


def nv_type(attributes):
    return (attributes >> C.TPMA_NV_TPM_NT_SHIFT) & 0xF


def nv_public(index, attributes, data_size, name_alg=C.TPM_ALG_SHA256, auth_policy=b""):
    """Marshalled TPMS_NV_PUBLIC."""
    if index >> 24 != C.TPM_HT_NV_INDEX:
        raise ValueError("0x%08x is not an NV index handle" % index)
    return (Writer().u32(index).u16(name_alg).u32(attributes).tpm2b(auth_policy).u16(data_size)
            .bytes())


def parse_nv_public(data, base=0):
    """TPMS_NV_PUBLIC -> dict nvIndex, nameAlg, attributes, authPolicy, dataSize (no trailing bytes)."""
    r = Reader(data, base)
    at = r.offset
    out = {"nvIndex": r.u32("nvIndex")}
    if out["nvIndex"] >> 24 != C.TPM_HT_NV_INDEX:
        raise ParseError("handle 0x%08x is not an NV index" % out["nvIndex"], offset=at, field="nvIndex")
    out["nameAlg"] = r.u16("nameAlg")
    out["attributes"] = r.u32("attributes")
    out["authPolicy"] = r.tpm2b("authPolicy", 64)
    out["dataSize"] = r.u16("dataSize")
    r.done("TPMS_NV_PUBLIC")
    return out


def nv_name(public_bytes):
    """Name of an NV index from its marshalled TPMS_NV_PUBLIC."""
    if len(public_bytes) < 6:
        raise ParseError("TPMS_NV_PUBLIC too short for a Name", offset=0, field="nameAlg")
    alg = int.from_bytes(public_bytes[4:6], "big")
    name = HASH_ALG_NAMES.get(alg)
    if name is None or name not in compat.DIGEST_SIZES:
        # Part 1 §16: the Name hashes the public area with nameAlg; one this runtime cannot hash
        # (SM3_256) is refused as input, not raised as UnsupportedAlgorithm (tests/fuzz)
        raise ParseError("unknown or unsupported nameAlg 0x%04x" % alg, offset=4, field="nameAlg")
    return public_bytes[4:6] + compat.digest(name, public_bytes)


def written(public_bytes):
    """The same public area with TPMA_NV_WRITTEN set: what the TPM reports after the first write."""
    p = parse_nv_public(public_bytes)
    return nv_public(p["nvIndex"], p["attributes"] | C.TPMA_NV_WRITTEN, p["dataSize"], p["nameAlg"],
                     p["authPolicy"])
