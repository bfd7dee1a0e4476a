# Marshalling of the TPM 2.0 structures the commands use (Part 2 §10-§11), as small type objects
# with write(Writer, value) and read(Reader, field). Command descriptions in commands.py list
# parameters as (name, type) pairs of these, so no command hand-codes its byte layout.

from firmware.errors import ParseError
from firmware.tcg_alg import HASH_SIZES, HASH_ALG_NAMES
from firmware.tpm import constants as C


class _Uint:
    def __init__(self, size):
        self.size = size

    def write(self, w, v):
        w.raw(_uint_bytes(v, self.size))

    def read(self, r, field):
        return int.from_bytes(r.raw(self.size, field), "big")


def _uint_bytes(v, n):
    if v < 0 or v >> (8 * n):
        raise ValueError("value %r does not fit in %d bytes" % (v, n))
    return v.to_bytes(n, "big")


U8 = _Uint(1)
U16 = _Uint(2)
U32 = _Uint(4)
U64 = _Uint(8)


class _Tpm2b:
    """TPM2B_* of plain bytes (Part 2 §10.4); `max_size` bounds what a response may claim."""

    first_is_tpm2b = True

    def __init__(self, max_size=None):
        self.max_size = max_size

    def write(self, w, v):
        w.tpm2b(v)

    def read(self, r, field):
        return r.tpm2b(field, self.max_size)


TPM2B = _Tpm2b()
TPM2B_DIGEST = _Tpm2b(64)  # sizeof(TPMU_HA): the largest digest (SHA-512)
TPM2B_NONCE = TPM2B_DIGEST
TPM2B_NAME = _Tpm2b(2 + 64)  # TPMU_NAME: algorithm id + digest, or a 4-byte handle
TPM2B_PUBLIC = _Tpm2b()  # value is the marshalled TPMT_PUBLIC; see public.py
TPM2B_PRIVATE = _Tpm2b()
TPM2B_ATTEST = _Tpm2b()
TPM2B_DATA = _Tpm2b()
TPM2B_SENSITIVE_DATA = _Tpm2b(128)  # MAX_SYM_DATA in the reference implementation
TPM2B_ENCRYPTED_SECRET = _Tpm2b()
TPM2B_ID_OBJECT = _Tpm2b()  # Part 2 §12.4.3: integrityHMAC (TPM2B_DIGEST) || encIdentity
TPM2B_TIMEOUT = TPM2B_DIGEST  # Part 2 §10.4.10 (an 8-byte timeout or empty)
TPM2B_CREATION_DATA = _Tpm2b()
TPM2B_AUTH = TPM2B_DIGEST
TPM2B_NV_PUBLIC = _Tpm2b()  # value is the marshalled TPMS_NV_PUBLIC; see nv.py
TPM2B_SENSITIVE = _Tpm2b()  # LoadExternal of a public key alone: empty
TPM2B_OPERAND = TPM2B_DIGEST  # Part 2 §10.4.6: TPM2B_OPERAND is a TPM2B_DIGEST
TPM2B_MAX_NV_BUFFER = _Tpm2b(2048)  # MAX_NV_BUFFER_SIZE of the reference implementation


class _SensitiveCreate:
    """TPM2B_SENSITIVE_CREATE (Part 2 §11.1.16): value (userAuth, data)."""

    first_is_tpm2b = True

    def write(self, w, v):
        user_auth, data = v

        def inner(x):
            x.tpm2b(user_auth)
            x.tpm2b(data)

        w.sized(inner)

    def read(self, r, field):
        sub = r.sized(field)
        out = (sub.tpm2b(field + ".userAuth"), sub.tpm2b(field + ".data"))
        sub.done(field)
        return out


TPM2B_SENSITIVE_CREATE = _SensitiveCreate()


def _hash_size(alg, field, start):
    name = HASH_ALG_NAMES.get(alg)
    if name is None:
        raise ParseError("unknown hash algorithm 0x%04x" % alg, offset=start, field=field)
    return HASH_SIZES[name]


class _PcrSelection:
    """TPML_PCR_SELECTION (Part 2 §10.9.7): value is a list of (hash alg id, [pcr indices])."""

    def write(self, w, v):
        w.u32(len(v))
        for alg, pcrs in v:
            w.u16(alg)
            w.raw(pcr_bitmap(pcrs))

    def read(self, r, field):
        start = r.offset
        return _read_pcr_selection_after_count(r, r.u32(field + ".count"), field, start)


