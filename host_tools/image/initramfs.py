"""Assemble the initramfs: Debian userland + kernel modules + the stage-loader code + /init."""

from __future__ import annotations

from pathlib import Path

from host_tools.cpio_newc import CpioArchive
from host_tools.image import modules, userland

FIRMWARE_ROOT = "opt/phone"  # on PYTHONPATH in /init
# firmware.boot reads the vendor key from here: inside the initramfs, so it is covered by the
# UKI's measurements (PCR 4, 9 and 11) and cannot be swapped without changing them.
VENDOR_KEY_PATH = "opt/phone/vendor-pubkey.pem"
# The board name, so the stage loader refuses a bundle signed for another board.
BOARD_PATH = "opt/phone/board"
PYC_TAG = "cpython-311"


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
    """The gzip-compressed newc archive (mtime 0 everywhere, owner 0, sorted)."""
    arc = CpioArchive(mtime=0)
    for d in ("proc", "sys", "dev", "run", "tmp", "sbin", "usr/sbin", "mnt"):
        arc.add_dir(d)
    # The kernel opens /dev/console before /init runs (devtmpfs is not mounted yet).
    arc.add_chardev("dev/console", 5, 1, mode=0o600)
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
    return arc.to_gzip()
