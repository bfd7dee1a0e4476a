"""The device-side writers of the UKI banks (firmware/boot/uki_banks.py over efivarfs.py and
esp.py) on the real kernel, efivarfs and ESP under QEMU + OVMF, then what OVMF does with what they
wrote: a trial (bank b's file written atomically on the ESP, its Boot#### created, BootNext)
boots bank b once, on both boards. (A confirmation, the entry first in BootOrder, is checked in
the whole flow over SMP: tests/system/test_flash_uki.py, with virt-firmware reading the store.)

The console has no path to these root operations yet (the stage loader's broker gets them), and
the firmware gets no test-only entry point: this test boots the image's own kernel and initramfs
directly (QEMU -kernel/-initrd, so without Secure Boot: the kernel is not the signed UKI) with a
second initramfs archive appended that replaces the stage loader's __main__ by a driver that
calls the writers as root and powers off. The boots that check the result are the unchanged
image from the disk, through OVMF's boot manager. Variables are read back with virt-firmware."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest

from host_tools.cpio_newc import CpioArchive
from host_tools.qemu import uefivars
from host_tools.qemu.device import Device, DeviceConfig
from tests.system.conftest import build_image
from tests.system.test_uki_banks import BANK_A, BANK_B, MTOOLS_ENV, esp_partition

pytestmark = pytest.mark.slow

CACHE = Path(__file__).resolve().parents[2] / "build" / "cache"
# the image's kernel, unpacked by the build (host_tools/kernel_fetch.py)
KERNEL_DIRS = {"qemu-x86_64": CACHE / "kernel" / "root" / "boot",
               "qemu-aarch64": CACHE / "arm64" / "kernel" / "root" / "boot"}
MARK = "UKI-DRIVER "
DRIVER = r'''
import json, os, struct, subprocess
from firmware.boot import efivarfs, esp, uki_banks
from firmware.boot.partitions import esp_boot_path


def hexed(v):
    return None if v is None else [v[0], v[1].hex()]


def flags(path):
    import fcntl
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(4)
        fcntl.ioctl(fd, efivarfs.FS_IOC_GETFLAGS, buf, True)
        return struct.unpack("=I", bytes(buf))[0]
    finally:
        os.close(fd)


def main():
    action = open("/opt/uki-test/action").read().strip()
    store = efivarfs.EfiVarFs()
    path = esp_boot_path()
    geo = esp.geometry()
    out = {"action": action, "available": store.available(), "esp_boot_path": path,
           "esp_dev": os.environ.get("PHONE_ESP_DEV"), "geometry": geo}
    if action == "trial-b":
        with esp.Esp() as e:
            data = e.read(path)
            e.write(uki_banks.BANK_B_PATH, data)
            out["written"] = len(data)
            out["readback_equal"] = e.read(uki_banks.BANK_B_PATH) == data
            out["mount_mode"] = oct(os.stat(esp.MOUNT_DIR).st_mode & 0o777)
            out["mounted_with"] = [l for l in open("/proc/mounts").read().splitlines()
                                   if " %s " % esp.MOUNT_DIR in l]
        out["entry"] = uki_banks.set_boot_next(store, "b", geo, path)
        out["entry_again"] = uki_banks.ensure_entry(store, "b", geo, path)
    out["mounted_after"] = any(" %s " % esp.MOUNT_DIR in l for l in open("/proc/mounts"))
    out["BootNext"] = hexed(store.get("BootNext"))
    out["BootOrder"] = hexed(store.get("BootOrder"))
    out["BootCurrent"] = hexed(store.get("BootCurrent"))
    out["flags"] = {n: flags("%s/%s-%s" % (store.root, n, store.guid))
                    for n in ("BootCurrent", "BootOrder", "BootNext") if store.get(n)}
    print("UKI-DRIVER " + json.dumps(out, sort_keys=True), flush=True)


try:
    main()
except BaseException as e:
    print("UKI-DRIVER " + json.dumps({"error": "%s: %s" % (e.__class__.__name__, e)}), flush=True)
os.sync()
while True:
    subprocess.run(["poweroff", "-f"])
'''


@pytest.fixture(scope="module")
def device(built_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Device:
    d = Device("uki-writer", DeviceConfig(build_dir=built_image, secure_boot=False,
                                          devices_dir=tmp_path_factory.mktemp("uki-writer")))
    d.prepare()
    return d


def run_driver(device: Device, action: str, work: Path) -> dict[str, Any]:
    """Boot the image's kernel + initramfs + the driver archive; -> the driver's JSON line."""
    arc = CpioArchive()
    arc.add_file("opt/phone/firmware/boot/__main__.py", DRIVER.encode())
    # the image's unchecked-hash .pyc would run instead of the source: an empty one is refused
    # by the import system (EOFError), which then compiles the source
    arc.add_file("opt/phone/firmware/boot/__pycache__/__main__.cpython-311.pyc", b"")
    arc.add_file("opt/uki-test/action", action.encode())
    initrd = work / f"initrd-{action}.img"
    base = (device.build_dir / "initrd.img").read_bytes()
    # the kernel takes an uncompressed archive only at a 4-byte aligned offset of the initrd;
    # zeros between archives are skipped (init/initramfs.c unpack_to_rootfs)
    initrd.write_bytes(base + bytes(-len(base) % 4) + arc.to_bytes())
    kernel = sorted(KERNEL_DIRS[device.config.board].glob("vmlinuz-*"))[-1]
    cmdline = (device.build_dir / "cmdline.txt").read_text().strip()
    drv = Device(device.name, DeviceConfig(
        board=device.config.board, build_dir=device.build_dir, devices_dir=device.dir.parent, secure_boot=False,
        extra_qemu_args=["-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline]))
    with drv.running("tcp") as run:
        con = run.console
        assert con is not None
        deadline = time.monotonic() + 180
        while run.proc.poll() is None and time.monotonic() < deadline:
            try:
                con.spawn.read_nonblocking(4096, timeout=0.5)
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                break
            if "phone>" in con.text():
                break  # the image's own loader ran: the driver archive was not unpacked
        try:
            run.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass  # stopped by PID when the block ends; the console text below says what ran
    text = con.text()
    lines = [l for l in text.splitlines() if l.startswith(MARK)]
    assert lines, text[-3000:]
    out: dict[str, Any] = json.loads(lines[-1][len(MARK):])
    assert "error" not in out, out
    return out


def boot_status(device: Device) -> dict[str, Any]:
    with device.boot(timeout=300) as con:
        st: dict[str, Any] = con.status()
    return st


def esp_file(device: Device, path: str, out: Path) -> bytes:
    _n, start, _s, _g = esp_partition(device.disk)
    subprocess.run(["mcopy", "-n", "-i", f"{device.disk}@@{start * 512}", f"::/{path}", str(out)],
                   check=True, env=MTOOLS_ENV, capture_output=True)
    return out.read_bytes()


def test_first_boot_is_bank_a(device: Device) -> None:
    st = boot_status(device)
    assert st["uki"]["bank"] == "a", st["uki"]


def test_trial_written_on_the_device_boots_bank_b_once(device: Device, tmp_path: Path) -> None:
    out = run_driver(device, "trial-b", tmp_path)
    number, start, size, guid = esp_partition(device.disk)
    assert out["available"] is None and out["esp_boot_path"] == BANK_A
    assert out["esp_dev"] == "/dev/vda1"
    assert out["geometry"] == {"partition_number": number, "start_lba": start,
                               "size_lba": size, "partition_guid": guid}
    assert out["readback_equal"] is True and out["mounted_after"] is False
    assert out["mount_mode"] == "0o700"
    assert "vfat rw,nosuid,nodev,noexec" in out["mounted_with"][0], out["mounted_with"]
    entry = out["entry"]
    assert out["entry_again"] == entry
    assert out["BootNext"] == [7, entry.to_bytes(2, "little").hex()]
    assert out["flags"].get("BootNext", 0) & 0x10 == 0  # Boot* variables are not immutable
    print("driver:", json.dumps(out))
    # the ESP now holds the same UKI at path b
    assert esp_file(device, BANK_B, tmp_path / "b.efi") == \
        esp_file(device, BANK_A, tmp_path / "a.efi") == (device.build_dir / "BOOTX64.EFI").read_bytes()
    # virt-firmware reads the entry the device wrote: HD(ESP) + File(bank b)
    from virt.firmware.efi import bootentry
    raw = uefivars.variable_data(device.vars, "Boot%04X" % entry)
    assert raw is not None
    be = bootentry.BootEntry(data=raw)
    assert str(be.title) == "trusted-phone UKI bank b" and be.attr == 1
    assert str(be.devicepath[0].get_partuuid()) == guid
    assert str(be.devicepath[1].get_filepath()) == "\\EFI\\phone\\uki-b.efi"
    assert uefivars.variable_data(device.vars, "BootNext") == entry.to_bytes(2, "little")

    st = boot_status(device)
    assert st["uki"] == {"bank": "b", "boot_current": "Boot%04X" % entry,
                         "reason": "Boot%04X boots \\EFI\\phone\\uki-b.efi" % entry}, st["uki"]
    assert uefivars.variable_data(device.vars, "BootNext") is None
    st = boot_status(device)
    assert st["uki"]["bank"] == "a", st["uki"]  # not confirmed: BootOrder unchanged


def test_trial_on_aarch64(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """The same trial on qemu-aarch64 (AAVMF, its kernel's efivarfs/vfat/nls modules): bank b
    once, then bank a. Its own build (test_board_aarch64 rebuilds build/qemu-aarch64 meanwhile)."""
    if shutil.which("qemu-system-aarch64") is None:
        pytest.fail("qemu-system-aarch64 is missing: run `make deps` (Debian qemu-system-arm)")
    image = tmp_path_factory.mktemp("aarch64-image")
    build_image("qemu-aarch64", image)
    d = Device("uki-writer-arm", DeviceConfig(board="qemu-aarch64", build_dir=image,
                                              secure_boot=False,
                                              devices_dir=tmp_path_factory.mktemp("uki-arm")))
    d.prepare()
    assert boot_status(d)["uki"]["bank"] == "a"
    out = run_driver(d, "trial-b", tmp_path)
    assert out["esp_boot_path"] == "EFI/BOOT/BOOTAA64.EFI" and out["readback_equal"] is True
    assert out["BootNext"] == [7, out["entry"].to_bytes(2, "little").hex()]
    assert boot_status(d)["uki"] == {
        "bank": "b", "boot_current": "Boot%04X" % out["entry"],
        "reason": "Boot%04X boots \\EFI\\phone\\uki-b.efi" % out["entry"]}
    assert boot_status(d)["uki"]["bank"] == "a"
