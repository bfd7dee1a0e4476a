"""Board qemu-aarch64 under QEMU virt (TCG) + AAVMF + swtpm, booted ONCE for the whole module (a
boot costs ~50 s under TCG): a device provisioned from the image's reference.json (sealed SIP
account, PIN-protected user secret) boots to its prompt with Secure Boot on and user networking;
in that boot the fixture reads PCRs, logs and status, unlocks the PIN, and places an SRTP call to
a real baresip through a real Kamailio over TLS (as tests/system/test_call.py does on
qemu-x86_64). Every test then checks what that one boot left: the PCRs it read against the
prediction, the logs through the verifier and through tpm2-tools, the sealed credentials released
and the PIN unlock, the call's media heard by baresip, no secret in clear.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from host_tools.console import Console
from host_tools.provision import __main__ as provision_cli
from host_tools.qemu.device import Device, DeviceConfig
from host_tools.qemu.verify import Evidence, fetch_evidence, verifier_command
from host_tools.siplab import HAVE_BARESIP, Baresip, Kamailio, read_wav
from tests.system.conftest import build_image
from tests.system.sealing_support import PIN, USER_SECRET, assert_no_secret
from tests.system.test_call import (BARESIP_TONE, DOMAIN, PHONE_PASSWORD, PHONE_USER,  # noqa: F401
                                    TONE_TO_BARESIP, bob, kamailio_for_phone, wait_status)

REPO = Path(__file__).resolve().parents[2]
BOARD = "qemu-aarch64"
BOOT_TIMEOUT = 420.0

# one fixture does the build, the provisioning, the boot and the call: under a loaded TCG host
# that is more than the suite's default per-test timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@dataclass
class Boot:
    device: Device
    reference: dict[str, Any]
    qemu_cmd: list[str]
    status: dict[str, Any]
    pcrs: dict[str, str]
    evidence: Evidence
    pin_answer: dict[str, Any]
    status_after_pin: dict[str, Any]
    call: dict[str, Any]
    console: str
    flash: bytes
    seconds_to_prompt: float


@pytest.fixture(scope="module")
def aarch64_image() -> Path:
    if shutil.which("qemu-system-aarch64") is None:
        pytest.fail("qemu-system-aarch64 is missing: run `make deps` (Debian qemu-system-arm)")
    out = REPO / "build" / BOARD
    build_image(BOARD, out)
    return out


@pytest.fixture(scope="module")
def kam(aarch64_image: Path) -> Iterator[Kamailio]:
    yield from kamailio_for_phone(aarch64_image)


def _call_bob(con: Console, kam: Kamailio, bob: Baresip) -> dict[str, Any]:
    """Register, call baresip with a 1 kHz tone for 3 s of media, hang up; what each step saw."""
    from firmware.phone.tone import dominant_frequency

    out: dict[str, Any] = {}
    try:
        out["registered"] = wait_status(
            con, lambda s: s.get("registered") is True or s.get("unsealed") is False,
            "registration", timeout=180)
        out["kamailio_saw_register"] = "REQ REGISTER" in kam.log.read_text(errors="replace")
        bob.clear_recordings()
        out["call_answer"] = con.command("call sip:bob@%s tone=%d" % (DOMAIN, TONE_TO_BARESIP))
        out["connected"] = wait_status(
            con, lambda s: isinstance(s.get("call"), dict) and s["call"].get("state") == "connected",
            "call connected", 60)
        out["media"] = wait_status(
            con, lambda s: isinstance(s.get("call"), dict)
            and s["call"].get("media", {}).get("sent", 0) >= 150, "3 s of media sent", 60)
        out["hangup"] = con.command("hangup")
        out["ended"] = wait_status(con, lambda s: s.get("call") is None, "call ended", 30)
        dec = bob.recordings().get("dec")
        out["heard"] = dominant_frequency(read_wav(dec)) if dec is not None else None
        out["baresip_decrypt_failures"] = "failed to decrypt RTP" in bob.log_text()
    except (AssertionError, OSError, ValueError) as e:   # the call test reports it
        out["error"] = f"{type(e).__name__}: {e}"
    return out


@pytest.fixture(scope="module")
def boot(aarch64_image: Path, kam: Kamailio, bob: Baresip,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Boot]:
    base = tmp_path_factory.mktemp("aarch64")
    devices = base / "devices"
    (base / "secrets.json").write_text(json.dumps(
        {"sip-account": {"username": PHONE_USER, "password": PHONE_PASSWORD},
         "user-secret": USER_SECRET}))
    (base / "pin").write_bytes(PIN)
    rc = provision_cli.main(["--device", "a64", "--board", BOARD, "--build-dir",
                             str(aarch64_image), "--devices-dir", str(devices),
                             "--secrets", str(base / "secrets.json"),
                             "--pin-file", str(base / "pin"),
                             "--policy-key", str(base / "policy-signing-key.pem")])
    assert rc == 0
    device = Device("a64", DeviceConfig(board=BOARD, build_dir=aarch64_image,
                                        devices_dir=devices, network=True))
    reference = json.loads((aarch64_image / "reference.json").read_text())
    with device.running("tcp") as run:
        con = run.console
        assert con is not None
        qemu_cmd = list(run.proc.args)  # type: ignore[arg-type]
        try:
            t0 = time.monotonic()
            run.wait_prompt(con, BOOT_TIMEOUT)
            seconds = time.monotonic() - t0
            status = con.status()
            pcrs = con.pcrs("sha256")["sha256"]
            evidence = fetch_evidence(con, base / "evidence")
            text = con.command(f"pin {PIN.decode()}").strip()
            assert PIN.decode() not in text, f"the firmware echoed the PIN: {text!r}"
            pin_answer = json.loads(text)
            status_after_pin = con.status()
            call: dict[str, Any] = {"media_port": run.forward_media(con, timeout=120)}
            call.update(_call_bob(con, kam, bob))
        finally:
            run.shutdown(con)
    print(f"qemu-aarch64: prompt after {seconds:.1f} s")
    yield Boot(device, reference, qemu_cmd, status, pcrs, evidence, pin_answer,
               status_after_pin, call, device.console_log.read_text(errors="replace"),
               device.disk.read_bytes(), seconds)


def test_boots_the_aarch64_machine_with_secure_boot(boot: Boot) -> None:
    cmd = boot.qemu_cmd
    assert cmd[0] == "qemu-system-aarch64"
    assert cmd[cmd.index("-machine") + 1] == "virt"
    assert cmd[cmd.index("-cpu") + 1] == "cortex-a57"
    assert "tpm-tis-device,tpmdev=tpm0" in cmd
    assert any(a.endswith("file=/usr/share/AAVMF/AAVMF_CODE.fd") for a in cmd)
    assert boot.reference["secure_boot"]["enabled"] is True
    st = boot.status
    assert st["state"] == "running", st
    assert "console=ttyAMA0,115200" in st["kernel_cmdline"].split()
    # the kernel the UKI carried is the arm64 cloud kernel
    assert boot.reference["boot"]["kernel_package"].startswith("linux-image-")
    assert "cloud-arm64" in boot.reference["boot"]["kernel_package"]
    assert "BdsDxe: loading Boot" in boot.console  # AAVMF's boot manager started the disk


def test_booted_pcrs_equal_the_prediction(boot: Boot) -> None:
    predicted = boot.reference["pcrs"]["sha256"]
    assert set(predicted) >= {"4", "5", "7", "9", "11", "12", "14"}
    for pcr, value in predicted.items():
        assert boot.pcrs[pcr] == value, f"PCR {pcr}: booted {boot.pcrs[pcr]}, predicted {value}"
    assert boot.status["pcr14"] == predicted["14"]


def test_logs_verify_against_the_reference(boot: Boot) -> None:
    ev = boot.evidence
    proc = subprocess.run(verifier_command(ev, boot.device.build_dir / "reference.json",
                                           ["--json"]),
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["result"] == "ok", report
    assert {p["pcr"] for p in report["pcrs"] if p["status"] == "ok"} >= {4, 5, 7, 9, 11, 12, 14}
    assert [e["name"] for e in report["events"] if e["status"] == "ok"][-4:] == [
        "phone-app", "sip-media", "device-config", "ca-bundle"]


def _tpm2_eventlog_pcrs(log: Path) -> dict[int, str]:
    """PCR values tpm2_eventlog (tpm2-tools, an independent parser) replays from a log."""
    proc = subprocess.run(["tpm2_eventlog", str(log)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    block = text[text.index("  sha256:"):]
    block = block[:block.index("  sha384:")] if "  sha384:" in block else block
    return {int(m.group(1)): m.group(2)
            for m in re.finditer(r"^\s+(\d+)\s*:\s*0x([0-9a-fA-F]{64})$", block, re.M)}


def test_tpm2_eventlog_replays_the_firmware_log_to_the_booted_pcrs(boot: Boot) -> None:
    replayed = _tpm2_eventlog_pcrs(boot.evidence.firmware_log)
    for pcr in (0, 4, 5, 7, 9, 11):
        assert replayed[pcr].lower() == boot.pcrs[str(pcr)], f"PCR {pcr}"
    replayed14 = _tpm2_eventlog_pcrs(boot.evidence.phone_log)
    assert replayed14[14].lower() == boot.pcrs["14"]


def test_secure_boot_verified_the_uki_with_the_vendor_db_key(boot: Boot) -> None:
    proc = subprocess.run(["tpm2_eventlog", str(boot.evidence.firmware_log)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    events = proc.stdout.split("- EventNum:")
    authority = [e for e in events if "EV_EFI_VARIABLE_AUTHORITY" in e]
    assert len(authority) == 1, "one image verified by db: the UKI"
    sb = [e for e in events if "EV_EFI_VARIABLE_DRIVER_CONFIG" in e and "SecureBoot" in e]
    assert sb and "VariableData: \"01\"" in sb[0], sb


def test_sealed_credentials_are_released_and_the_pin_unlocks(boot: Boot) -> None:
    st = boot.status
    assert st["unsealed"] is True and st["credentials_state"] == "unsealed", st
    assert "unsealed_reason" not in st
    assert boot.pin_answer == {"unlocked": True, "name": "user-secret",
                               "length": len(USER_SECRET),
                               "da": boot.status_after_pin["da"]}, boot.pin_answer
    assert boot.status_after_pin["da"]["counter"] == 0, boot.status_after_pin
    assert_no_secret(boot.console + json.dumps(st), boot.flash,
                     typed=["status", "pcrs", "pin " + PIN.decode()])
    assert PHONE_PASSWORD.encode() not in boot.flash
    assert PHONE_PASSWORD not in boot.console + json.dumps(boot.call)


def test_calls_baresip_over_tls_with_srtp(boot: Boot) -> None:
    c = boot.call
    assert "error" not in c, c
    assert c["media_port"] > 0 and c["media_port"] % 2 == 0, c
    reg = c["registered"]
    assert reg["registered"] is True and reg["transport"] == "TLS" and reg["tls_verified"], reg
    assert reg["aor"] == "sip:%s@%s" % (PHONE_USER, DOMAIN)
    assert c["kamailio_saw_register"] is True
    assert c["call_answer"].startswith("calling sip:bob@"), c["call_answer"]
    call = c["connected"]["call"]
    assert call["direction"] == "out" and call["peer"] == "sip:bob@" + DOMAIN, call
    assert call["security"] == "locked" and call["suite"] in (
        "AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80"), call
    media = c["media"]["call"]["media"]
    assert media["dropped"] == {k: 0 for k in media["dropped"]}, media
    assert c["hangup"].startswith("hanging up call "), c["hangup"]
    assert c["ended"]["last_call"]["reason"] == "local hangup"
    assert c["heard"] is not None, "baresip recorded nothing"
    f, share = c["heard"]
    assert abs(f - TONE_TO_BARESIP) <= 25 and share > 0.5, c["heard"]
    assert c["baresip_decrypt_failures"] is False
