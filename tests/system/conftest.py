"""System-test fixtures: the built image (built first if missing) and ONE booted phone per test
module, reused by every check (a boot costs ~20 s under TCG).

``PHONE_IMAGE_DIR`` points the tests at another built image directory (default
``build/qemu-x86_64``, e.g. a production-signed build)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from host_tools.console import Console
from host_tools.qemu.device import Device, DeviceConfig, Running

REPO = Path(__file__).resolve().parents[2]
BOARD = "qemu-x86_64"


def image_dir() -> Path:
    return Path(os.environ.get("PHONE_IMAGE_DIR", REPO / "build" / BOARD))


@pytest.fixture(scope="session")
def built_image() -> Path:
    out = image_dir()
    if not (out / "disk.img").is_file() or not (out / "reference.json").is_file():
        proc = subprocess.run([sys.executable, "-m", "host_tools.image", "--board", BOARD,
                               "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                              timeout=1800, check=False)
        if proc.returncode != 0:
            pytest.fail(f"image build failed:\n{proc.stdout}\n{proc.stderr}")
    return out


@dataclass
class BootedPhone:
    device: Device
    run: Running
    console: Console
    reference: dict[str, Any]
    seconds_to_prompt: float


@pytest.fixture(scope="module")
def phone(built_image: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[BootedPhone]:
    """A fresh device (new TPM, new flash copy) booted to its prompt; powered off at the end
    unless a test already did."""
    devices = tmp_path_factory.mktemp("devices")
    device = Device("system", DeviceConfig(build_dir=built_image, devices_dir=devices))
    reference = json.loads((built_image / "reference.json").read_text())
    with device.running("tcp") as run:
        con = run.console
        assert con is not None
        try:
            t0 = time.monotonic()
            run.wait_prompt(con, timeout=300)
            yield BootedPhone(device, run, con, reference, time.monotonic() - t0)
        finally:
            run.shutdown(con)
