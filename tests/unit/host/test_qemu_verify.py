"""host_tools.qemu.verify: the verifier command line it builds and its usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from host_tools.qemu import verify


def evidence(tmp_path: Path) -> verify.Evidence:
    return verify.Evidence(tmp_path / "firmware.bin", tmp_path / "phone.bin",
                           tmp_path / "pcrs.json", tmp_path / "status.json")


def test_verifier_command_checks_every_pcr_but_ima(tmp_path: Path) -> None:
    cmd = verify.verifier_command(evidence(tmp_path), tmp_path / "reference.json", [])
    assert cmd[1:3] == ["-m", "host_tools.verify"]
    assert cmd[3:] == ["--log", str(tmp_path / "firmware.bin"), "--log",
                       str(tmp_path / "phone.bin"), "--pcrs", str(tmp_path / "pcrs.json"),
                       "--reference", str(tmp_path / "reference.json"), "--pcr-list",
                       "0,1,2,3,4,5,6,7,8,9,11,12,13,14,15,16,17,18,19,20,21,22,23"]


def test_extra_arguments_pass_through_and_override_the_pcr_list(tmp_path: Path) -> None:
    cmd = verify.verifier_command(evidence(tmp_path), tmp_path / "r.json",
                                  ["--json", "--pcr-list", "4,14"])
    assert cmd[-3:] == ["--json", "--pcr-list", "4,14"]
    assert cmd.count("--pcr-list") == 1


def test_missing_reference_is_a_usage_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rc = verify.main(["--device", "d", "--image-dir", str(tmp_path), "--devices-dir",
                      str(tmp_path / "devices")])
    assert rc == verify.EXIT_USAGE
    assert "run `make image` first" in capsys.readouterr().err


def test_the_quote_path_is_chosen_from_the_flash_store_not_from_the_phone(tmp_path: Path) -> None:
    """make verify takes the quote path when the device's store has an "attestation" record (read
    from its flash before the boot); blank or absent stores keep the log verifier."""
    from firmware.secrets import store
    from host_tools.image import disk as image_disk
    from host_tools.provision import disk
    from host_tools.qemu.device import Device, DeviceConfig
    from host_tools.qemu.verify import has_attestation_key

    dev = Device("d1", DeviceConfig(devices_dir=tmp_path / "devices", build_dir=tmp_path / "image"))
    assert not has_attestation_key(dev)  # never booted: no flash
    dev.dir.mkdir(parents=True)
    parts = [image_disk.Partition("esp", image_disk.ESP_TYPE, 1),
             image_disk.Partition("phone-data", image_disk.LINUX_DATA_TYPE, 1)]
    image_disk.build_disk(dev.disk, "qemu-x86_64", parts, {})
    assert not has_attestation_key(dev)  # blank data partition
    meta = {"format": 1, "board": "qemu-x86_64", "created": "2026-12-03T00:00:00Z", "image_version": "0.1.0",
            "pcr_bank": "sha256", "pcrs": [14], "expected": {"14": "00" * 32}, "components": [],
            "policy": "pcr", "objects": []}
    disk.write_store(dev.disk, store.pack(meta))  # type: ignore[no-untyped-call]
    assert not has_attestation_key(dev)
    meta["attestation"] = {"ak_handle": 0x81020000, "ak_name": "000b" + "11" * 32,
                           "ak_cert": "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n",
                           "device_ca": "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"}
    disk.write_store(dev.disk, store.pack(meta))  # type: ignore[no-untyped-call]
    assert has_attestation_key(dev)
