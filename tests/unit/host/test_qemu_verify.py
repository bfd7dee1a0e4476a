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
