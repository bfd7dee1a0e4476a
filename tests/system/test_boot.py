"""Boot the built image once under QEMU + OVMF + swtpm and check what the phone reports over its
serial console: the stage loader measured exactly the signed bundle's components into PCR 14
(the phone log replays to the TPM's PCR 14 and to the image's prediction), the phone runs
unprivileged, the console answers bad input and powers off cleanly (TPM2_Shutdown first)."""

from __future__ import annotations

import json
import subprocess
import sys

from typing import Any, Callable, cast

import pytest

from firmware.eventlog import parser, replayer
from firmware.eventlog import component
from host_tools.qemu.verify import fetch_evidence, verifier_command
from tests.system.conftest import REPO, BootedPhone

pytestmark = pytest.mark.slow
# firmware/ is untyped (MicroPython subset): give the three functions used here their types.
parse_log = cast(Callable[[bytes], Any], parser.parse_log)
replay = cast(Callable[..., dict[str, dict[int, bytes]]], replayer.replay)
decode_component = cast(Callable[[bytes], tuple[str, str]], component.decode_component)
decode_bundle = cast(Callable[[bytes], tuple[str, str, int]], component.decode_bundle)


def test_boots_to_prompt_with_help(phone: BootedPhone) -> None:
    assert phone.seconds_to_prompt < 300
    text = phone.console.command("help")
    for cmd in ("help", "status", "pcrs", "log", "poweroff"):
        assert f"  {cmd}" in text


def test_status_reports_the_verified_bundle(phone: BootedPhone) -> None:
    st = phone.console.status()
    ref = phone.reference
    assert st["state"] == "running", st.get("reason")
    assert st["image_version"] == ref["image_version"]
    assert [(c["name"], c["version"], c["sha256"]) for c in st["components"]] == [
        (c["name"], c["version"], c["sha256"]) for c in ref["components"]]
    assert st["uid"] == 1000  # not root
    assert st["unsealed"] is False and st["unsealed_reason"]
    assert st["registered"] is False
    assert st["pcr14"] == ref["pcrs"]["sha256"]["14"]


def test_pcr14_is_the_replay_of_the_phone_log(phone: BootedPhone) -> None:
    pcrs = phone.console.pcrs()["sha256"]
    logs = phone.console.logs()
    log = parse_log(logs["phone"])
    replayed = replay(log, banks=("sha256",))["sha256"]
    assert replayed[14].hex() == pcrs["14"] == phone.reference["pcrs"]["sha256"]["14"]
    ev14 = [e for e in log.events if e.pcr == 14]
    # first the bundle's identity (TPM-vouched: its digest is of those very bytes), then the
    # components, then the separator
    bundle = phone.reference["bundle"]
    assert decode_bundle(ev14[0].data) == (bundle["board"], bundle["bundle_version"],
                                           bundle["anti_rollback_counter"])
    assert ev14[0].digest("sha256").hex() == bundle["sha256"]
    assert [decode_component(e.data)[0] for e in ev14[1:-1]] == [
        c["name"] for c in phone.reference["components"]]
    assert len(ev14) == len(phone.reference["components"]) + 2
    assert ev14[-1].type_name == "EV_SEPARATOR"
    assert {e.pcr for e in log.events if e.type_name != "EV_NO_ACTION"} == {14}
    # the firmware log explains the boot PCRs, and they are what the image predicted
    fw = replay(parse_log(logs["firmware"]), banks=("sha256",))["sha256"]
    for p in (4, 5, 7, 9, 11):
        assert fw[p].hex() == pcrs[str(p)] == phone.reference["pcrs"]["sha256"][str(p)], p


def test_live_boot_verifies_against_reference(phone: BootedPhone) -> None:
    ev = fetch_evidence(phone.console, phone.device.dir / "verify")
    ref = phone.device.build_dir / "reference.json"
    proc = subprocess.run(verifier_command(ev, ref, []), cwd=REPO, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run(verifier_command(ev, ref, ["--json"]), cwd=REPO, capture_output=True,
                          text=True, check=False)
    assert json.loads(proc.stdout)


def test_bad_input_is_answered_and_console_keeps_running(phone: BootedPhone) -> None:
    con = phone.console
    assert con.command("reboot") == "error: unknown command 'reboot' (type help)\n"
    assert con.command("status please") == "error: status takes no arguments\n"
    assert con.command("pcrs md5").startswith("error: unknown bank 'md5'")
    assert con.command("log kernel") == "error: unknown log 'kernel' (firmware, phone or all)\n"
    assert con.command("x" * 300).startswith("error: line too long")
    assert con.status()["state"] == "running"


def test_poweroff_is_clean(phone: BootedPhone) -> None:
    said = phone.console.poweroff(timeout=60)
    assert "TPM shut down; powering off" in said
    assert phone.run.proc.wait(timeout=60) == 0
    log = phone.device.console_log.read_text(errors="replace")
    assert "reboot: Power down" in log and "Kernel panic" not in log


