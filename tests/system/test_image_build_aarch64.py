"""Board qemu-aarch64's image without booting it: two builds are byte-identical, the UKI is an
arm64 PE (systemd's linuxaa64.efi.stub) signed with the vendor's db key, its PCR 4 and PCR 11
predictions match independent tools (osslsigncode, systemd-measure), and what runs in the guest is
arm64 code (ELF e_machine EM_AARCH64) with the interpreter's native modules for that architecture.
The boot itself is tests/system/test_board_aarch64.py (one boot for all its checks)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from host_tools.image import initramfs, pe
from host_tools.image.build import BuildOptions, BuildResult, build
from tests.system.test_image_build import systemd_measure_pcr11, verify_signed_uki

REPO = Path(__file__).resolve().parents[2]
BOARD = "qemu-aarch64"
UKI = "BOOTAA64.EFI"
EM_AARCH64 = 183  # ELF e_machine (System V ABI, AArch64 supplement)
IMAGE_FILE_MACHINE_ARM64 = 0xAA64  # PE/COFF Machine (Microsoft PE format, "Machine Types")


def _snapshot(dest: Path) -> Path:
    """A frozen copy of the build inputs from the repo (others may edit firmware/ meanwhile)."""
    for part in ("firmware", "board"):
        shutil.copytree(REPO / part, dest / part, symlinks=False,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("a64-inputs")
    return _snapshot(base / "repo"), base / "keys"


def _build(inputs: tuple[Path, Path], out: Path) -> BuildResult:
    repo, keys = inputs
    return build(BuildOptions(board=BOARD, out=out, repo=repo, cache=REPO / "build" / "cache",
                              keys=keys))


@pytest.fixture(scope="module")
def first(inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return _build(inputs, tmp_path_factory.mktemp("a64-build-a"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_builds_are_byte_identical(first: BuildResult, inputs: tuple[Path, Path],
                                       tmp_path: Path) -> None:
    second = _build(inputs, tmp_path / "b")
    for name in ("disk.img", "reference.json", UKI, "initrd.img", "bundle.tar",
                 "OVMF_VARS.secboot.fd"):
        assert _sha(first.out / name) == _sha(second.out / name), name


def _pe_machine(data: bytes) -> int:
    (lfanew,) = struct.unpack_from("<I", data, 0x3C)
    assert data[lfanew:lfanew + 4] == b"PE\0\0"
    (machine,) = struct.unpack_from("<H", data, lfanew + 4)
    return machine


def test_uki_is_an_arm64_systemd_stub_with_the_arm64_kernel(first: BuildResult) -> None:
    data = (first.out / UKI).read_bytes()
    assert _pe_machine(data) == IMAGE_FILE_MACHINE_ARM64
    img = pe.parse(data)
    kernel = img.section_data(".linux")
    assert _pe_machine(kernel) == IMAGE_FILE_MACHINE_ARM64  # the arm64 Image's EFI stub header
    assert kernel[0x38:0x3C] == b"ARM\x64"  # arm64 Image header magic (Documentation/arm64/booting)
    ref = json.loads((first.out / "reference.json").read_text())
    assert "cloud-arm64" in ref["boot"]["kernel_package"]
    assert img.section_data(".cmdline").decode().endswith("console=ttyAMA0,115200 quiet panic=-1")
    # the disk's ESP holds it at the removable-media path for AArch64 (UEFI 2.10 §3.5.1.1)
    proc = subprocess.run(["mdir", "-i", f"{first.disk}@@1M", "-b", "::/EFI/BOOT"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["::/EFI/BOOT/BOOTAA64.EFI"]


def test_uki_signature_and_pcr4_prediction_match_osslsigncode_and_sbverify(
        first: BuildResult, inputs: tuple[Path, Path]) -> None:
    _repo, keys = inputs
    _out, m = verify_signed_uki(first.out / UKI, keys)
    ref = json.loads((first.out / "reference.json").read_text())
    assert ref["boot"]["uki_authenticode_sha256"] == m.group(1).lower()
    assert [e["digest"] for e in ref["events"]
            if e["type"] == "EV_EFI_BOOT_SERVICES_APPLICATION"] == [m.group(1).lower()]


def test_pcr11_matches_systemd_measure_on_built_uki(first: BuildResult, tmp_path: Path) -> None:
    ref = json.loads((first.out / "reference.json").read_text())
    assert systemd_measure_pcr11((first.out / UKI).read_bytes(), tmp_path) == ref["pcrs"]["sha256"]["11"]


def _newc(raw: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of concatenated newc archives (Linux initramfs buffer format)."""
    out: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while pos < len(raw):
        assert raw[pos:pos + 6] == b"070701"
        fields = [int(raw[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = raw[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        out[name] = (mode, raw[pos:pos + size])
        pos += size + (-size % 4)
    return out


def _elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF", data[:16]
    return int(struct.unpack_from("<H", data, 18)[0])


def test_initramfs_code_is_arm64(first: BuildResult) -> None:
    files = _newc(initramfs.decompress((first.out / "initrd.img").read_bytes()))
    helper = files["sbin/dm-verity-setup"][1]
    assert _elf_machine(helper) == EM_AARCH64
    kos = {n.rsplit("/", 1)[-1] for n in files if n.endswith(".ko")}
    assert {"tpm_tis.ko", "tpm_tis_core.ko", "virtio_blk.ko", "dm-verity.ko"} <= kos
    assert _elf_machine(files["lib/modules/tpm_tis.ko"][1]) == EM_AARCH64
    # PT_INTERP of arm64 binaries resolves into the dm-verity system partition
    mode, target = files["lib/ld-linux-aarch64.so.1"]
    assert mode & 0o170000 == 0o120000
    assert target == b"/sysroot/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"


def test_system_partition_holds_arm64_python_with_its_native_modules(first: BuildResult,
                                                                    tmp_path: Path) -> None:
    table = json.loads(subprocess.run(["sfdisk", "-J", str(first.disk)], capture_output=True,
                                      text=True, check=True).stdout)
    part = next(p for p in table["partitiontable"]["partitions"] if p.get("name") == "phone-sys")
    with first.disk.open("rb") as f:
        f.seek(part["start"] * 512)
        (tmp_path / "sys.img").write_bytes(f.read(part["size"] * 512))
    listing = subprocess.run(["unsquashfs", "-l", "-d", "", str(tmp_path / "sys.img")],
                             capture_output=True, text=True, check=True).stdout.split()
    for f in ("/usr/bin/python3.11", "/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
              "/usr/lib/aarch64-linux-gnu/ossl-modules/legacy.so",
              "/usr/lib/python3.11/lib-dynload/_ssl.cpython-311-aarch64-linux-gnu.so",
              "/usr/lib/python3.11/lib-dynload/_hashlib.cpython-311-aarch64-linux-gnu.so",
              "/usr/lib/python3.11/lib-dynload/_json.cpython-311-aarch64-linux-gnu.so"):
        assert f in listing, f
    assert not [f for f in listing if "x86_64" in f]
    subprocess.run(["unsquashfs", "-d", str(tmp_path / "root"), str(tmp_path / "sys.img"),
                    "usr/bin/python3.11"], capture_output=True, check=True)
    assert _elf_machine((tmp_path / "root" / "usr/bin/python3.11").read_bytes()) == EM_AARCH64
