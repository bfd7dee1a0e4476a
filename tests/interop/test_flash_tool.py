"""`python -m host_tools.flash` against the phone's SMP server behind a pty (tests/interop/
smp_device.py): the outcome lines, resume after a broken transfer, a damaged line resent, the
device's refusal reason shown, a dead link reported. The tool runs as a subprocess, as people run
it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from firmware.update import slots as S
from tests.interop.smp_device import PtyDevice
from tests.interop.test_smp_smpclient import FACTORY, VENDOR, _pem, _upload_until, make_bundle
from tests.serial_line import SerialLine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def device(tmp_path: Path) -> Iterator[PtyDevice]:
    (tmp_path / "flash").mkdir()
    d = PtyDevice(tmp_path / "flash", _pem(VENDOR), "qemu-x86_64", floor=1, factory=FACTORY)
    d.slots.rec = S.initial("a", "1.0.0", 1, hashlib.sha256(FACTORY).digest())
    d.slots.save()
    yield d
    d.close()


def flash(tmp_path: Path, port: str, image: bytes, *extra: str) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "bundle.tar"
    f.write_bytes(image)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "host_tools.flash", "--port", port, *extra, str(f)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def test_flash_and_mark_for_test(device: PtyDevice, tmp_path: Path) -> None:
    new = make_bundle("1.1.0", 2, size=90000)
    r = flash(tmp_path, device.path, new, "--test")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"uploaded {len(new)} bytes in ")
    assert lines[0].endswith(f"slot 1 holds {hashlib.sha256(new).hexdigest()[:16]}, checked by the device")
    assert lines[1] == "marked for test: boots once, reverts unless the phone confirms it"
    assert f"100% {len(new)}/{len(new)} B" in r.stderr  # the progress bar, on stderr only
    assert device.flash.read_bundle("b") == new
    assert device.slots.rec["pending"] == "b" and not device.slots.rec["permanent"]


def test_refusal_names_the_device_reason(device: PtyDevice, tmp_path: Path) -> None:
    r = flash(tmp_path, device.path, make_bundle("1.1.0", 2, board="qemu-aarch64"))
    assert r.returncode == 1
    assert r.stdout.strip() == ("refused: invalid image — bundle is for board 'qemu-aarch64', "
                                "this is 'qemu-x86_64'")
    r = flash(tmp_path, device.path, make_bundle("0.9.0", 0))
    assert r.returncode == 1
    assert r.stdout.strip() == ("refused: current version is newer (anti-rollback) — anti-rollback: "
                                "bundle counter 0 is below this device's floor 1")
    assert device.flash.read_bundle("b") == b""


def test_broken_transfer_resumes(device: PtyDevice, tmp_path: Path) -> None:
    new = make_bundle("1.1.0", 2, size=150000)
    stopped = asyncio.run(asyncio.wait_for(_upload_until(device, new, 70000), 60))
    r = flash(tmp_path, device.path, new)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"(resumed at byte {stopped})" in r.stdout
    assert device.flash.read_bundle("b") == new


def test_damaged_line_is_rejected_and_resent(device: PtyDevice, tmp_path: Path) -> None:
    new = make_bundle("1.1.0", 2, size=30000)
    with SerialLine(device.path) as line:
        line.corrupt(1)  # one character of the next SMP continuation line on its way to the device
        r = flash(tmp_path, line.url, new, "--timeout", "1")
        assert line.corrupted == 1
    assert r.returncode == 0, r.stdout + r.stderr
    assert device.framing_errors == 1
    assert any("CRC16 mismatch" in e or "bad base64" in e for e in device.seen_events), device.seen_events
    assert device.flash.read_bundle("b") == new


def test_dead_link_is_one_clear_line(tmp_path: Path) -> None:
    r = flash(tmp_path, "socket://127.0.0.1:9", make_bundle("1.1.0", 2))
    assert r.returncode == 3
    assert r.stdout.startswith("cannot open socket://127.0.0.1:9: ")
    assert "Traceback" not in r.stdout + r.stderr
