# TPMT_PUBLIC templates, parsing and Names (TPM 2.0 Part 2 §12.2.4, Part 1 §16).
from firmware import compat
from firmware.errors import ParseError
from firmware.tpm import constants as C
from firmware.tpm import public
from firmware.tpm.attest import parse_attest
from tests.unit.firmware.check import raises, unhex


def test_srk_template_bytes():
    # type ECC, nameAlg sha256, attributes 0x00030472, empty authPolicy, AES-128-CFB, scheme NULL,
    # curve NIST P-256, kdf NULL, empty unique x and y
    assert public.srk_template_ecc() == unhex(
        "0023 000b 00030472 0000 0006 0080 0043 0010 0003 0010 0000 0000")


def test_ak_template_bytes():
    assert public.ak_template_ecc() == unhex(
        "0023 000b 00050072 0000 0010 0018 000b 0003 0010 0000 0000")


def test_sealed_template_user_with_auth_clear_with_policy():
    t = public.parse_public(public.sealed_template(b"\x01" * 32, with_auth_value=True))
    assert t["type"] == C.TPM_ALG_KEYEDHASH
    assert not t["objectAttributes"] & C.TPMA_OBJECT_USERWITHAUTH
    assert t["authPolicy"] == b"\x01" * 32
    t = public.parse_public(public.sealed_template(b""))
    assert t["objectAttributes"] & C.TPMA_OBJECT_USERWITHAUTH


def test_parse_round_trip_and_name():
    pub = public.ecc_template(public.AK_ATTRIBUTES, scheme=(C.TPM_ALG_ECDSA, C.TPM_ALG_SHA256),
                              unique_x=b"\x01" * 32, unique_y=b"\x02" * 32)
    p = public.parse_public(pub)
    assert p["curveID"] == C.TPM_ECC_NIST_P256 and p["x"] == b"\x01" * 32
    assert p["scheme"] == (C.TPM_ALG_ECDSA, C.TPM_ALG_SHA256)
    assert public.object_name(pub) == unhex("000b") + compat.sha256(pub)


def test_parse_errors_name_field():
    e = raises(ParseError, public.parse_public, public.srk_template_ecc()[:-1])
    assert e.field == "unique.y.size" and e.offset == 24
    e = raises(ParseError, public.parse_public, public.srk_template_ecc() + b"\x00")
    assert e.field == "TPMT_PUBLIC"
    e = raises(ParseError, public.parse_public, unhex("7777 000b 00000000 0000"))
    assert e.field == "type"
    e = raises(ParseError, public.object_name, unhex("0023 9999 00"))
    assert e.field == "nameAlg"


def test_attest_quote_parse_and_errors():
    att = unhex("ff544347 8018 0002 abcd 0003 6e6f6e 0000000000000010 00000001 00000002 01"
                "0000000000000003 00000001 000b 03 100000 0020") + b"\x05" * 32
    a = parse_attest(att)
    assert a["extraData"] == b"non" and a["pcrSelect"] == [(C.TPM_ALG_SHA256, [4])]
    assert a["pcrDigest"] == b"\x05" * 32 and a["resetCount"] == 1
    e = raises(ParseError, parse_attest, b"\x00" + att[1:])
    assert e.field == "magic"
    e = raises(ParseError, parse_attest, att[:-3])
    assert e.field == "attested.quote.pcrDigest"
