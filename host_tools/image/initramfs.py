"""Assemble the initramfs: Debian userland + kernel modules + the stage-loader code + /init."""

from __future__ import annotations

from pathlib import Path

from host_tools.cpio_newc import CpioArchive
from host_tools.image import modules, userland

FIRMWARE_ROOT = "opt/phone"  # on PYTHONPATH in /init
PYC_TAG = "cpython-311"


def firmware_files(repo: Path, packages: list[str]) -> list[tuple[Path, str]]:
    """(source, image path) of the ``*.py`` files of the listed parts of ``firmware/``."""
    out: list[tuple[Path, str]] = []
    for part in packages:
        p = repo / "firmware" / part
        if p.is_file():
            out.append((p, f"{FIRMWARE_ROOT}/firmware/{part}"))
        elif p.is_dir():
            for f in sorted(p.rglob("*.py")):
                rel = f.relative_to(repo).as_posix()
                out.append((f, f"{FIRMWARE_ROOT}/{rel}"))
    return sorted(out, key=lambda x: x[1])


def build(tree: userland.Tree, kernel_modules: list[tuple[str, bytes]], init_script: bytes,
          firmware: list[tuple[Path, str]]) -> bytes:
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
    arc.add_file("init", init_script, 0o755)
    return arc.to_gzip()
