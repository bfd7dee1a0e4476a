# firmware.boot.antirollback: the floor is one past the highest revoked bit of the TPM_NT_BITS
# field firmware.secrets.rollback keeps (bit v set: counter v revoked); an absent or never-written
# index means floor 0; any other failure is an error (the loader then refuses, fail closed).
# The TPM errors are real TpmError objects decoded from response codes (TPM 2.0 Part 2 §6.6).
from firmware.boot import antirollback as A
from firmware.secrets import flows
from firmware.tpm.errors import TpmError
from tests.unit.firmware.check import raises


class FieldTpm:
    """Answers TPM2_NV_Read of the field with a fixed value or a fixed failure."""

    def __init__(self, value=None, error=None):
        self.value, self.error, self.asked = value, error, []

    def nv_read_u64(self, index):
        self.asked.append(index)
        if self.error is not None:
            raise self.error
        return self.value


def test_floor_from_bits():
    assert A.floor_from_bits(0) == 0
    assert A.floor_from_bits(1) == 1
    # committing counter v sets bits 0..v-1 (firmware.secrets.flows.revoke_bits): floor v
    for v in (1, 2, 5, 63, 64):
        assert A.floor_from_bits(flows.revoke_bits(v)) == v
    assert A.floor_from_bits(0b100100) == 6  # a stray high bit only raises the floor
    assert A.floor_from_bits(0xFFFFFFFFFFFFFFFF) == 64
    raises(ValueError, A.floor_from_bits, -1)


def test_read_floor():
    tpm = FieldTpm(flows.revoke_bits(3))
    assert A.read_floor(tpm) == (3, None)
    assert tpm.asked == [0x01000A50] and A.FLOOR_INDEX == 0x01000A50
    assert A.read_floor(FieldTpm(0)) == (0, None)


def test_absent_index_is_floor_zero():
    # TPM_RC_HANDLE on handle 1 (0x18B): no such NV index; TPM_RC_NV_UNINITIALIZED (0x14A)
    assert A.read_floor(FieldTpm(error=TpmError(0x18B, "TPM2_NV_Read"))) == (0, None)
    assert A.read_floor(FieldTpm(error=TpmError(0x14A, "TPM2_NV_Read"))) == (0, None)


def test_other_failures_are_errors():
    floor, err = A.read_floor(FieldTpm(error=TpmError(0x98E, "TPM2_NV_Read")))  # TPM_RC_AUTH_FAIL
    assert floor == 0 and err.startswith("NV index 0x01000a50: TpmError: ")
    assert "TPM_RC_AUTH_FAIL" in err
    floor, err = A.read_floor(FieldTpm(error=OSError("device gone")))
    assert err == "NV index 0x01000a50: OSError: device gone"
