# mypy: disable-error-code="no-untyped-call"
"""The stage loader's TPM lockdown (firmware/boot/tpm_guard.py) on a real swtpm: PCR 14 closed
after a measurement that fails half way (issue 9 part 4), and the platform hierarchy disabled
when the firmware left platformAuth empty (TPM 2.0 Part 3 §24.2), with the platform-created
anti-rollback index still usable (phEnableNV)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from firmware import compat
from firmware.boot import stage, tpm_guard
from firmware.eventlog.writer import separator_event
from firmware.secrets import rollback
from firmware.tpm import constants as C
from firmware.tpm.client import Tpm
from firmware.tpm.errors import TpmError
from firmware.tpm.transport import open_uri
from tests.tpm.helpers import flush_all
from tests.unit.firmware.test_boot_stage import VERIFY, bundle

PCR = stage.PHONE_PCR
SEP = separator_event(("sha256",), PCR)[0]


class FailingExtend:
    """The real swtpm's transport, failing the n-th TPM2_PCR_Extend the way a lost device does
    (OSError from the transport): the TPM never sees that command."""

    def __init__(self, inner: Any, fail_at: int) -> None:
        self.inner, self.fail_at, self.extends = inner, fail_at, 0

    def send(self, command: bytes) -> bytes:
        if int.from_bytes(command[6:10], "big") == C.TPM_CC_PCR_Extend:
            self.extends += 1
            if self.extends == self.fail_at:
                raise OSError(5, "Input/output error (injected on PCR_Extend %d)" % self.fail_at)
        rsp: bytes = self.inner.send(command)
        return rsp

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def tpm(fresh_swtpm) -> Iterator[Tpm]:  # type: ignore[no-untyped-def]
    t = Tpm(open_uri(fresh_swtpm.uri))
    yield t
    flush_all(t)
    t.transport.close()


def _chain(digests: list[bytes]) -> bytes:
    v = bytes(32)
    for d in digests:
        v = compat.sha256(v + d)
    return v


def _golden() -> tuple[list[bytes], bytes]:
    """The digests a complete measurement of the test bundle extends, and PCR 14's final value."""
    out = stage.measure_and_verify(bundle(), lambda p, d: None, VERIFY)
    seq = [out.bundle[3]["sha256"]] + [d["sha256"] for _, _, d in out.measured] + [SEP["sha256"]]
    return seq, _chain(seq)


def test_half_measured_pcr14_is_closed_and_never_reaches_golden(tpm: Tpm) -> None:
    seq, golden = _golden()
    faulty = Tpm(FailingExtend(tpm.transport, fail_at=3))  # bundle event, phone-app, then fails
    notes: list[str] = []
    pcr14 = tpm_guard.Pcr14(faulty, PCR, SEP)
    # the injected fault is a transport failure; the closing separator goes through because the
    # fault hit only that one command
    with pytest.raises(OSError):
        tpm_guard.measure_closed(pcr14, lambda: stage.measure_and_verify(
            bundle(), pcr14.extend, VERIFY), note=notes.append)
    assert notes == ["measurement failed (OSError): PCR 14 closed with a separator after 2 extends"]
    value = tpm.pcr_read_all("sha256", [PCR])[PCR]
    assert value == _chain(seq[:2] + [SEP["sha256"]])  # the prefix, then the separator
    # whoever reaches the TPM next and extends the rest of the golden sequence gets nowhere
    for d in seq[2:]:
        tpm.pcr_extend(PCR, {"sha256": d})
    assert tpm.pcr_read_all("sha256", [PCR])[PCR] != golden


def test_separator_failure_is_reported_not_swallowed(tpm: Tpm) -> None:
    class Dead(FailingExtend):
        def send(self, command: bytes) -> bytes:
            if int.from_bytes(command[6:10], "big") == C.TPM_CC_PCR_Extend and self.extends >= 1:
                raise OSError(5, "Input/output error (TPM gone)")
            return super().send(command)
    pcr14 = tpm_guard.Pcr14(Tpm(Dead(tpm.transport, fail_at=0)), PCR, SEP)
    with pytest.raises(tpm_guard.Pcr14OpenError) as ei:
        tpm_guard.measure_closed(pcr14, lambda: stage.measure_and_verify(bundle(), pcr14.extend, VERIFY))
    assert str(ei.value) == ("PCR 14 left open after OSError: the separator failed: OSError: "
                             "[Errno 5] Input/output error (TPM gone)")


def test_a_closed_pcr14_is_not_closed_twice(tpm: Tpm) -> None:
    pcr14 = tpm_guard.Pcr14(tpm, PCR, SEP)
    out = tpm_guard.measure_closed(pcr14, lambda: stage.measure_and_verify(bundle(), pcr14.extend, VERIFY))
    assert out.state == stage.STATE_VERIFIED and pcr14.closed
    assert pcr14.close() is False
    assert tpm.pcr_read_all("sha256", [PCR])[PCR] == _golden()[1]
    with pytest.raises(ValueError, match="PCR 14 is closed by its separator"):
        pcr14.extend(PCR, {"sha256": bytes(32)})


def test_platform_left_open_is_disabled_and_nv_stays(tpm: Tpm) -> None:
    # a fresh TPM after TPM2_Startup(CLEAR): phEnable SET, platformAuth empty (Part 1 §13.4)
    assert tpm_guard.startup_flags(tpm)["phEnable"] is True
    tpm.nv_define_space(rollback.public_area(), hierarchy=C.TPM_RH_PLATFORM)
    outcome, flags = tpm_guard.lock_platform(tpm)
    assert outcome == tpm_guard.PLATFORM_DISABLED
    assert flags == {"phEnable": False, "shEnable": True, "ehEnable": True, "phEnableNV": True}
    # platform authority is gone until the next TPM2_Startup(CLEAR): TPM_RC_HIERARCHY, handle 1
    for attempt in (lambda: tpm.hierarchy_change_auth(C.TPM_RH_PLATFORM, b"x"),
                    lambda: tpm.clear(C.TPM_RH_PLATFORM),
                    lambda: tpm.hierarchy_control(C.TPM_RH_PLATFORM, True)):
        with pytest.raises(TpmError) as ei:
            attempt()
        assert (ei.value.name, ei.value.handle) == ("TPM_RC_HIERARCHY", 1), ei.value
    # the platform-created anti-rollback index is still read and written (phEnableNV SET)
    rollback.commit(tpm, 2)
    assert rollback.revoked(tpm) == 0b11
    assert tpm_guard.lock_platform(tpm)[0] == tpm_guard.PLATFORM_ALREADY_OFF


def test_platform_auth_set_by_the_firmware_is_left_alone(tpm: Tpm) -> None:
    tpm.hierarchy_change_auth(C.TPM_RH_PLATFORM, b"firmware's random platformAuth")
    outcome, flags = tpm_guard.lock_platform(tpm)
    assert outcome == tpm_guard.PLATFORM_AUTH_SET and flags["phEnable"] is True
