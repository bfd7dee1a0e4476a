"""The labgrid QemuPhone's device state (host_tools/lab/qemu_phone.py), on the real image and a
real swtpm (provisioning starts one on the device's TPM state), without booting:

* a device without state is provisioned from the resource's secrets and PIN on first use;
* ``fresh: false`` (the default) keeps a device's state across runs like a real phone: not
  provisioned again (its TPM seeds and sealed store stay as they were);
* ``fresh: true`` deletes it and provisions a new one (new TPM: a new storage root key)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from labgrid import Environment

import host_tools.lab  # noqa: F401  (registers the classes with labgrid)

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "tests" / "data" / "lab"


def _image() -> Path:
    image = Path(os.environ.get("PHONE_IMAGE_DIR", REPO / "build" / "qemu-x86_64"))
    if not (image / "disk.img").is_file():
        pytest.fail(f"no image in {image}: run `make image` first")
    return image


def _prepare(tmp_path: Path, fresh: bool) -> Path:
    (tmp_path / "env.yaml").write_text(f"""
targets:
  main:
    resources:
      QemuPhone:
        device: labtest
        image_dir: {_image()}
        devices_dir: {tmp_path / 'devices'}
        secrets: {LAB / 'secrets.json'}
        pin_file: {LAB / 'pin'}
        fresh: {'true' if fresh else 'false'}
    drivers:
      QemuPhoneDriver: {{}}
""")
    env = Environment(str(tmp_path / "env.yaml"))
    try:
        driver = env.get_target().get_driver("QemuPhoneDriver", activate=False)
        driver._prepare()
        return Path(driver.device.dir)
    finally:
        env.cleanup()


def test_state_kept_unless_fresh(tmp_path: Path) -> None:
    device = _prepare(tmp_path, fresh=False)
    disk = (device / "disk.img").read_bytes()
    assert LAB.joinpath("pin").read_bytes().strip() not in disk
    assert b"alicepw" not in disk and b"lab-user-secret" not in disk   # sealed, never in clear
    record = (device / "provisioning-record.json").read_bytes()
    tpm = sorted(p.name for p in (device / "tpm").iterdir())
    assert tpm, "provisioning left no TPM state"

    again = _prepare(tmp_path, fresh=False)
    assert again == device
    assert (device / "disk.img").read_bytes() == disk           # not provisioned again
    assert (device / "provisioning-record.json").read_bytes() == record

    _prepare(tmp_path, fresh=True)
    assert (device / "provisioning-record.json").read_bytes() != record   # a new TPM, new auths
    assert (device / "disk.img").read_bytes() != disk                    # a new sealed store
