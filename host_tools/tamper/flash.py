"""The device's flash: the copy of the disk image under ``build/devices/NAME/`` that the QEMU
runner boots (``host_tools.qemu.device.Device.disk``).  Never the built image in build/<board>/:
the reference the verifier compares against must stay what the vendor built.

``edit(device)`` holds the device's lock (the one QEMU holds while it runs), so a phone is
never changed under a running QEMU.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterator

from host_tools.qemu.device import Device, DeviceError
from host_tools.tamper import bundle_ops, gpt
from host_tools.tamper.bundle_ops import Bundle, TamperError

FW_PARTITION = "phone-fw"  # GPT names written by host_tools.image.build
ESP_PARTITION = "esp"
TAMPER_LOG = "tamper.log"


@contextlib.contextmanager
def edit(device: Device, create: bool = False) -> Iterator[Path]:
    """Lock *device* and yield the path of its flash; with *create*, flash a new device from
    the built image first (``Device.prepare``)."""
    if not device.disk.is_file():
        if not create:
            raise TamperError(
                f"unknown device {device.name!r}: it has no flash {device.disk} yet (boot it "
                f"once with `python -m host_tools.qemu --device {device.name}`, or pass "
                "--create to flash it from the built image now)")
    try:
        device.lock()
    except DeviceError as e:
        raise TamperError(f"{e}: power it off before changing its flash") from None
    try:
        if create:
            device.prepare()
        if device.disk.resolve() == device.image.resolve() or \
                device.build_dir.resolve() in device.disk.resolve().parents:
            raise TamperError(f"{device.disk} is a build output, not a device's flash: refusing")
        yield device.disk
    finally:
        device.unlock()


def _partition(disk: Path, name: str) -> gpt.GptPartition:
    try:
        with disk.open("rb") as f:
            return gpt.find_partition(f, disk.stat().st_size, name)
    except gpt.GptError as e:
        raise TamperError(f"{disk}: {e}") from None


def read_bundle(disk: Path) -> tuple[Bundle, gpt.GptPartition]:
    part = _partition(disk, FW_PARTITION)
    with disk.open("rb") as f:
        f.seek(part.offset)
        raw = f.read(part.size)
    return bundle_ops.parse(raw), part


def write_bundle(disk: Path, part: gpt.GptPartition, b: Bundle) -> None:
    """Write *b* at the start of the firmware partition, zeroing the rest (as the builder does)."""
    packed = b.pack()
    if len(packed) > part.size:
        raise TamperError(f"the changed bundle ({len(packed)} bytes) does not fit the "
                          f"{part.size}-byte {FW_PARTITION} partition")
    with disk.open("r+b") as f:
        f.seek(part.offset)
        f.write(packed + b"\0" * (part.size - len(packed)))


def esp_offset(disk: Path) -> int:
    return _partition(disk, ESP_PARTITION).offset


def record(device: Device, line: str) -> None:
    """Append what was done to build/devices/NAME/tamper.log (the device's tamper history)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with (device.dir / TAMPER_LOG).open("a") as f:
        f.write(f"{stamp} {line}\n")
