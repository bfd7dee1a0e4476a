"""The tamper matrix: boot a phone whose flash was tampered with, fetch its logs and PCRs over the
serial console, verify them against the GOLDEN reference.json, and check that the verifier fails
(exit 1) naming the right component or PCR.  One boot per case (~14 s each under TCG), plus one
boot of an untouched (provisioned) device that must verify (exit 0) and unseal: the same boot is the
golden boot of the anti-rollback case, which needs a provisioned device that unsealed once.

The image is the session's snapshot build (tests/system/conftest.py: a snapshot of the tree built
once with its own keys into a temporary directory, shared with test_image_build); devices live in
a temporary devices directory, so build/ is never touched.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from host_tools.qemu.device import Device, DeviceConfig
from host_tools.qemu.verify import fetch_evidence, verifier_command
from host_tools.tamper.__main__ import main as tamper_main
from tests.system.conftest import SnapshotBuild

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BOARD = "qemu-x86_64"
BOOT_TIMEOUT = 150.0
# PCRs of the UKI: its Authenticode digest (4), the Linux EFI stub's initrd + load options (9),
# systemd-stub's section measurements (11) -- docs/pcr-map.md
UKI_PCRS = {4, 9, 11}


@dataclass(frozen=True)
class Image:
    out: Path
    key: Path
    devices: Path

    @property
    def reference(self) -> Path:
        return self.out / "reference.json"


@dataclass
class Booted:
    rc: int               # the verifier's exit status
    report: dict[str, Any]  # its --json report
    status: dict[str, Any]  # the phone's `status` answer
    console: str          # everything the serial console printed
    tamper_note: str

    def event(self, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [e for e in self.report["events"] if e["name"] == name]
        assert len(found) == 1, (name, self.report["events"])
        return found[0]

    def statuses(self) -> dict[str, str]:
        return {e["name"]: e["status"] for e in self.report["events"]}

    def bad_pcrs(self) -> set[int]:
        return {p["pcr"] for p in self.report["pcrs"] if p["status"] != "ok"}


@pytest.fixture(scope="module")
def image(snapshot_build: SnapshotBuild, tmp_path_factory: pytest.TempPathFactory) -> Image:
    return Image(snapshot_build.result.out, snapshot_build.keys / "dev-signing-key.pem",
                 tmp_path_factory.mktemp("tamper") / "devices")


def boot_and_verify(image: Image, name: str, tamper: list[str],
                    capsys: pytest.CaptureFixture[str] | None) -> Booted:
    device = Device(name, DeviceConfig(board=BOARD, build_dir=image.out,
                                       devices_dir=image.devices))
    device.prepare()
    note = ""
    if tamper:
        assert capsys is not None  # the tamper tool's note is read from the captured output
        rc = tamper_main(["--device", name, "--image-dir", str(image.out), "--devices-dir",
                          str(image.devices), "--signing-key", str(image.key),
                          "--keys-dir", str(image.key.parent), *tamper])  # Secure Boot db key
        note = capsys.readouterr().out
        assert rc == 0, note
    with device.boot(timeout=BOOT_TIMEOUT) as con:
        ev = fetch_evidence(con, device.dir / "verify")
    proc = subprocess.run(verifier_command(ev, image.reference, ["--json"]), cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert proc.returncode in (0, 1), proc.stderr  # 2 would be bad input: a broken capture
    return Booted(proc.returncode, json.loads(proc.stdout), json.loads(ev.status.read_text()),
                  device.console_log.read_text(errors="replace"), note)


@pytest.fixture(scope="module")
def golden(image: Image, tmp_path_factory: pytest.TempPathFactory) -> Booted:
    """Device "floor", provisioned, booted once untouched: the golden case, and the first boot of
    test_raised_floor_refuses_older_bundle (it unseals and commits counter 1: floor 1)."""
    from host_tools.provision.__main__ import main as provision_main
    key = tmp_path_factory.mktemp("floor") / "policy-key.pem"
    rc = provision_main(["--device", "floor", "--build-dir", str(image.out), "--devices-dir",
                         str(image.devices), "--policy-key", str(key)])
    assert rc == 0
    return boot_and_verify(image, "floor", [], None)


def test_golden_device_verifies(golden: Booted) -> None:
    b = golden
    assert b.rc == 0, b.report
    assert b.report["result"] == "ok"
    assert b.status["state"] == "running"
    assert set(b.statuses().values()) == {"ok"}


def test_byte_changed_and_resigned(image: Image, capsys: pytest.CaptureFixture[str]) -> None:
    """A compromised build server: the loader accepts the bundle, the measurement gives it away."""
    b = boot_and_verify(image, "resigned", ["--component", "phone-app"], capsys)
    assert b.rc == 1
    assert b.status["state"] == "running"  # the signature is valid: the loader started it
    e = b.event("phone-app")
    assert e["status"] == "differs" and e["trusted"]
    assert any(p.startswith("sha256 ") for p in e["problems"]), e
    assert {n: s for n, s in b.statuses().items() if n != "phone-app"} == {
        "bundle": "ok", "sip-media": "ok", "device-config": "ok", "ca-bundle": "ok"}
    assert b.bad_pcrs() == {14}


def test_byte_changed_signature_stale(image: Image,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    b = boot_and_verify(image, "stale", ["--component", "phone-app", "--resign", "no"], capsys)
    assert b.rc == 1
    # the stage loader refused to start the bundle ...
    assert b.status["state"] == "refused"
    assert "phone-app" in b.status["reason"] and "sha256" in b.status["reason"]
    assert "REFUSED: component 'phone-app'" in b.console
    assert "starting the recovery console" in b.console
    # ... but measured what it found first: the event is in the log and replays to PCR 14
    assert [c["name"] for c in b.status["components"]] == [
        "phone-app", "sip-media", "device-config", "ca-bundle"]
    e = b.event("phone-app")
    assert e["status"] == "differs" and e["trusted"] and e["event"] == 2  # after the bundle event
    assert b.bad_pcrs() == {14}


def test_component_removed(image: Image, capsys: pytest.CaptureFixture[str]) -> None:
    b = boot_and_verify(image, "removed", ["--remove", "ca-bundle"], capsys)
    assert b.rc == 1
    assert b.status["state"] == "running"
    assert b.event("ca-bundle")["status"] == "missing"
    assert b.statuses() == {"bundle": "ok", "phone-app": "ok", "sip-media": "ok",
                            "device-config": "ok", "ca-bundle": "missing"}
    assert b.bad_pcrs() == {14}


def test_component_added(image: Image, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    payload = tmp_path / "backdoor.py"
    payload.write_bytes(b"print('not from the vendor')\n")
    b = boot_and_verify(image, "added", ["--add", f"backdoor:{payload}"], capsys)
    assert b.rc == 1
    assert b.status["state"] == "running"
    e = b.event("backdoor")
    assert e["status"] == "extra" and "not in the reference" in e["problems"]
    assert e["event"] == 6  # measured after the bundle event and the four genuine components
    assert b.bad_pcrs() == {14}


def test_components_reordered(image: Image, capsys: pytest.CaptureFixture[str]) -> None:
    b = boot_and_verify(image, "reordered", ["--swap", "device-config,ca-bundle"], capsys)
    assert b.rc == 1
    assert b.status["state"] == "running"
    st = b.statuses()
    assert st["phone-app"] == st["sip-media"] == "ok"
    assert sorted([st["device-config"], st["ca-bundle"]]) == ["ok", "out-of-order"]
    assert b.bad_pcrs() == {14}


def test_rollback_to_older_bundle(image: Image, capsys: pytest.CaptureFixture[str]) -> None:
    """An older, validly signed bundle with byte-identical components: the TPM-vouched bundle event
    (its digest is of board, version and anti-rollback counter) differs, so PCR 14 does."""
    b = boot_and_verify(image, "rollback", ["--rollback"], capsys)
    assert "0.1.0 (anti-rollback counter 1) -> 0.0.9 (counter 0)" in b.tamper_note
    assert b.rc == 1
    # a fresh device has no anti-rollback NV index: floor 0, the signed older bundle runs
    assert "anti-rollback floor 0 (NV index 0x01000a50)" in b.console
    assert b.status["image_version"] == "0.0.9"
    assert "bundle 0.0.9 verified (anti-rollback counter 0)" in b.console, b.console[-2000:]
    e = b.event("bundle")
    assert e["status"] == "differs" and e["trusted"] and e["event"] == 1, e
    assert ("version 0.0.9 (anti-rollback counter 0, board qemu-x86_64), reference 0.1.0 "
            "(anti-rollback counter 1, board qemu-x86_64)") in e["problems"], e
    assert any(p.startswith("sha256 ") for p in e["problems"]), e
    assert b.bad_pcrs() == {14}
    for name in ("phone-app", "sip-media", "device-config", "ca-bundle"):
        e = b.event(name)
        # same bytes: only the (unvouched) version labels differ, never the digests
        assert e["status"] == "differs" and e["problems"] == ["version 0.0.9, reference 0.1.0"], e


def test_raised_floor_refuses_older_bundle(image: Image, golden: Booted,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Provisioned device: the golden boot unseals and commits counter 1 (NV bit 0 set, floor 1);
    after a rollback of the flash the stage loader refuses the older bundle, having measured it."""
    assert golden.rc == 0 and golden.status["unsealed"] is True, golden.status
    # (the console's status does not show the commit; the next boot's floor proves it)
    b = boot_and_verify(image, "floor", ["--rollback"], capsys)
    assert "anti-rollback floor 1 (NV index 0x01000a50)" in b.console, b.console[-2000:]
    assert b.status["state"] == "refused"
    assert b.status["reason"] == "anti-rollback: bundle counter 0 is below this device's floor 1"
    assert "REFUSED: anti-rollback: bundle counter 0 is below this device's floor 1" in b.console
    assert "starting the recovery console" in b.console
    # measured before the refusal: the verifier names the older bundle
    assert b.rc == 1 and b.bad_pcrs() == {14}
    e = b.event("bundle")
    assert e["status"] == "differs" and e["trusted"]
    assert e["version"] == "0.0.9 (anti-rollback counter 0, board qemu-x86_64)"


@pytest.mark.parametrize("section", ["initrd", "cmdline"])
def test_uki_section_modified(image: Image, section: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    b = boot_and_verify(image, f"uki-{section}", ["--uki", section], capsys)
    assert b.rc == 1
    assert b.bad_pcrs() == UKI_PCRS
    assert all(p["status"] == "unexpected" for p in b.report["pcrs"] if p["pcr"] in UKI_PCRS)
    assert set(b.statuses().values()) == {"ok"}  # the bundle itself is untouched
    assert b.status["state"] == "running"
