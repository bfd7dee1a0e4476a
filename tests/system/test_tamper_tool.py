"""The tamper tool on a small but real disk image (GPT from sfdisk, FAT32 ESP holding a UKI made
from systemd-stub by objcopy, a signed ustar bundle), without booting: what it changes on a
device's flash, what it leaves alone (the built image, the rest of the disk), and its errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from host_tools.image import bundle, disk, pe, uki
from host_tools.qemu.device import Device, DeviceConfig
from host_tools.tamper import bundle_ops, flash, uki_edit
from host_tools.tamper.__main__ import main as tamper_main

BOARD = "qemu-x86_64"
CMDLINE = b"console=ttyS0,115200 quiet panic=-1"
NAMES = ["phone-app", "sip-media", "device-config", "ca-bundle"]


@dataclass(frozen=True)
class Lab:
    image_dir: Path
    devices: Path
    key: Path
    initrd: bytes

    def device(self, name: str) -> Device:
        return Device(name, DeviceConfig(board=BOARD, build_dir=self.image_dir,
                                         devices_dir=self.devices))

    def flashed(self, name: str) -> Device:
        d = self.device(name)
        d.prepare()
        return d

    def tamper(self, name: str, *args: str) -> int:
        return tamper_main(["--device", name, "--image-dir", str(self.image_dir),
                            "--devices-dir", str(self.devices), "--signing-key", str(self.key),
                            *args])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    base = tmp_path_factory.mktemp("tamper-tool")
    key_path = base / "dev-signing-key.pem"
    key = bundle.load_or_create_key(key_path, create=True)
    comps = [bundle.Component("phone-app", "0.1.0",
                              bundle.ustar([("firmware/app.py", b"print('phone')\n")])),
             bundle.Component("sip-media", "0.1.0",
                              bundle.ustar([("firmware/sip/ua.py", b"# sip\n")])),
             bundle.Component("device-config", "0.1.0", b'{"account":"1001"}'),
             bundle.Component("ca-bundle", "0.1.0", b"-----BEGIN CERTIFICATE-----\n")]
    manifest = bundle.manifest(BOARD, "0.1.0", 1, comps)
    packed = bundle.pack(manifest, bundle.sign(key, manifest), comps)
    initrd = gzip.compress(b"070701 not really a cpio archive", mtime=0)
    image_dir = base / "image"
    image_dir.mkdir()
    uki_bytes = uki.build_uki(uki.DEFAULT_STUB, {".osrel": b"ID=test\n", ".cmdline": CMDLINE,
                                                 ".linux": b"MZ kernel stand-in",
                                                 ".initrd": initrd}, base / "uki.efi")
    esp = base / "esp.img"
    disk.make_esp(esp, 64, {"EFI/BOOT/BOOTX64.EFI": uki_bytes}, BOARD, 1767225600)
    parts = [disk.Partition("esp", disk.ESP_TYPE, 64),
             disk.Partition("phone-fw", disk.LINUX_DATA_TYPE, 8),
             disk.Partition("phone-data", disk.LINUX_DATA_TYPE, 8)]
    disk.build_disk(image_dir / "disk.img", BOARD, parts, {"esp": esp, "phone-fw": packed})
    return Lab(image_dir, base / "devices", key_path, initrd)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _bundle(d: Device) -> bundle_ops.Bundle:
    return flash.read_bundle(d.disk)[0]


def _signed_ok(lab: Lab, b: bundle_ops.Bundle) -> bool:
    return b.signed_by(bundle.load_or_create_key(lab.key, create=False))


def _diff(a: bytes, b: bytes) -> list[int]:
    """Offsets where *a* and *b* differ (compared in 64 KiB chunks first: the disk is 82 MiB)."""
    assert len(a) == len(b)
    step = 1 << 16
    return [j for i in range(0, len(a), step) if a[i:i + step] != b[i:i + step]
            for j in range(i, min(i + step, len(a))) if a[j] != b[j]]


def _fw_offset(d: Device) -> int:
    return flash.read_bundle(d.disk)[1].offset


def test_stale_byte_change_is_exactly_one_byte_of_the_flash(lab: Lab) -> None:
    d = lab.flashed("stale")
    before = d.disk.read_bytes()
    built = _sha(d.image)
    assert lab.tamper("stale", "--component", "phone-app", "--resign", "no") == 0
    after = d.disk.read_bytes()
    b = _bundle(d)
    data = b.data("phone-app")
    # the one changed byte is the component's last byte, inside the phone-fw partition
    with tarfile.open(fileobj=io.BytesIO(b.pack())) as tar:
        data_at = tar.getmember("phone-app").offset_data
    assert _diff(before, after) == [_fw_offset(d) + data_at + len(data) - 1]
    assert after[_diff(before, after)[0]] == before[_diff(before, after)[0]] + 1
    # manifest and signature are the vendor's: the signature verifies, the digest does not
    assert _signed_ok(lab, b)
    entry = b.manifest_obj()["components"][0]
    assert entry["sha256"] != hashlib.sha256(data).hexdigest()
    assert _sha(d.image) == built  # the built image is never touched
    assert "phone-app: byte" in (d.dir / "tamper.log").read_text()


def test_resigned_byte_change_verifies_with_the_vendor_key(lab: Lab) -> None:
    d = lab.flashed("resigned")
    before = d.disk.read_bytes()
    assert lab.tamper("resigned", "--component", "sip-media", "--offset", "513") == 0
    b = _bundle(d)
    assert _signed_ok(lab, b)
    man = b.manifest_obj()
    assert [c["name"] for c in man["components"]] == NAMES == b.names
    entry = man["components"][1]
    assert entry["sha256"] == hashlib.sha256(b.data("sip-media")).hexdigest()
    assert entry["size"] == len(b.data("sip-media"))
    # the bytes inside the file of the code archive changed: ustar header is 512 bytes
    with tarfile.open(fileobj=io.BytesIO(b.data("sip-media"))) as tar:
        member = tar.extractfile("firmware/sip/ua.py")
        assert member is not None and member.read() == b"#!sip\n"
    changed = _diff(before, d.disk.read_bytes())
    fw = _fw_offset(d)
    assert changed and all(fw <= i < fw + 8 * disk.MIB for i in changed)


def test_remove_add_swap_keep_manifest_and_archive_in_step(lab: Lab, tmp_path: Path) -> None:
    d = lab.flashed("ops")
    assert lab.tamper("ops", "--remove", "sip-media") == 0
    extra = tmp_path / "extra.bin"
    extra.write_bytes(b"\x00evil")
    assert lab.tamper("ops", "--add", f"extra:{extra}") == 0
    assert lab.tamper("ops", "--swap", "phone-app,ca-bundle") == 0
    b = _bundle(d)
    assert b.names == ["ca-bundle", "device-config", "phone-app", "extra"]
    assert [c["name"] for c in b.manifest_obj()["components"]] == b.names
    assert _signed_ok(lab, b)
    assert b.data("extra") == b"\x00evil"
    for c in b.manifest_obj()["components"]:
        assert c["sha256"] == hashlib.sha256(b.data(c["name"])).hexdigest()


def test_stale_structure_changes_leave_the_manifest_alone(lab: Lab) -> None:
    d = lab.flashed("stale-ops")
    man = _bundle(d).manifest
    assert lab.tamper("stale-ops", "--remove", "ca-bundle", "--resign", "no") == 0
    assert lab.tamper("stale-ops", "--swap", "phone-app,sip-media", "--resign", "no") == 0
    b = _bundle(d)
    assert b.manifest == man and b.names == ["sip-media", "phone-app", "device-config"]


def test_rollback_is_an_older_signed_release(lab: Lab, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    d = lab.flashed("rollback")
    comps = _bundle(d).components
    assert lab.tamper("rollback", "--rollback", "--resign", "no") == 2
    assert "always re-signs" in capsys.readouterr().err
    assert lab.tamper("rollback", "--rollback") == 0
    b = _bundle(d)
    man = b.manifest_obj()
    assert (man["bundle_version"], man["anti_rollback_counter"]) == ("0.0.9", 0)
    assert {c["version"] for c in man["components"]} == {"0.0.9"}
    assert b.components == comps and _signed_ok(lab, b)
    # counter 0 has nothing older
    assert lab.tamper("rollback", "--rollback") == 2
    assert "anti-rollback counter in 0..-1" in capsys.readouterr().err


@pytest.mark.parametrize("section,offset,expect", [
    ("cmdline", None, CMDLINE[:-1] + b"2"),
    ("initrd", None, None),
    ("initrd", 100, "out of range"),
])
def test_uki_section_byte(lab: Lab, section: str, offset: int | None, expect: object,
                          capsys: pytest.CaptureFixture[str]) -> None:
    name = f"uki-{section}-{offset}"
    d = lab.flashed(name)
    esp_off = flash.esp_offset(d.disk)
    before_uki = uki_edit.read_uki(d.disk, esp_off)
    before = d.disk.read_bytes()
    args = ["--uki", section] + ([] if offset is None else ["--offset", str(offset)])
    if expect == "out of range":
        assert lab.tamper(name, *args) == 2
        assert "outside the UKI's .initrd section" in capsys.readouterr().err
        assert d.disk.read_bytes() == before
        return
    assert lab.tamper(name, *args) == 0
    after_uki = uki_edit.read_uki(d.disk, esp_off)
    assert len(_diff(before_uki, after_uki)) == 1
    sec = pe.parse(after_uki).section_data("." + section)
    if section == "cmdline":
        assert sec == expect
    else:
        # gzip MTIME (RFC 1952 §2.3.1) changed; the compressed stream is the same
        assert sec[4] == 1 and sec[:4] + sec[5:] == lab.initrd[:4] + lab.initrd[5:]
        assert gzip.decompress(sec) == gzip.decompress(lab.initrd)
    # only the ESP changed
    changed = _diff(before, d.disk.read_bytes())
    assert changed and all(esp_off <= i < esp_off + 64 * disk.MIB for i in changed)


def test_restore_gives_back_the_built_image(lab: Lab) -> None:
    d = lab.flashed("restore")
    assert lab.tamper("restore", "--component", "ca-bundle") == 0
    assert _sha(d.disk) != _sha(d.image)
    assert lab.tamper("restore", "--restore") == 0
    assert _sha(d.disk) == _sha(d.image)


def test_errors_name_what_is_wrong(lab: Lab, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert lab.tamper("never-booted", "--component", "phone-app") == 2
    err = capsys.readouterr().err
    assert "unknown device 'never-booted'" in err and "--create" in err
    assert not (lab.devices / "never-booted").exists()

    d = lab.flashed("errors")
    before = _sha(d.disk)
    cases = [
        (["--component", "phone-ap"], "no component 'phone-ap' in the bundle on this flash "
                                      "(it has: phone-app, sip-media, device-config, ca-bundle)"),
        (["--component", "phone-app", "--offset", "999999"], "offset 999999 is outside"),
        (["--remove", "nope"], "no component 'nope'"),
        (["--swap", "phone-app"], "--swap takes two components"),
        (["--swap", "phone-app,phone-app"], "two different components"),
        (["--add", "phone-app:/etc/hostname"], "already in the bundle"),
        (["--add", "x:" + str(tmp_path / "missing")], "cannot read"),
        (["--add", "nofile"], "--add takes NAME:FILE"),
        (["--uki", "cmdline", "--resign", "no"], "not signed on this board"),
        (["--remove", "phone-app", "--offset", "3"], "--offset goes with"),
    ]
    for args, message in cases:
        assert lab.tamper("errors", *args) == 2, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
    # a key that did not sign the bundle: re-signing with it would look like a stale signature
    other = tmp_path / "other.pem"
    bundle.load_or_create_key(other, create=True)
    assert tamper_main(["--device", "errors", "--image-dir", str(lab.image_dir), "--devices-dir",
                        str(lab.devices), "--signing-key", str(other),
                        "--component", "phone-app"]) == 2
    assert "is not signed by" in capsys.readouterr().err
    assert _sha(d.disk) == before  # no failed request changed the flash


def test_running_device_is_not_changed(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    d = lab.flashed("running")
    running = lab.device("running")
    running.lock()  # what Device.running() holds while QEMU runs
    try:
        assert lab.tamper("running", "--component", "phone-app") == 2
        assert "already running" in capsys.readouterr().err
    finally:
        running.unlock()
    assert _sha(d.disk) == _sha(d.image)


def test_damaged_gpt_is_an_error_not_a_wrong_edit(lab: Lab,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    d = lab.flashed("bad-gpt")
    with d.disk.open("r+b") as f:
        f.seek(512 + 72)  # partition entry LBA in the GPT header: CRC no longer matches
        f.write(b"\x07")
    assert lab.tamper("bad-gpt", "--component", "phone-app") == 2
    assert "GPT header CRC32 does not match" in capsys.readouterr().err


@pytest.mark.parametrize("version,older", [("0.1.0", "0.0.9"), ("2.0", "1.9"), ("0.0.1", "0.0.0"),
                                           ("3", "2")])
def test_older_version(version: str, older: str) -> None:
    assert bundle_ops.older_version(version) == older


@pytest.mark.parametrize("version", ["0.0.0", "1.x"])
def test_older_version_refuses(version: str) -> None:
    with pytest.raises(bundle_ops.TamperError, match="--rollback-version"):
        bundle_ops.older_version(version)


def test_parse_refuses_a_partition_without_a_bundle() -> None:
    with pytest.raises(bundle_ops.TamperError, match="does not start with manifest.json"):
        bundle_ops.parse(bundle.ustar([("phone-app", b"x")]) + b"\0" * 1024)
    with pytest.raises(bundle_ops.TamperError, match="does not hold a ustar bundle"):
        bundle_ops.parse(b"\x01" * 2048)
