"""Sealed credentials in the real image under QEMU + OVMF + swtpm: a device provisioned from the
image's reference.json unseals its SIP account at boot (status "unsealed": true); after a
component is tampered with (and re-signed, as a compromised build server would) the TPM refuses
and the phone reports integrity-failed naming PCR 14 and the component. The secret never shows
on the serial console or in the flash. One device, booted once per scenario.

The PIN-bound user secret (the console's `pin`: lockout, power cycles, a copied blob) is
test_sealing_pin.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.system.sealing_support import SealedDevice, assert_no_secret

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sealed(built_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealedDevice]:
    d = SealedDevice(built_image, tmp_path_factory.mktemp("sealing"))
    d.provision()
    yield d


def test_golden_image_unseals_then_tampered_component_is_refused(sealed: SealedDevice) -> None:
    st, console = sealed.boot_status()
    assert "credentials_state" in st, st  # the console folds the hook's result into status
    assert st["state"] == "running", st
    assert st["unsealed"] is True and st["credentials_state"] == "unsealed", st
    assert "unsealed_reason" not in st
    assert_no_secret(console + json.dumps(st), sealed.device.disk.read_bytes())
    print("in guest: release %s ms, separator -> released %s ms"
          % (st.get("release_ms"), st.get("separator_to_release_ms")))

    sealed.tamper("--component", "phone-app")
    st, console = sealed.boot_status()
    assert st["unsealed"] is False, st
    assert st["state"] == "integrity-failed", st
    # pcr mode: TPM_RC_POLICY_FAIL at Unseal; authorized (default): TPM_RC_VALUE at PolicyAuthorize
    assert st["unsealed_reason"].startswith("TPM refused the sealed credentials (TPM_RC_")
    assert "PCR 14" in st["unsealed_reason"] and "phone-app" in st["unsealed_reason"]
    assert [d["pcr"] for d in st["pcrs_differ"]] == [14]
    assert [c["name"] for c in st["components_differ"]] == ["phone-app"]
    assert_no_secret(console + json.dumps(st), sealed.device.disk.read_bytes())


def _refused(st: dict[str, Any]) -> None:
    assert st["unsealed"] is False and st["state"] == "integrity-failed", st
    assert st["unsealed_reason"].startswith("TPM refused the sealed credentials (TPM_RC_"), st


def test_uki_change_is_refused_naming_pcrs_4_and_11(sealed: SealedDevice) -> None:
    sealed.restore_golden()
    sealed.tamper("--uki", "cmdline")
    st, _ = sealed.boot_status()
    _refused(st)
    assert [d["pcr"] for d in st["pcrs_differ"]] == [4, 11]
    assert "components_differ" not in st  # the bundle itself is untouched
    assert "PCR 4, 11 differ from the sealed policy" in st["unsealed_reason"]


def test_removed_and_reordered_components_are_named(sealed: SealedDevice) -> None:
    sealed.restore_golden()
    sealed.tamper("--remove", "sip-media")
    st, _ = sealed.boot_status()
    _refused(st)
    assert [d["pcr"] for d in st["pcrs_differ"]] == [14]
    assert [(c["name"], c["status"]) for c in st["components_differ"]] == [("sip-media", "missing")]
    sealed.restore_golden()
    sealed.tamper("--swap", "device-config,ca-bundle")
    st, _ = sealed.boot_status()
    _refused(st)
    assert [d["pcr"] for d in st["pcrs_differ"]] == [14]
    assert [c["status"] for c in st["components_differ"]] == ["out-of-order"]


def test_golden_again_after_restore_unseals(sealed: SealedDevice) -> None:
    """Refusals cost nothing: after all the failed boots the golden flash still unseals (policy
    failures are no PIN guesses, and every power-off was clean)."""
    sealed.restore_golden()
    st, _ = sealed.boot_status()
    assert st["unsealed"] is True and st["credentials_state"] == "unsealed", st
    # the TPM's own count says so: no dictionary-attack failure after the refused boots
    assert st["da"]["counter"] == 0 and st["da"]["in_lockout"] is False, st["da"]
