# Byte-exact encodings of the NV, PolicyNV, PolicyAuthorize, LoadExternal and VerifySignature
# commands (TPM 2.0 Part 3 §31, §23.9, §23.16, §12.3, §20.1) and NV public areas / Names (Part 2
# §13.5, Part 1 §16).
from firmware import compat
from firmware.errors import ParseError
from firmware.tpm import commands as K
from firmware.tpm import constants as C
from firmware.tpm import nv
from tests.unit.firmware.check import raises, unhex

PW = unhex("40000009 0000 01 0000")  # TPM_RS_PW with an empty password (Part 1 §19.8.5)
ATTRS = 0x02060024  # TPM_NT_BITS | AUTHWRITE | OWNERREAD | AUTHREAD | NO_DA


def _cmd(cmd, handles=(), params=None, auth=None):
    return K.build_command(cmd, handles, K.marshal_params(cmd, params or {}), auth)


def test_nv_public_and_name():
    pub = nv.nv_public(0x01000A50, ATTRS, 8)
    assert pub == unhex("01000a50 000b 02060024 0000 0008")
    assert nv.parse_nv_public(pub) == {"nvIndex": 0x01000A50, "nameAlg": 0x000B, "attributes": ATTRS,
                                       "authPolicy": b"", "dataSize": 8}
    assert nv.nv_name(pub) == unhex("000b") + compat.sha256(pub)
    w = nv.written(pub)
    assert w == unhex("01000a50 000b 22060024 0000 0008")  # TPMA_NV_WRITTEN is bit 29
    assert nv.nv_name(w) != nv.nv_name(pub)
    assert nv.nv_type(ATTRS) == C.TPM_NT_BITS


def test_nv_public_errors():
    raises(ValueError, nv.nv_public, 0x81000001, ATTRS, 8)
    e = raises(ParseError, nv.parse_nv_public, unhex("81000001 000b 02060024 0000 0008"))
    assert e.field == "nvIndex"
    e = raises(ParseError, nv.parse_nv_public, unhex("01000a50 000b 02060024 0000 0008 00"))
    assert e.field == "TPMS_NV_PUBLIC"
    e = raises(ParseError, nv.nv_name, unhex("01000a50 0099 02060024 0000 0008"))
    assert e.field == "nameAlg" and e.offset == 4


def test_nv_define_space():
    pub = nv.nv_public(0x01000A50, ATTRS, 8)
    got = _cmd(K.NV_DefineSpace, (C.TPM_RH_OWNER,), {"auth": b"", "publicInfo": pub}, PW)
    assert got == unhex("8002 0000002d 0000012a 40000001 00000009") + PW + unhex(
        "0000 000e 01000a50 000b 02060024 0000 0008")


def test_nv_set_bits_read_increment_undefine():
    h = (0x01000A50, 0x01000A50)
    assert _cmd(K.NV_SetBits, h, {"bits": 6}, PW) == unhex(
        "8002 00000027 00000135 01000a50 01000a50 00000009") + PW + unhex("0000000000000006")
    assert _cmd(K.NV_Read, h, {"size": 8, "offset": 0}, PW) == unhex(
        "8002 00000023 0000014e 01000a50 01000a50 00000009") + PW + unhex("0008 0000")
    assert _cmd(K.NV_Increment, h, auth=PW) == unhex("8002 0000001f 00000134 01000a50 01000a50 00000009") + PW
    assert _cmd(K.NV_UndefineSpace, (C.TPM_RH_OWNER, 0x01000A50), auth=PW) == unhex(
        "8002 0000001f 00000122 40000001 01000a50 00000009") + PW
    assert _cmd(K.NV_ReadPublic, (0x01000A50,)) == unhex("8001 0000000e 00000169 01000a50")


def test_policy_nv():
    got = _cmd(K.PolicyNV, (0x01000A50, 0x01000A50, 0x03000000),
               {"operandB": unhex("0000000000000002"), "offset": 0, "operation": C.TPM_EO_BITCLEAR}, PW)
    assert got == unhex("8002 00000031 00000149 01000a50 01000a50 03000000 00000009") + PW + unhex(
        "0008 0000000000000002 0000 000b")


def test_policy_authorize_load_external_verify_signature():
    ticket = {"tag": C.TPM_ST_VERIFIED, "hierarchy": C.TPM_RH_OWNER, "digest": b"\x44" * 32}
    got = _cmd(K.PolicyAuthorize, (0x03000000,), {"approvedPolicy": b"\x11" * 32, "policyRef": b"ref",
                                                  "keySign": b"\x00\x0b" + b"\x22" * 32, "checkTicket": ticket})
    assert got == (unhex("8001 00000081 0000016a 03000000 0020") + b"\x11" * 32 + unhex("0003") + b"ref"
                   + unhex("0022 000b") + b"\x22" * 32 + unhex("8022 40000001 0020") + b"\x44" * 32)
    got = _cmd(K.LoadExternal, params={"inPrivate": b"", "inPublic": b"\xaa\xbb", "hierarchy": C.TPM_RH_OWNER})
    assert got == unhex("8001 00000014 00000167 0000 0002 aabb 40000001")
    sig = {"sigAlg": C.TPM_ALG_ECDSA, "hash": C.TPM_ALG_SHA256, "r": b"\x01" * 32, "s": b"\x02" * 32}
    got = _cmd(K.VerifySignature, (0x80000001,), {"digest": b"\x33" * 32, "signature": sig})
    assert got == (unhex("8001 00000078 00000177 80000001 0020") + b"\x33" * 32 + unhex("0018 000b 0020")
                   + b"\x01" * 32 + unhex("0020") + b"\x02" * 32)


def test_verify_signature_response():
    rsp = unhex("8001 00000016 00000000 8022 40000001 0004 deadbeef")
    out = K.parse_response(K.VerifySignature, rsp)
    assert out["validation"] == {"tag": 0x8022, "hierarchy": 0x40000001, "digest": unhex("deadbeef")}


def test_nv_read_public_response_bounds():
    # NV_ReadPublic answers TPM2B_NV_PUBLIC then TPM2B_NAME; a name longer than TPMU_NAME is refused
    rsp = unhex("8001 00000060 00000000 000e 01000a50 000b 02060024 0000 0008 0044") + b"\x00" * 68
    e = raises(ParseError, K.parse_response, K.NV_ReadPublic, rsp)
    assert e.field == "nvName"
