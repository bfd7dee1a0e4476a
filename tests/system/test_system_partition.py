"""The system partition (python3, its libraries, cryptography) is bound to the measured command line
by dm-verity: a device whose phone-sys partition was changed does not run it. One byte of the
squashfs superblock changed: the block fails its hash, the mount gets an I/O error and /init stops
the boot with a reason, before any unverified code runs (no prompt, QEMU powers off). One boot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from host_tools.image import build as image_build
from host_tools.qemu.device import Device, DeviceConfig
from tests.system.conftest import REPO

pytestmark = pytest.mark.slow
MIB = 1024 * 1024


def phone_sys_offset() -> int:
    sizes = json.loads((REPO / "board" / "qemu-x86_64" / "board.json").read_text())
    offset = MIB
    for p in image_build.partitions(sizes["partitions_mib"]):
        if p.name == "phone-sys":
            return offset
        offset += p.size_mib * MIB
    raise AssertionError("no phone-sys partition in board.json")


def test_changed_system_partition_stops_the_boot(built_image: Path,
                                                 tmp_path: Path) -> None:
    dev = Device("syspart", DeviceConfig(build_dir=built_image, devices_dir=tmp_path))
    dev.prepare()
    at = phone_sys_offset() + 40  # inside the squashfs superblock (its first block)
    with dev.disk.open("r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x01]))
    with dev.running("tcp") as run:
        rc = run.proc.wait(timeout=300)
        if run.console is not None:
            run.console.close()
    console = dev.console_log.read_text(errors="replace")
    assert rc == 0, run.qemu_output()[-2000:]
    assert "init: REFUSED: system partition: cannot mount" in console, console[-3000:]
    assert "stage loader" not in console and "phone> " not in console
