"""System-test fixtures: the built image (built first if missing) and ONE booted phone per test
module, reused by every check (a boot costs ~20 s under TCG).

``PHONE_IMAGE_DIR`` points the tests at another built image directory (default
``build/qemu-x86_64``, e.g. a production-signed build)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from host_tools.console import Console
from host_tools.image.build import BuildOptions, BuildResult, build
from host_tools.qemu.device import Device, DeviceConfig, Running

REPO = Path(__file__).resolve().parents[2]
BOARD = "qemu-x86_64"


def image_dir() -> Path:
    return Path(os.environ.get("PHONE_IMAGE_DIR", REPO / "build" / BOARD))


@pytest.fixture(scope="session")
def built_image() -> Path:
    out = image_dir()
    if not (out / "disk.img").is_file() or not (out / "reference.json").is_file():
        build_image(BOARD, out)
    return out


def build_image(board: str, out: Path) -> None:
    """`python -m host_tools.image` for *board* into *out*, as `make image` runs it."""
    proc = subprocess.run([sys.executable, "-m", "host_tools.image", "--board", board,
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=1800, check=False)
    if proc.returncode != 0:
        pytest.fail(f"image build failed:\n{proc.stdout}\n{proc.stderr}")


@dataclass(frozen=True)
class SnapshotBuild:
    repo: Path   # frozen copy of firmware/ and board/ (others may edit firmware/ meanwhile)
    keys: Path   # the build's own keys (vendor signing key, Secure Boot PK/KEK/db), not build/keys
    result: BuildResult

    def build(self, out: Path, **kw: object) -> BuildResult:
        """Another build from the same snapshot and keys (options as BuildOptions takes them)."""
        return build_snapshot(self.repo, self.keys, out, **kw)


def build_snapshot(repo: Path, keys: Path, out: Path, **kw: object) -> BuildResult:
    return build(BuildOptions(board=BOARD, out=out, repo=repo, cache=REPO / "build" / "cache",
                              keys=keys, **kw))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def snapshot_build(tmp_path_factory: pytest.TempPathFactory) -> SnapshotBuild:
    """ONE image built from a snapshot of the tree with keys of its own into a temporary directory,
    for the modules that need an image whose keys they hold (test_image_build: reproducibility,
    prediction; test_tamper_matrix: re-signing as the vendor). A full build takes minutes on the
    CI's 2 cores: once per session, not once per module. Users must not change its files (devices
    copy the disk; the tamper tool edits only device copies)."""
    base = tmp_path_factory.mktemp("snapshot-build")
    repo = base / "repo"
    for part in ("firmware", "board"):
        shutil.copytree(REPO / part, repo / part,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    keys = base / "keys"
    return SnapshotBuild(repo, keys, build_snapshot(repo, keys, base / "image"))


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
