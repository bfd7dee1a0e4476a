# Byte-exact command encodings (TPM 2.0 Part 3) and response parsing of the data-described commands.
from firmware.errors import ParseError
from firmware.tpm import commands as K
from firmware.tpm import constants as C
from firmware.tpm.errors import TpmError
from tests.unit.firmware.check import raises, unhex


def _cmd(cmd, handles=(), params=None, auth=None):
    return K.build_command(cmd, handles, K.marshal_params(cmd, params or {}), auth)


def test_startup_clear():
    # Part 3 §9.3: TPM_ST_NO_SESSIONS, size 12, TPM_CC_Startup, TPM_SU_CLEAR
    assert _cmd(K.Startup, params={"startupType": C.TPM_SU_CLEAR}) == unhex("8001 0000000c 00000144 0000")


def test_shutdown_state():
    assert _cmd(K.Shutdown, params={"shutdownType": C.TPM_SU_STATE}) == unhex("8001 0000000c 00000145 0001")


def test_get_random():
    # Part 3 §16.1
    assert _cmd(K.GetRandom, params={"bytesRequested": 8}) == unhex("8001 0000000c 0000017b 0008")


def test_pcr_read_sha256_0_to_7():
    # Part 3 §22.4: TPML_PCR_SELECTION count 1, sha256, 3 bytes, PCRs 0-7
    assert _cmd(K.PCR_Read, params={"pcrSelectionIn": [(C.TPM_ALG_SHA256, list(range(8)))]}) == unhex(
        "8001 00000014 0000017e 00000001 000b 03 ff0000")


def test_pcr_extend_with_password_session():
    # Part 3 §22.2 with TPM_RS_PW (Part 1 §19.8.5): authSize 9 = handle, empty nonce, attrs, empty hmac
    auth = unhex("40000009 0000 01 0000")
    got = _cmd(K.PCR_Extend, (14,), {"digests": [(C.TPM_ALG_SHA256, b"\x11" * 32)]}, auth)
    assert got == unhex("8002 00000041 00000182 0000000e 00000009") + auth + unhex(
        "00000001 000b") + b"\x11" * 32


def test_flush_context_handle_is_a_parameter():
    # Part 3 §28.4: flushHandle is in the parameter area, so no session is needed
    assert _cmd(K.FlushContext, params={"flushHandle": 0x80000001}) == unhex(
        "8001 0000000e 00000165 80000001")


def test_start_auth_session_unsalted_policy():
    nonce = b"\xaa" * 16
    got = _cmd(K.StartAuthSession, (C.TPM_RH_NULL, C.TPM_RH_NULL),
               {"nonceCaller": nonce, "encryptedSalt": b"", "sessionType": C.TPM_SE_POLICY,
                "symmetric": None, "authHash": C.TPM_ALG_SHA256})
    assert got == unhex("8001 0000002b 00000176 40000007 40000007 0010") + nonce + unhex(
        "0000 01 0010 000b")


def test_wrong_handle_count():
    e = raises(ValueError, K.build_command, K.Unseal, (), b"")
    assert "1 handles" in str(e)


def test_missing_parameter():
    e = raises(ValueError, K.marshal_params, K.GetRandom, {})
    assert "bytesRequested" in str(e)


def test_get_random_response():
    rsp = unhex("8001 00000014 00000000 0008 0102030405060708")
    assert K.parse_response(K.GetRandom, rsp) == {"randomBytes": unhex("0102030405060708")}


def test_pcr_read_response():
    rsp = unhex("8001 0000003e 00000000 00000015 00000001 000b 03 010000 00000001 0020") + b"\x07" * 32
    out = K.parse_response(K.PCR_Read, rsp)
    assert out["pcrUpdateCounter"] == 0x15
    assert out["pcrSelectionOut"] == [(C.TPM_ALG_SHA256, [0])]
    assert out["pcrValues"] == [b"\x07" * 32]


def test_error_response_raises_tpm_error():
    e = raises(TpmError, K.parse_response, K.Unseal, unhex("8001 0000000a 0000099d"))
    assert e.name == "TPM_RC_POLICY_FAIL" and e.command == "TPM2_Unseal" and e.session == 1


def test_error_response_with_body_is_malformed():
    e = raises(ParseError, K.parse_response, K.Unseal, unhex("8001 0000000b 0000099d 00"))
    assert e.field == "error response" and e.offset == 10


def test_size_mismatch():
    e = raises(ParseError, K.parse_response, K.GetRandom, unhex("8001 00000010 00000000 0000"))
    assert e.field == "responseSize" and e.offset == 2


def test_truncated_parameter_names_field_and_offset():
    rsp = unhex("8001 0000000e 00000000 0008 0102")
    e = raises(ParseError, K.parse_response, K.GetRandom, rsp)
    assert e.field == "randomBytes" and e.offset == 10


def test_trailing_bytes_rejected():
    rsp = unhex("8001 0000000f 00000000 0001 01 ff 00")
    e = raises(ParseError, K.parse_response, K.GetRandom, rsp)
    assert e.field == "parameters" and e.offset == 13


def test_garbage_counts_rejected_before_use():
    # a PCR_Read answer claiming 0xffffffff selections
    rsp = unhex("8001 00000012 00000000 00000001 ffffffff")
    e = raises(ParseError, K.parse_response, K.PCR_Read, rsp)
    assert e.field == "pcrSelectionOut.count" and e.offset == 14


def test_sessions_tag_parameter_size_checked():
    # TPM_ST_SESSIONS with a parameterSize beyond the response
    rsp = unhex("8002 00000010 00000000 000000ff 0000")
    e = raises(ParseError, K.split_response, K.Unseal, rsp, 1)
    assert e.field == "parameterSize" and e.offset == 10


def test_unexpected_tag():
    e = raises(ParseError, K.parse_response, K.GetRandom, unhex("00c4 0000000c 00000000 0000"))
    assert e.field == "tag"
