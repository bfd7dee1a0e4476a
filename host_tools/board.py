"""What differs between boards, read from ``board/<board>/board.json`` (data, not code).

Two objects of the board description drive the image builder and the QEMU runner:

``platform`` — the CPU architecture's userland and boot files::

    deb_arch       Debian architecture of every package fetched (``apt-get download PKG:ARCH``)
    triplet        multiarch library directory (``lib/<triplet>``)
    ld_so          the ELF interpreter's file name; ld_so_link: the PT_INTERP path (no leading /)
    cc             the C compiler for the static dm-verity helper (a cross compiler off-host)
    objcopy        the objcopy that knows the stub's PE format (pei-aarch64-little: the cross one)
    efi_stub       systemd-stub: {"path": host file} or {"package": deb, "path": file in it}
    esp_boot_path  the removable-media boot path (UEFI 2.10 §3.5.1.1: BOOTX64.EFI, BOOTAA64.EFI)
    modules        kernel modules /init loads (plus their dependencies)

``emulator`` — how QEMU runs the board::

    binary, machine, machine_secure_boot, cpu (null: the machine's default), tpm_device,
    firmware_code, firmware_code_secure_boot, firmware_vars, secure_boot_args,
    secure_boot_vars_template (a formatted variable store the vendor's keys are enrolled into)

A board without one of them is refused with the key that is missing.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class BoardError(ValueError):
    """The board description is missing or one of its keys is unusable (the message names it)."""


@dataclass(frozen=True)
class Platform:
    deb_arch: str
    triplet: str
    ld_so: str
    ld_so_link: str
    cc: str
    objcopy: str
    efi_stub_package: str | None
    efi_stub_path: str
    esp_boot_path: str
    modules: tuple[str, ...]

    @property
    def uki_name(self) -> str:
        return self.esp_boot_path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Emulator:
    binary: str
    machine: str
    machine_secure_boot: str
    cpu: str | None
    tpm_device: str
    firmware_code: Path
    firmware_code_secure_boot: Path
    firmware_vars: Path
    secure_boot_args: tuple[str, ...]
    secure_boot_vars_template: Path


def description(board: str, repo: Path = REPO) -> dict[str, object]:
    path = repo / "board" / board / "board.json"
    if not path.is_file():
        raise BoardError(f"no board description {path}")
    try:
        desc = json.loads(path.read_text())
    except ValueError as e:
        raise BoardError(f"{path}: not JSON: {e}") from None
    if not isinstance(desc, dict) or desc.get("board") != board:
        raise BoardError(f"{path}: 'board' must be {board!r}")
    return desc


def _obj(desc: dict[str, object], key: str) -> dict[str, object]:
    v = desc.get(key)
    if not isinstance(v, dict):
        raise BoardError(f"board.json: {key!r} must be an object")
    return v


def _s(d: dict[str, object], where: str, key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise BoardError(f"board.json: '{where}.{key}' must be a non-empty string")
    return v


def _strs(d: dict[str, object], where: str, key: str) -> tuple[str, ...]:
    v = d.get(key)
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise BoardError(f"board.json: '{where}.{key}' must be a list of strings")
    return tuple(v)


def platform(desc: dict[str, object]) -> Platform:
    p = _obj(desc, "platform")
    stub = p.get("efi_stub")
    if not isinstance(stub, dict):
        raise BoardError("board.json: 'platform.efi_stub' must be an object")
    pkg = stub.get("package")
    if pkg is not None and (not isinstance(pkg, str) or not pkg):
        raise BoardError("board.json: 'platform.efi_stub.package' must be a package name")
    return Platform(
        deb_arch=_s(p, "platform", "deb_arch"), triplet=_s(p, "platform", "triplet"),
        ld_so=_s(p, "platform", "ld_so"), ld_so_link=_s(p, "platform", "ld_so_link"),
        cc=_s(p, "platform", "cc"), objcopy=_s(p, "platform", "objcopy"), efi_stub_package=pkg,
        efi_stub_path=_s(stub, "platform.efi_stub", "path"),
        esp_boot_path=_s(p, "platform", "esp_boot_path"),
        modules=_strs(p, "platform", "modules"))


def emulator(desc: dict[str, object]) -> Emulator:
    e = _obj(desc, "emulator")
    cpu = e.get("cpu")
    if cpu is not None and (not isinstance(cpu, str) or not cpu):
        raise BoardError("board.json: 'emulator.cpu' must be a CPU model or null")
    return Emulator(
        binary=_s(e, "emulator", "binary"), machine=_s(e, "emulator", "machine"),
        machine_secure_boot=_s(e, "emulator", "machine_secure_boot"), cpu=cpu,
        tpm_device=_s(e, "emulator", "tpm_device"),
        firmware_code=Path(_s(e, "emulator", "firmware_code")),
        firmware_code_secure_boot=Path(_s(e, "emulator", "firmware_code_secure_boot")),
        firmware_vars=Path(_s(e, "emulator", "firmware_vars")),
        secure_boot_args=_strs(e, "emulator", "secure_boot_args"),
        secure_boot_vars_template=Path(_s(e, "emulator", "secure_boot_vars_template")))


def load(board: str, repo: Path = REPO) -> tuple[Platform, Emulator]:
    desc = description(board, repo)
    return platform(desc), emulator(desc)


def host_deb_arch() -> str:
    """The host's own Debian architecture (``dpkg --print-architecture``)."""
    proc = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise BoardError(f"dpkg --print-architecture failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def package_cache(cache: Path, plat: Platform) -> Path:
    """Where this board's .debs and unpacked trees go: the host architecture's in *cache* itself
    (as before boards had architectures), a foreign one's in ``cache/<deb_arch>`` (apt names
    both architectures' files alike up to the suffix, and the userland cache keys on names)."""
    return cache if plat.deb_arch == host_deb_arch() else cache / plat.deb_arch
