"""Assemble the initramfs: Debian userland + kernel modules + the stage-loader code + /init."""

from __future__ import annotations

import subprocess
import zlib
from pathlib import Path

from host_tools.cpio_newc import CpioArchive
from host_tools.image import modules, userland

FIRMWARE_ROOT = "opt/phone"  # on PYTHONPATH in /init
# firmware.boot reads the vendor key from here: inside the initramfs, so it is covered by the
# UKI's measurements (PCR 4, 9 and 11) and cannot be swapped without changing them.
VENDOR_KEY_PATH = "opt/phone/vendor-pubkey.pem"
# The board name, so the stage loader refuses a bundle signed for another board.
BOARD_PATH = "opt/phone/board"
# The board's component register (board.json component_pcr, decimal + newline): the loader measures
# the bundle into it (firmware/boot/partitions.py component_pcr); measured with the initramfs.
COMPONENT_PCR_PATH = "opt/phone/component-pcr"
# The board's removable-media boot path on the ESP (board.json platform.esp_boot_path): UKI bank a
# (firmware/boot/uki_banks.py); measured with the initramfs.
ESP_BOOT_PATH_PATH = "opt/phone/esp-boot-path"
PYC_TAG = "cpython-311"
# The body is zstd: about 25 % smaller than gzip -9 here, and every byte of the initrd is hashed
# three times under TCG before the kernel runs (OVMF's Authenticode digest of the UKI, systemd-stub
# into PCR 11, the Linux EFI stub into PCR 9); the kernel's unzstd did not make the guest's part of
# the boot slower (docs/BENCHMARKS.md "Boot").  zstd output depends only on input, level and zstd
# version (reproducible).
# Level 19 keeps the window at 8 MiB (the kernel allocates it while unpacking).
ZSTD_ARGS = ("zstd", "-19", "--single-thread", "-q", "-c", "-")


class InitramfsError(RuntimeError):
    """The compressor failed."""


def _run_zstd(args: tuple[str, ...], data: bytes) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(args, input=data, capture_output=True, check=False)
    except FileNotFoundError:
        raise InitramfsError("zstd is not installed (Debian package zstd)") from None


def zstd(data: bytes) -> bytes:
    proc = _run_zstd(ZSTD_ARGS, data)
    if proc.returncode != 0:
        raise InitramfsError(f"{' '.join(ZSTD_ARGS)} failed: "
                             f"{proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def decompress(initrd: bytes) -> bytes:
    """The newc bytes of an initrd made by build(): the gzip head's archive, then the zstd
    body's (for tests and the benchmark)."""
    d = zlib.decompressobj(wbits=31)  # 31: gzip framing (RFC 1952)
    head = d.decompress(initrd) + d.flush()
    if not d.eof:
        raise InitramfsError("initrd: the gzip head archive is truncated")
    body = d.unused_data
    if not body:
        return head
    proc = _run_zstd(("zstd", "-d", "-q", "-c", "-"), body)
    if proc.returncode != 0:
        raise InitramfsError(f"initrd: the zstd body does not decompress: "
                             f"{proc.stderr.decode(errors='replace').strip()}")
    return head + proc.stdout


def firmware_files(repo: Path, packages: list[str], exclude: tuple[str, ...] = ()
                   ) -> list[tuple[Path, str]]:
    """(source, image path) of the ``*.py`` files of the listed parts of ``firmware/``
    ("." is all of it), minus the *exclude* parts."""
    out: list[tuple[Path, str]] = []
    skip = tuple("firmware/" + e for e in exclude)
    for part in packages:
        p = repo / "firmware" if part == "." else repo / "firmware" / part
        for f in ([p] if p.is_file() else sorted(p.rglob("*.py")) if p.is_dir() else []):
            rel = f.relative_to(repo).as_posix()
            if not any(rel == e or rel.startswith(e + "/") for e in skip):
                out.append((f, f"{FIRMWARE_ROOT}/{rel}"))
    return sorted(set(out), key=lambda x: x[1])


def build(tree: userland.Tree, kernel_modules: list[tuple[str, bytes]], init_script: bytes,
          firmware: list[tuple[Path, str]], extra: dict[str, bytes] | None = None) -> bytes:
    """Two concatenated newc archives (mtime 0 everywhere, owner 0, sorted), which the kernel
    unpacks one after the other (Documentation/driver-api/early-userspace/buffer-format.rst):
    a small gzip one with the top directories and /dev/console, then a zstd one with the rest.
    The gzip head keeps the initrd's first bytes a gzip header, whose MTIME byte the tamper tool
    changes (host_tools/tamper/uki_edit.py) without stopping the boot."""
    head = CpioArchive(mtime=0)
    for d in ("proc", "sys", "dev", "run", "tmp", "sbin", "usr/sbin", "mnt"):
        head.add_dir(d)
    # The kernel opens /dev/console before /init runs (devtmpfs is not mounted yet).
    head.add_chardev("dev/console", 5, 1, mode=0o600)
    arc = CpioArchive(mtime=0)
    for path, (data, mode) in sorted(tree.files.items()):
        arc.add_file(path, data, mode)
    for path, target in sorted(tree.symlinks.items()):
        arc.add_symlink(path, target)
    for name, data in kernel_modules:
        arc.add_file(f"lib/modules/{name}", data)
    arc.add_file("lib/modules/load-order", "".join(n + "\n" for n, _ in kernel_modules).encode())
    # Firmware code keeps its sources (tracebacks on the console) plus unchecked-hash .pyc.
    pycs = userland.compile_pyc([(src, "/" + dst) for src, dst in firmware])
    for (src, dst), pyc in zip(firmware, pycs):
        arc.add_file(dst, src.read_bytes())
        d, _, base = dst.rpartition("/")
        arc.add_file(f"{d}/__pycache__/{base[:-3]}.{PYC_TAG}.pyc", pyc)
    for path, data in sorted((extra or {}).items()):
        arc.add_file(path, data)
    arc.add_file("init", init_script, 0o755)
    return head.to_gzip() + zstd(arc.to_bytes())
