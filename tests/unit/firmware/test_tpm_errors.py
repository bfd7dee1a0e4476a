# TPM_RC decoding (TPM 2.0 Part 2 §6.6): format-0, format-1 with handle/parameter/session, warnings.
from firmware.tpm import errors
from firmware.tpm.errors import TpmError, decode


def test_policy_fail_session_1():
    # 0x99D seen from swtpm on Unseal with changed PCRs (DESIGN.md "Facts from trials")
    e = TpmError(0x99D, "TPM2_Unseal")
    assert e.name == "TPM_RC_POLICY_FAIL"
    assert e.base == errors.TPM_RC_POLICY_FAIL
    assert e.session == 1 and e.handle is None and e.parameter is None
    assert str(e) == "TPM2_Unseal failed: TPM_RC_POLICY_FAIL (0x99d) session 1: a policy check failed"


def test_auth_fail_session_1():
    e = TpmError(0x98E)
    assert e.name == "TPM_RC_AUTH_FAIL" and e.session == 1
    assert e.base == errors.TPM_RC_AUTH_FAIL


def test_parameter_and_handle_numbers():
    # TPM_RC_VALUE + TPM_RC_P + TPM_RC_1: parameter 1
    e = TpmError(0x1C4)
    assert e.name == "TPM_RC_VALUE" and e.parameter == 1 and e.session is None
    assert "parameter 1" in str(e)
    # TPM_RC_HANDLE + TPM_RC_H + TPM_RC_1: handle 1
    e = TpmError(0x18B)
    assert e.name == "TPM_RC_HANDLE" and e.handle == 1
    # parameter 15 uses the whole N field
    assert decode(0xFD5)["parameter"] == 15


def test_format0_and_warnings():
    assert TpmError(0x100).name == "TPM_RC_INITIALIZE"
    assert TpmError(0x101).name == "TPM_RC_FAILURE"
    e = TpmError(0x921)
    assert e.name == "TPM_RC_LOCKOUT" and e.warning and e.base == errors.TPM_RC_LOCKOUT
    assert not e.retryable
    assert TpmError(0x922).retryable  # TPM_RC_RETRY
    assert TpmError(0x90A).name == "TPM_RC_TESTING"
    assert TpmError(0x902).name == "TPM_RC_OBJECT_MEMORY"
    assert TpmError(0x910).name == "TPM_RC_REFERENCE_H0"
    assert TpmError(0x918).name == "TPM_RC_REFERENCE_S0"


def test_unknown_and_layered_codes():
    assert decode(0x17F)["name"].startswith("TPM_RC_")  # unknown format-0 number keeps the value
    e = TpmError(0x000B0921)
    assert e.layer == 0x0B and "layer 0xb" in str(e) and not e.retryable
    assert TpmError(0x0001).name == "TPM_RC_0x001"  # TPM 1.2 code