def pcr_bitmap(pcrs):
    """sizeofSelect + pcrSelect (Part 2 §10.6.1): bit n of byte n//8 selects PCR n; at least 3
    bytes (PCR_SELECT_MIN for the 24 PC Client PCRs)."""
    size = 3
    for p in pcrs:
        if p < 0 or p >= 8 * C.PCR_SELECT_MAX:
            raise ValueError("PCR index out of range: %r" % p)
        size = max(size, p // 8 + 1)
    bits = bytearray(size)
    for p in pcrs:
        bits[p // 8] |= 1 << (p % 8)
    return bytes([size]) + bytes(bits)


def pcr_indices(bits):
    return [i for i in range(8 * len(bits)) if bits[i // 8] & (1 << (i % 8))]


PCR_SELECTION = _PcrSelection()


class _DigestList:
    """TPML_DIGEST (Part 2 §10.9.3): a list of TPM2B_DIGEST, at most 8 in PCR_Read."""

    def write(self, w, v):
        w.u32(len(v))
        for d in v:
            w.tpm2b(d)

    def read(self, r, field):
        start = r.offset
        count = r.u32(field + ".count")
        if count > C.MAX_DIGESTS:
            raise ParseError("%d digests, at most %d allowed" % (count, C.MAX_DIGESTS),
                             offset=start, field=field)
        return [r.tpm2b("%s[%d]" % (field, i), 64) for i in range(count)]


DIGEST_LIST = _DigestList()


class _DigestValues:
    """TPML_DIGEST_VALUES (Part 2 §10.9.5): list of (hash alg id, digest); TPMT_HA digests have
    the algorithm's fixed size, no length prefix."""

    def write(self, w, v):
        w.u32(len(v))
        for alg, d in v:
            name = HASH_ALG_NAMES.get(alg)
            if name is None or HASH_SIZES[name] != len(d):
                raise ValueError("digest of %d bytes does not match algorithm 0x%04x" % (len(d), alg))
            w.u16(alg)
            w.raw(d)

    def read(self, r, field):
        start = r.offset
        count = r.u32(field + ".count")
        if count > C.MAX_DIGESTS:
            raise ParseError("%d digests, at most %d allowed" % (count, C.MAX_DIGESTS),
                             offset=start, field=field)
        out = []
        for i in range(count):
            f = "%s[%d]" % (field, i)
            at = r.offset
            alg = r.u16(f + ".hashAlg")
            out.append((alg, r.raw(_hash_size(alg, f + ".hashAlg", at), f + ".digest")))
        return out


DIGEST_VALUES = _DigestValues()


class _SymDef:
    """TPMT_SYM_DEF / TPMT_SYM_DEF_OBJECT (Part 2 §11.1.6-7): None for TPM_ALG_NULL, else
    (algorithm, keyBits, mode)."""

    def write(self, w, v):
        if v is None:
            w.u16(C.TPM_ALG_NULL)
            return
        alg, bits, mode = v
        w.u16(alg)
        if alg == C.TPM_ALG_XOR:
            w.u16(bits)  # keyBits is a hash algorithm and there is no mode (Part 2 §11.1.3)
        else:
            w.u16(bits)
            w.u16(mode)

    def read(self, r, field):
        alg = r.u16(field + ".algorithm")
        if alg == C.TPM_ALG_NULL:
            return None
        if alg == C.TPM_ALG_XOR:
            return (alg, r.u16(field + ".keyBits"), C.TPM_ALG_NULL)
        return (alg, r.u16(field + ".keyBits"), r.u16(field + ".mode"))


SYM_DEF = _SymDef()


class _Scheme:
    """TPMT_SIG_SCHEME / TPMT_ECC_SCHEME / TPMT_RSA_SCHEME / TPMT_KDF_SCHEME (Part 2 §11.2):
    None for TPM_ALG_NULL, else (scheme, hashAlg); ECDAA also carries a count (dropped)."""

    def write(self, w, v):
        if v is None:
            w.u16(C.TPM_ALG_NULL)
            return
        scheme, hash_alg = v
        w.u16(scheme)
        w.u16(hash_alg)
        if scheme == C.TPM_ALG_ECDAA:
            w.u16(0)

    def read(self, r, field):
        scheme = r.u16(field + ".scheme")
        if scheme == C.TPM_ALG_NULL:
            return None
        h = r.u16(field + ".hashAlg")
        if scheme == C.TPM_ALG_ECDAA:
            r.u16(field + ".count")
        return (scheme, h)


SCHEME = _Scheme()


class _Ticket:
    """TPMT_TK_CREATION / TPMT_TK_HASHCHECK (Part 2 §10.7): dict tag, hierarchy, digest."""

    def write(self, w, v):
        w.u16(v["tag"])
        w.u32(v["hierarchy"])
        w.tpm2b(v["digest"])

    def read(self, r, field):
        return {"tag": r.u16(field + ".tag"), "hierarchy": r.u32(field + ".hierarchy"),
                "digest": r.tpm2b(field + ".digest", 64)}


TICKET = _Ticket()


class _Signature:
    """TPMT_SIGNATURE (Part 2 §11.3.4): dict sigAlg, hash, and r/s (ECC) or sig (RSA)."""

    def write(self, w, v):
        w.u16(v["sigAlg"])
        if v["sigAlg"] == C.TPM_ALG_NULL:
            return
        w.u16(v["hash"])
        if "sig" in v:
            w.tpm2b(v["sig"])
        else:
            w.tpm2b(v["r"])
            w.tpm2b(v["s"])

    def read(self, r, field):
        at = r.offset
        alg = r.u16(field + ".sigAlg")
        if alg == C.TPM_ALG_NULL:
            return {"sigAlg": alg}
        out = {"sigAlg": alg, "hash": r.u16(field + ".hash")}
        if alg in (C.TPM_ALG_RSASSA, C.TPM_ALG_RSAPSS):
            out["sig"] = r.tpm2b(field + ".sig")
        elif alg in (C.TPM_ALG_ECDSA, C.TPM_ALG_ECDAA, C.TPM_ALG_ECSCHNORR):
            out["r"] = r.tpm2b(field + ".signatureR", 66)
            out["s"] = r.tpm2b(field + ".signatureS", 66)
        else:
            raise ParseError("unsupported signature algorithm 0x%04x" % alg, offset=at,
                             field=field + ".sigAlg")
        return out


SIGNATURE = _Signature()


class _CapabilityData:
    """TPMS_CAPABILITY_DATA (Part 2 §10.10.2): (capability, data) where data is
    ALGS: [(alg, attributes)], HANDLES/COMMANDS: [u32], PCRS: a PCR selection list,
    TPM_PROPERTIES: [(property, value)], ECC_CURVES: [u16]."""

    def read(self, r, field):
        cap = r.u32(field + ".capability")
        at = r.offset
        count = r.u32(field + ".count")
        if cap == C.TPM_CAP_PCRS:
            return (cap, _read_pcr_selection_after_count(r, count, field, at))
        # Each entry is at least 2 bytes: refuse counts the rest of the buffer cannot hold.
        if count > r.remaining() // 2:
            raise ParseError("count %d exceeds the data left" % count, offset=at, field=field + ".count")
        items = []
        for i in range(count):
            f = "%s[%d]" % (field, i)
            if cap == C.TPM_CAP_ALGS:
                items.append((r.u16(f + ".alg"), r.u32(f + ".algProperties")))
            elif cap in (C.TPM_CAP_HANDLES, C.TPM_CAP_COMMANDS):
                items.append(r.u32(f))
            elif cap == C.TPM_CAP_TPM_PROPERTIES:
                items.append((r.u32(f + ".property"), r.u32(f + ".value")))
            elif cap == C.TPM_CAP_ECC_CURVES:
                items.append(r.u16(f))
            else:
                raise ParseError("unsupported capability 0x%x" % cap, offset=at - 4,
                                 field=field + ".capability")
        return (cap, items)


def _read_pcr_selection_after_count(r, count, field, at):
    if count > C.MAX_PCR_SELECTIONS:
        raise ParseError("%d PCR selections, at most %d allowed" % (count, C.MAX_PCR_SELECTIONS),
                         offset=at, field=field + ".count")
    out = []
    for i in range(count):
        f = "%s[%d]" % (field, i)
        alg = r.u16(f + ".hash")
        s_at = r.offset
        size = r.u8(f + ".sizeofSelect")
        if size > C.PCR_SELECT_MAX:
            raise ParseError("sizeofSelect %d exceeds %d" % (size, C.PCR_SELECT_MAX),
                             offset=s_at, field=f + ".sizeofSelect")
        out.append((alg, pcr_indices(r.raw(size, f + ".pcrSelect"))))
    return out


CAPABILITY_DATA = _CapabilityData()
