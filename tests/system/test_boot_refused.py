"""A device whose flash was changed after signing (one byte of a component, signature left as
it was): the stage loader still measures what it found, refuses to start the bundle, and keeps a
recovery console from the initramfs that reports why and serves the logs, so the verifier can name
the component. One boot."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Callable, cast

import pytest

from firmware.eventlog import parser, replayer
from host_tools.qemu.device import Device, DeviceConfig
from host_tools.qemu.verify import fetch_evidence, verifier_command
from tests.system.conftest import REPO

pytestmark = pytest.mark.slow
replay = cast(Callable[..., dict[str, dict[int, bytes]]], replayer.replay)
parse_log = cast(Callable[[bytes], Any], parser.parse_log)
MIB = 1024 * 1024
TAMPERED = "sip-media"


def flip_component_byte(disk: Path, board_json: Path, name: str) -> None:
    """Change one byte in the middle of component *name* in the disk's firmware partition."""
    sizes = json.loads(board_json.read_text())["partitions_mib"]
    start = MIB + sizes["esp"] * MIB
    with disk.open("r+b") as f:
        f.seek(start)
        part = f.read(sizes["phone-fw"] * MIB)
        with tarfile.open(fileobj=io.BytesIO(part)) as tar:
            member = tar.getmember(name)
        at = start + member.offset_data + member.size // 2
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x01]))


def test_tampered_component_is_measured_refused_and_named(built_image: Path,
                                                          tmp_path: Path) -> None:
    device = Device("tampered", DeviceConfig(build_dir=built_image, devices_dir=tmp_path))
    device.prepare()
    flip_component_byte(device.disk, REPO / "board" / "qemu-x86_64" / "board.json", TAMPERED)
    reference = json.loads((built_image / "reference.json").read_text())
    with device.boot(timeout=300) as con:
        st = con.status()
        assert st["state"] == "refused"
        assert st["reason"] == f"component '{TAMPERED}': sha256 differs from the signed manifest"
        measured = {c["name"]: c["sha256"] for c in st["components"]}
        expected = {c["name"]: c["sha256"] for c in reference["components"]}
        assert [n for n in expected if measured[n] != expected[n]] == [TAMPERED]
        ev = fetch_evidence(con, device.dir / "verify")
        pcr14 = json.loads(ev.pcrs.read_text())["sha256"]["14"]
        phone = replay(parse_log(ev.phone_log.read_bytes()), banks=("sha256",))["sha256"]
        assert phone[14].hex() == pcr14 != reference["pcrs"]["sha256"]["14"]
        assert con.command("bogus").startswith("error: unknown command")
    proc = subprocess.run(verifier_command(ev, built_image / "reference.json", []), cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert TAMPERED in proc.stdout
    bad = [ln for ln in proc.stdout.splitlines() if TAMPERED in ln]
    assert bad and not any("ok " in ln.split(TAMPERED)[0] for ln in bad), proc.stdout
    log = device.console_log.read_text(errors="replace")
    assert "starting the recovery console from the initramfs" in log
    assert "reboot: Power down" in log
