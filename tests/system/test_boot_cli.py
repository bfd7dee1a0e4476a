"""The two command lines users and CI run against one device: ``make verify`` (boot, fetch the
logs and PCRs over the console, run the verifier) and the scripted ``--exec`` mode, on the same
device twice: its state (TPM, flash) persists, and the second boot measures the same PCR 14."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from tests.system.conftest import REPO

pytestmark = pytest.mark.slow


def run(args: list[str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_make_verify_then_exec_on_the_same_device(built_image: Path, tmp_path: Path) -> None:
    common = ["--device", "cli", "--image-dir", str(built_image), "--devices-dir", str(tmp_path)]
    proc = run(["-m", "host_tools.qemu.verify", *common])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "measured-boot verification: OK" in proc.stdout
    evidence = tmp_path / "cli" / "verify"
    pcr14 = json.loads((evidence / "pcrs.json").read_text())["sha256"]["14"]
    assert json.loads((evidence / "status.json").read_text())["state"] == "running"

    proc = run(["-m", "host_tools.qemu", *common, "--exec", "status", "--exec", "pcrs",
                "--exec", "bogus"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, proc.stdout
    assert json.loads(lines[0])["pcr14"] == pcr14  # same flash, same measurement
    assert json.loads(lines[1])["sha256"]["14"] == pcr14
    assert lines[2] == "error: unknown command 'bogus' (type help)"
    assert "flashed" not in proc.stderr  # the device kept its flash
    assert "prompt after" in proc.stderr and "powered off" in proc.stderr
    assert "reboot: Power down" in (tmp_path / "cli" / "console.log").read_text(errors="replace")


def test_interactive_console_on_the_terminal(built_image: Path, tmp_path: Path) -> None:
    """``make qemu``: progress while booting, then the terminal is the console; Ctrl-] powers
    the phone off cleanly and the runner exits 0 with nothing left running."""
    args = ["-m", "host_tools.qemu", "--device", "term", "--image-dir", str(built_image),
            "--devices-dir", str(tmp_path)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = pexpect.spawn(sys.executable, args, cwd=str(REPO), env=env, encoding="utf-8",
                          timeout=300, dimensions=(24, 120))
    try:
        child.expect(r"\[term\] booting +\d+\.\d s \|")
        child.expect_exact("Ctrl-] powers off and leaves")
        child.expect_exact("phone> ")
        child.send("status\r")
        child.expect('"state":"running"')
        child.expect_exact("phone> ")
        child.send("\x1d")
        child.expect_exact("powering off")
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    log = (tmp_path / "term" / "console.log").read_text(errors="replace")
    assert "TPM shut down; powering off" in log and "reboot: Power down" in log
