"""host_tools.qemu.device: per-device state, the QEMU command line, one QEMU per device, and a
QEMU that dies at once failing fast with its own error message (real swtpm + QEMU, no boot)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from host_tools.qemu import __main__ as cli
from host_tools.qemu.device import KEYS_DIR, OVMF_CODE, Device, DeviceConfig, DeviceError


def make_device(tmp_path: Path, name: str = "dev1", **kw: object) -> Device:
    image_dir = tmp_path / "image"
    image_dir.mkdir(exist_ok=True)
    (image_dir / "disk.img").write_bytes(b"\0" * 4096)
    return Device(name, DeviceConfig(build_dir=image_dir, devices_dir=tmp_path / "devices",
                                     **kw))  # type: ignore[arg-type]


def test_state_is_created_once_and_kept(tmp_path: Path) -> None:
    dev = make_device(tmp_path)
    notes = dev.prepare()
    assert notes == [f"flashed {dev.image} to {dev.disk}",
                     f"manufactured the TPM in {dev.tpm_dir} (EK certificates from {KEYS_DIR / 'manufacturer-ca'})"]
    state = (dev.tpm_dir / "tpm2-00.permall").read_bytes()  # swtpm_setup's state, made once
    assert dev.disk.read_bytes() == b"\0" * 4096 and dev.vars.stat().st_size > 0
    assert dev.tpm_dir.is_dir() and dev.dir == tmp_path / "devices" / "dev1"
    dev.disk.write_bytes(b"written by the phone")
    assert dev.prepare() == []
    assert dev.disk.read_bytes() == b"written by the phone"  # the flash persists across boots
    assert (dev.tpm_dir / "tpm2-00.permall").read_bytes() == state  # the TPM is never re-made
    time.sleep(0.01)
    dev.image.write_bytes(b"\1" * 4096)
    assert "newer than this device's flash" in dev.prepare()[0]
    dev.prepare(reflash=True)
    assert dev.disk.read_bytes() == b"\1" * 4096


def test_missing_image_and_bad_names(tmp_path: Path) -> None:
    dev = Device("x", DeviceConfig(build_dir=tmp_path / "none", devices_dir=tmp_path))
    with pytest.raises(DeviceError, match="run `make image` first"):
        dev.prepare()
    for bad in ("", "../etc", "a/b", "-x", "x" * 65):
        with pytest.raises(DeviceError, match="bad device name"):
            Device(bad)


def test_qemu_command_line(tmp_path: Path) -> None:
    dev = make_device(tmp_path)
    cmd = dev.qemu_command(["-tpmdev", "T"], "socket,id=ser0,port=1")
    line = " ".join(cmd)
    for part in ("-machine q35", "-accel tcg", "-nodefaults", "-no-reboot", "-nic none",
                 f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                 f"if=pflash,format=raw,unit=1,file={dev.vars}",
                 f"if=virtio,format=raw,file={dev.disk}", "-serial chardev:ser0",
                 f"socket,id=ser0,port=1,logfile={dev.console_log}", "-tpmdev T",
                 "virtio-rng-pci,rng=rng0", "rng-random,id=rng0,filename=/dev/urandom"):
        assert part in line, part
    net = make_device(tmp_path, "dev2", network=True, kvm=True).qemu_command([], "pty,id=ser0")
    line = " ".join(net)
    assert "-accel kvm" in line and "-nic none" not in line
    assert "virtio-net-pci,netdev=net0,romfile=" in line  # no option ROM in PCR 2


def test_one_qemu_per_device(tmp_path: Path) -> None:
    a = make_device(tmp_path)
    b = make_device(tmp_path)
    a.lock()
    try:
        with pytest.raises(DeviceError, match="already running"):
            b.lock()
    finally:
        a.unlock()
    b.lock()
    b.unlock()


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None or shutil.which("swtpm") is None,
                    reason="needs qemu-system-x86_64 and swtpm")
def test_qemu_dying_fails_fast_with_its_stderr(tmp_path: Path) -> None:
    dev = make_device(tmp_path, extra_qemu_args=["-no-such-option"])
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as info:
        with dev.boot(timeout=60):
            pass
    assert time.monotonic() - t0 < 15
    assert "QEMU exited with status 1" in str(info.value)
    assert "-no-such-option" in str(info.value)
    # everything was stopped: the device can start again at once (lock released)
    dev.lock()
    dev.unlock()


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None or shutil.which("swtpm") is None,
                    reason="needs qemu-system-x86_64 and swtpm")
def test_cli_exec_reports_qemu_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dev = make_device(tmp_path)
    (dev.build_dir / "disk.img").unlink()
    rc = cli.main(["--device", "d", "--image-dir", str(dev.build_dir), "--devices-dir",
                   str(tmp_path / "devices"), "--exec", "status"])
    assert rc == cli.EXIT_QEMU
    assert "run `make image` first" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None or shutil.which("swtpm") is None,
                    reason="needs qemu-system-x86_64 and swtpm")
def test_cli_exec_without_prompt_exits_3_and_stops_everything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dev = make_device(tmp_path)  # a blank disk: OVMF runs, no phone ever answers
    t0 = time.monotonic()
    rc = cli.main(["--device", "blank", "--image-dir", str(dev.build_dir), "--devices-dir",
                   str(tmp_path / "devices"), "--exec", "status", "--timeout", "2"])
    assert rc == cli.EXIT_NO_PROMPT
    assert time.monotonic() - t0 < 20
    assert "no prompt 'phone> ' after 2 s" in capsys.readouterr().err
    again = make_device(tmp_path, "blank")
    again.lock()  # QEMU and swtpm are gone: the device is free again
    again.unlock()
