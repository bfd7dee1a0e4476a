"""Sealed credentials in the real image under QEMU + OVMF + swtpm: a device provisioned from the
image's reference.json unseals its SIP account at boot (status "unsealed": true); after a
component is tampered with (and re-signed, as a compromised build server would) the TPM refuses
and the phone reports integrity-failed naming PCR 14 and the component. The secret never shows
on the serial console or in the flash. One device, booted once per scenario.

Needs the phone console to call firmware.secrets.hook (release_at_boot + merge_status, see
docs/sealing.md); until it does, the tests skip saying so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from host_tools.provision import __main__ as provision_cli
from host_tools.qemu.device import Device, DeviceConfig
from host_tools.tamper.__main__ import main as tamper_main

pytestmark = pytest.mark.slow

BOARD = "qemu-x86_64"
BOOT_TIMEOUT = 300.0
SIP_PASSWORD = "qemu-Sip-Secret-7d3b91f0c2"
USER_SECRET = "qemu-user-secret-55aa01"
PIN = b"739104"


class SealedDevice:
    def __init__(self, image: Path, base: Path) -> None:
        self.image = image
        self.devices = base / "devices"
        self.device = Device("sealing", DeviceConfig(board=BOARD, build_dir=image, devices_dir=self.devices))
        self.inputs = base / "inputs"
        self.inputs.mkdir()
        (self.inputs / "secrets.json").write_text(json.dumps(
            {"sip-account": {"username": "phone1", "password": SIP_PASSWORD}, "user-secret": USER_SECRET}))
        (self.inputs / "pin").write_bytes(PIN)
        self.policy_key = base / "policy-signing-key.pem"
        self.integrated: bool | None = None  # does the image's console call the hook?

    def restore_golden(self) -> None:
        """The flash as provisioned (golden image + store); `tamper --restore` would zero the store."""
        self.device.disk.write_bytes(self.golden)

    def tamper(self, *args: str) -> None:
        rc = tamper_main(["--device", "sealing", "--image-dir", str(self.image), "--devices-dir",
                          str(self.devices), *args])
        assert rc == 0

    def provision(self) -> None:
        rc = provision_cli.main(["--device", "sealing", "--board", BOARD, "--build-dir", str(self.image),
                                 "--devices-dir", str(self.devices), "--secrets", str(self.inputs / "secrets.json"),
                                 "--pin-file", str(self.inputs / "pin"), "--policy-key", str(self.policy_key)])
        assert rc == 0
        self.golden = self.device.disk.read_bytes()

    def boot_status(self) -> tuple[dict[str, Any], str]:
        if self.integrated is False:  # one boot told us already: do not boot again to skip
            _skip()
        with self.device.boot(timeout=BOOT_TIMEOUT) as con:
            st: dict[str, Any] = con.status()
        self.integrated = "credentials_state" in st
        return st, self.device.console_log.read_text(errors="replace")


@pytest.fixture(scope="module")
def sealed(built_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealedDevice]:
    d = SealedDevice(built_image, tmp_path_factory.mktemp("sealing"))
    d.provision()
    yield d


def _skip() -> None:
    pytest.skip("the phone console does not call firmware.secrets.hook yet (status has no "
                "credentials_state): see docs/sealing.md 'Release at boot'")


def _needs_hook(st: dict[str, Any]) -> None:
    if "credentials_state" not in st:
        _skip()


def _no_secret(text: str, flash: bytes) -> None:
    for needle in (SIP_PASSWORD, USER_SECRET, PIN.decode()):
        assert needle not in text
        assert needle.encode() not in flash


def test_golden_image_unseals_then_tampered_component_is_refused(sealed: SealedDevice) -> None:
    st, console = sealed.boot_status()
    _needs_hook(st)
    assert st["state"] == "running", st
    assert st["unsealed"] is True and st["credentials_state"] == "unsealed", st
    assert "unsealed_reason" not in st
    _no_secret(console + json.dumps(st), sealed.device.disk.read_bytes())
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
    _no_secret(console + json.dumps(st), sealed.device.disk.read_bytes())


def _refused(st: dict[str, Any]) -> None:
    _needs_hook(st)
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
    _needs_hook(st)
    assert st["unsealed"] is True, st
