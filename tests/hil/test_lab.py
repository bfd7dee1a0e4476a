# mypy: disable-error-code="no-untyped-call"
"""What a lab checks on every board, through the HIL session's phone (conftest.py: labgrid's
QEMU phone by default, ``--lg-env`` for a lab's board, ``--target`` for a bare console):

* measured boot verified: the phone's own logs and PCRs over its console, checked by
  ``host_tools.verify`` against the image's reference.json; the firmware log cross-checked
  by tpm2-tools' ``tpm2_eventlog`` (an independent replay);
* PIN unlock of the user secret, which never shows on the console;
* a call through the lab's registrar (Kamailio over TLS, the test set-up of tests/system/
  test_call.py) to a baresip that hears the phone's tone;
* the remote path (QEMU only: it exports this phone's UART): a labgrid coordinator and exporter
  on localhost, labgrid-client creates and acquires the place, and part of this suite runs
  against it through ``board/qemu-x86_64/labgrid-remote.yaml``; JUnit XML checked;
* a power cycle through labgrid's power driver: firmware, stage loader and prompt seen again,
  the same PCR 14, credentials unsealed again.

* an update with revert: a newer bundle flashed over the console with MCUmgr SMP
  (``python -m host_tools.flash --test``), booted once on trial by a power cycle; shipped without
  its signed PCR policy, the trial never releases the credentials, so it never confirms itself,
  and the next power cycle reverts to the old bank, which unseals again. The bundle is the
  environment's ``update_bundle`` option (a lab's file), or, on the QEMU phone, one built here
  from the image's tree and keys with a higher version and anti-rollback counter.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from host_tools.console import Console
from host_tools.qemu.verify import fetch_evidence, verifier_command
from host_tools.siplab import HAVE_BARESIP, Baresip, Kamailio, read_wav
from tests.hil.conftest import REPO, Hil, image_dir

pytestmark = pytest.mark.slow

DOMAIN = "127.0.0.1"
TONE = 1000


def wait_status(con: Console, cond: Callable[[dict[str, Any]], bool], what: str,
                timeout: float = 90.0) -> dict[str, Any]:
    return con.wait_status(cond, what, timeout)


def eventlog_pcrs(log: Path) -> dict[int, str]:
    """sha256 PCR values replayed by tpm2-tools' tpm2_eventlog (an oracle independent of ours)."""
    tool = shutil.which("tpm2_eventlog")
    if tool is None:
        pytest.fail("tpm2_eventlog (Debian tpm2-tools) is not installed: host_tools/deps.sh")
    out = subprocess.run([tool, str(log)], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    tail = out[out.index("\npcrs:"):]
    bank = tail[tail.index("sha256:"):]
    values: dict[int, str] = {}
    for m in re.finditer(r"^\s+(\d+)\s*:\s*0x([0-9A-Fa-f]{64})\s*$", bank, re.M):
        if int(m.group(1)) in values:
            break   # the next bank
        values[int(m.group(1))] = m.group(2).lower()
    return values


def test_measured_boot_verified(hil: Hil, tmp_path: Path) -> None:
    ev = fetch_evidence(hil.console, tmp_path)
    proc = subprocess.run(verifier_command(ev, hil.reference, ["--json"]), cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["result"] == "ok" and report["notes"] == [], report
    names = {e["name"] for e in report["events"] if e["status"] == "ok"}
    assert {"phone-app", "sip-media", "device-config", "ca-bundle"} <= names, names
    pcrs = json.loads(ev.pcrs.read_text())["sha256"]
    firmware = eventlog_pcrs(ev.firmware_log)
    for p in range(8):
        assert firmware[p] == pcrs[str(p)], f"PCR {p}: tpm2_eventlog replay != the TPM's value"
    assert eventlog_pcrs(ev.phone_log)[14] == pcrs["14"]


def test_pin_unlock(hil: Hil) -> None:
    con = hil.console
    start = len(con.text())
    st = con.status()
    assert st["unsealed"] is True, st
    tries = st["da"]["counter"]
    # malformed input never reaches the TPM: one error line, no try spent
    assert con.command("pin 12").startswith("error: pin"), "short PIN accepted"
    ok = json.loads(con.command(f"pin {hil.pin}"))
    assert ok["unlocked"] is True and ok["name"] == "user-secret", ok
    if "user_secret_length" in hil.options:
        assert ok["length"] == hil.options["user_secret_length"], ok
    assert ok["da"]["counter"] == tries and ok["da"]["in_lockout"] is False, ok
    said = con.text()[start:]
    secret = hil.secrets.get("user-secret")
    if secret is not None:
        assert secret not in said
    # the PIN shows only in the tty's echo of the line typed
    for line in said.replace("\r", "\n").split("\n"):
        if hil.pin in line:
            assert line.strip().removeprefix("phone>").strip() == f"pin {hil.pin}", line


@pytest.fixture
def registrar() -> Iterator[Kamailio]:
    """The lab's registrar: Kamailio over TLS on 127.0.0.1:5061 (the phone's signed
    device-config names 10.0.2.2:5061, the host seen from QEMU's user network)."""
    from tests.system.test_call import kamailio_for_phone
    yield from kamailio_for_phone(image_dir())


def test_call_through_lab_registrar(hil: Hil, registrar: Kamailio) -> None:
    from firmware.phone.tone import dominant_frequency
    if not HAVE_BARESIP:
        pytest.skip("needs Debian baresip-core (the lab's far end)")
    bob = Baresip(registrar.dir / "bs-bob", "bob", "bobpw", registrar, record=True)
    try:
        con = hil.console
        st = wait_status(con, lambda s: s.get("registered") is True, "registration", 120)
        assert st["transport"] == "TLS" and st["tls_verified"] is True, st
        assert st["aor"] == f"sip:{hil.options.get('sip_user', 'alice')}@{DOMAIN}", st
        qemu = hil.driver("QemuPhoneDriver")
        if qemu is not None:
            assert qemu.forward_media() == st["media_port"]   # host peers reach its RTP port
        out = con.command(f"call sip:bob@{DOMAIN} tone={TONE}")
        assert out.startswith("calling sip:bob@"), out
        st = wait_status(con, lambda s: (s.get("call") or {}).get("state") == "connected",
                         "call connected", 30)
        assert st["call"]["security"] == "locked" and st["call"]["why"] == "", st["call"]
        wait_status(con, lambda s: (s.get("call") or {}).get("media", {}).get("sent", 0) >= 150,
                    "3 s of media sent", 30)
        assert con.command("hangup").startswith("hanging up call ")
        st = wait_status(con, lambda s: s.get("call") is None, "call ended", 15)
        assert st["last_call"]["reason"] == "local hangup", st["last_call"]
        time.sleep(1)   # baresip closes its recording
        dec = bob.recordings().get("dec")
        assert dec is not None, "baresip recorded nothing"
        f, share = dominant_frequency(read_wav(dec))
        assert abs(f - TONE) <= 25 and share > 0.5, (f, share)
        assert "REQ REGISTER" in registrar.log.read_text(errors="replace")
    finally:
        bob.stop()


# --- the remote path ---------------------------------------------------------------------

REMOTE_TESTS = ["tests/hil/test_console_hil.py::test_status_fields",
                "tests/hil/test_console_hil.py::test_pcrs_and_logs_agree",
                "tests/hil/test_lab.py::test_measured_boot_verified"]


class Proc:
    """A labgrid daemon, stopped by its PID (terminate, wait, kill)."""

    def __init__(self, cmd: list[str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            # cwd: the coordinator keeps places.yaml and resources.yaml in its working directory
            self.proc = subprocess.Popen(cmd, cwd=log.parent, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _client(coordinator: str, *args: str, timeout: float = 60) -> str:
    proc = subprocess.run([_bin("labgrid-client"), "-x", coordinator, "-p", "qemu-phone", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"labgrid-client {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def test_remote_place_runs_the_suite(hil: Hil, tmp_path: Path) -> None:
    from host_tools.ports import free_port
    qemu = hil.driver("QemuPhoneDriver")
    if qemu is None:
        pytest.skip("the remote-path test exports a QEMU phone's UART; this target has none")
    url = qemu.serial_url()
    port = int(url.rsplit(":", 1)[1])
    console_driver = hil.target.get_driver("PhoneConsoleDriver", activate=False)
    hil.target.deactivate(console_driver)   # QEMU's socket takes one client: the remote one now
    coordinator = f"127.0.0.1:{free_port()}"
    (tmp_path / "exporter.yaml").write_text(
        "qemu-phone:\n  NetworkSerialPort:\n    host: 127.0.0.1\n"
        f"    port: {port}\n    speed: 115200\n    protocol: raw\n")
    procs: list[Proc] = []
    try:
        coord = Proc([_bin("labgrid-coordinator"), "--listen", coordinator], tmp_path / "coord.log")
        procs.append(coord)
        # the exporter gives up (exit 100) on a coordinator that is not listening yet: wait for it
        _wait_listening(coord, coordinator, 60)
        exporter = Proc([_bin("labgrid-exporter"), "--coordinator", coordinator, "--name",
                         "lab-host", "--hostname", "127.0.0.1", str(tmp_path / "exporter.yaml")],
                        tmp_path / "exporter.log")
        procs.append(exporter)
        deadline = time.monotonic() + 60
        while "qemu-phone/NetworkSerialPort" not in (resources := _resources(coordinator)):
            assert coord.proc.poll() is None, coord.text()
            assert exporter.proc.poll() is None, exporter.text()
            assert time.monotonic() < deadline, f"exporter never registered: {resources}"
            time.sleep(0.5)
        _client(coordinator, "create")
        _client(coordinator, "add-match", "lab-host/qemu-phone/NetworkSerialPort")
        _client(coordinator, "acquire")
        shown = _client(coordinator, "show")
        assert "acquired:" in shown and "NetworkSerialPort" in shown, shown
        junit = tmp_path / "remote.xml"
        env = {**os.environ, "PYTHONPATH": str(REPO),
               "PHONE_IMAGE_DIR": str(image_dir()), "LG_COORDINATOR": coordinator}
        env.pop("PHONE_TARGET", None)
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-c", str(REPO / "tests" / "pytest.ini"),
             f"--rootdir={REPO}",
             "--lg-env", str(REPO / "board" / "qemu-x86_64" / "labgrid-remote.yaml"),
             "--lg-coordinator", coordinator, f"--junitxml={junit}", *REMOTE_TESTS],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        root = ET.parse(junit).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        assert suite is not None, ET.tostring(root)[:500]
        assert (suite.get("tests"), suite.get("failures"), suite.get("errors"),
                suite.get("skipped")) == (str(len(REMOTE_TESTS)), "0", "0", "0"), suite.attrib
        names = sorted(c.get("name") or "" for c in suite.iter("testcase"))
        assert names == sorted(t.rsplit("::", 1)[1] for t in REMOTE_TESTS), names
        props = {p.get("name"): p.get("value") for p in suite.iter("property")}
        assert props.get("TARGET_MAIN_REMOTE") == "qemu-phone", props   # labgrid's own record
        _client(coordinator, "release")
    finally:
        for p in reversed(procs):
            p.stop()
        hil.target.activate(console_driver)
        hil.console.wait_prompt(timeout=60)   # this session's console again
    assert hil.console.status()["state"] == "running"


def _wait_listening(proc: Proc, address: str, timeout: float) -> None:
    import socket
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        assert proc.proc.poll() is None, proc.text()
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {address}: {proc.text()}"
            time.sleep(0.2)


def _resources(coordinator: str) -> str:
    proc = subprocess.run([_bin("labgrid-client"), "-x", coordinator, "resources"],
                          capture_output=True, text=True, timeout=60, check=False)
    return proc.stdout


def test_power_cycle_through_labgrid(hil: Hil) -> None:
    strategy = hil.strategy
    power = None if strategy is None else strategy.power
    if power is None:
        pytest.skip("no power driver on this target (--target, or a place without a power "
                    "port): a power cycle needs one")
    before = hil.console.status()
    boots = getattr(power, "boots", None)
    strategy.cycle()        # PowerProtocol.cycle(), then firmware -> stage loader -> prompt
    assert strategy.status.name == "prompt"
    if boots is not None:
        assert power.boots == boots + 1
    text = hil.console.text()
    marks = [text.find(strategy.firmware_marker), text.find(strategy.stage_marker),
             text.find("phone> ")]
    assert -1 not in marks and marks == sorted(marks), (marks, text[-2000:])
    after = hil.console.status()
    assert after["pcr14"] == before["pcr14"]       # the same measured bundle
    assert after["unsealed"] is True, after         # the TPM kept its seeds: it unseals again
    assert after["da"]["counter"] == before["da"]["counter"]   # off was clean (TPM2_Shutdown)


# --- an update with revert ----------------------------------------------------------------

def _update_bundle(hil: Hil, tmp_path: Path) -> tuple[bytes, str]:
    """(bundle bytes, its version): the lab's file, or one built from this image's tree."""
    given = hil.options.get("update_bundle")
    if given is not None:
        data = Path(given).read_bytes()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.extractfile("manifest.json")
            assert member is not None, f"{given}: no manifest.json (not a phone bundle)"
            return data, str(json.loads(member.read())["bundle_version"])
    if not (REPO / "build" / "keys" / "dev-signing-key.pem").is_file():
        pytest.fail("no update_bundle option and no vendor key in build/keys to build one")
    from host_tools.image.build import BuildOptions, build
    ref = json.loads(hil.reference.read_text())
    build(BuildOptions(board=ref["board"], out=tmp_path / "update", repo=REPO,
                       cache=REPO / "build" / "cache", keys=REPO / "build" / "keys",
                       bundle_version="0.9.0", anti_rollback_counter=ref["anti_rollback_counter"] + 1))
    return (tmp_path / "update" / "bundle.tar").read_bytes(), "0.9.0"


def test_update_with_revert(hil: Hil, tmp_path: Path) -> None:
    strategy = hil.strategy
    if strategy is None or strategy.power is None:
        pytest.skip("no power driver on this target (--target, or a place without a power "
                    "port): the trial boot and the revert are power cycles")
    before = hil.console.status()
    assert before["slot"]["running"] == before["slot"]["confirmed"], before["slot"]
    old_bank, old_version = before["slot"]["running"], before["image_version"]
    bundle, version = _update_bundle(hil, tmp_path)
    (tmp_path / "update.tar").write_bytes(bundle)
    console_driver = hil.target.get_driver("PhoneConsoleDriver")
    url = console_driver.url()
    hil.target.deactivate(console_driver)   # the flash tool takes the line (one client at a time)
    try:
        flash = subprocess.run([sys.executable, "-m", "host_tools.flash", "--port", url, "--test",
                                str(tmp_path / "update.tar")], cwd=REPO, capture_output=True,
                               text=True, timeout=900, check=False)
    finally:
        hil.target.activate(console_driver)
    assert flash.returncode == 0, flash.stdout + flash.stderr
    assert flash.stdout.splitlines()[-1] == ("marked for test: boots once, reverts unless the "
                                             "phone confirms it"), flash.stdout
    # 1. power cycle: the new bundle boots once, on trial; without its signed PCR policy the TPM
    #    keeps the credentials sealed, so the trial never reaches ready and never confirms
    strategy.cycle()
    trial = hil.console.wait_status(lambda s: s.get("credentials_state") not in (None, "pending"),
                                    "the trial's credential release decided", 60)
    assert trial["image_version"] == version, trial
    assert trial["slot"]["trial"] is True and trial["slot"]["running"] != old_bank, trial["slot"]
    # refused by the TPM itself: PCR 14 is not one the sealed (authorized) policy approves
    assert trial["unsealed"] is False and trial["credentials_state"] == "integrity-failed", trial
    assert "TPM2_PolicyAuthorize" in trial["unsealed_reason"], trial["unsealed_reason"]
    assert trial["slot"]["confirmed"] == old_bank and trial["slot"]["floor"] == before["slot"]["floor"]
    # 2. power cycle again: the unconfirmed trial is reverted, the old bank unseals as before
    strategy.cycle()
    after = hil.console.wait_status(lambda s: s.get("unsealed") is True, "credentials released", 120)
    assert after["slot"]["running"] == old_bank and after["slot"]["trial"] is False, after["slot"]
    assert after["image_version"] == old_version and after["pcr14"] == before["pcr14"], after
    assert after["slot"]["last"].startswith("reverted to bank %s" % old_bank), after["slot"]
    assert "was never confirmed" in after["slot"]["last"], after["slot"]
    assert after["slot"]["floor"] == before["slot"]["floor"], after["slot"]   # no rise: no confirm
