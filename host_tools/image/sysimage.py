"""The system partition (`phone-sys`): the CPython userland on a read-only squashfs, checked block
by block by dm-verity against a root hash carried in the UKI's command line.

Why not in the initramfs: every initrd byte is hashed three times under TCG before the kernel runs
(OVMF's Authenticode digest for PCR 4, systemd-stub into PCR 11, the Linux EFI stub into PCR 9)
and then unpacked whole; docs/BENCHMARKS.md "Boot". The root hash is in `.cmdline`, which PCRs 9
and 11 (and 4, through the UKI) cover, so the partition is as bound to the measurement as the
initramfs was; a changed block reads as an I/O error and the boot stops (board init.sh).

Layout of the partition: the squashfs image padded to 4096 bytes, then its dm-verity hash tree
(host_tools/image/verity.py), then zeros. Command-line argument: ``phone.sys=ROOT:SALT:BLOCKS``.
The initramfs keeps busybox, the kernel modules, /init, the stage loader's own code
(/opt/phone) and the static `dm-verity-setup` helper (board/qemu-x86_64/dm-verity-setup.c).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from host_tools.image import userland, verity

MOUNT_POINT = "sysroot"
CMDLINE_KEY = "phone.sys"
HELPER_PATH = "sbin/dm-verity-setup"


def sys_prefixes(arch: userland.Arch) -> tuple[str, ...]:
    """What goes to the system partition; the rest of the userland tree stays in the initramfs."""
    return ("usr/", f"lib/{arch.triplet}/", arch.ld_so_link)


def links(arch: userland.Arch) -> dict[str, str]:
    """Symlinks left in the initramfs so that the ELF interpreter, the library path and OpenSSL's
    module directory (compiled into libcrypto) resolve into the mounted partition."""
    t = arch.triplet
    return {arch.ld_so_link: f"/{MOUNT_POINT}/lib/{t}/{arch.ld_so}",
            f"lib/{t}": f"/{MOUNT_POINT}/lib/{t}",
            f"usr/lib/{t}": f"/{MOUNT_POINT}/usr/lib/{t}",
            "usr/bin/python3": f"/{MOUNT_POINT}/usr/bin/python3"}

MKSQUASHFS = ("mksquashfs",)
# Uncompressed: under TCG decompressing cost more than dm-verity hashing the extra blocks (lz4
# with 128 KiB blocks: prompt ~0.4 s later; 4 KiB blocks: ~1.5 s later).
SQUASHFS_ARGS = ("-noappend", "-no-progress", "-quiet", "-all-root", "-no-xattrs",
                 "-noI", "-noD", "-noF", "-noX", "-b", "131072", "-processors", "1")


class SysImageError(RuntimeError):
    """A tool the system partition needs failed or is missing (the message names it)."""


@dataclass(frozen=True)
class SysImage:
    partition: bytes  # squashfs + padding + hash tree
    data_blocks: int
    root_hash: bytes
    salt: bytes

    def cmdline_arg(self) -> str:
        return f"{CMDLINE_KEY}={self.root_hash.hex()}:{self.salt.hex()}:{self.data_blocks}"


def split(tree: userland.Tree, arch: userland.Arch = userland.X86_64
          ) -> tuple[userland.Tree, userland.Tree]:
    """(what stays in the initramfs, what goes to the system partition)."""
    keep, sys_tree = userland.Tree(), userland.Tree()
    prefixes = sys_prefixes(arch)
    for path, (data, mode) in tree.files.items():
        (sys_tree if path.startswith(prefixes) else keep).files[path] = (data, mode)
    for path, target in tree.symlinks.items():
        (sys_tree if path.startswith(prefixes) else keep).symlinks[path] = target
    keep.symlinks.update(links(arch))
    return keep, sys_tree


def salt_for(board: str) -> bytes:
    """A fixed salt per board: the image stays reproducible."""
    return hashlib.sha256(b"phone-sys dm-verity salt\0" + board.encode()).digest()


def squashfs(tree: userland.Tree, epoch: int) -> bytes:
    """A reproducible squashfs of *tree* (sorted by mksquashfs, times and owners fixed)."""
    with tempfile.TemporaryDirectory(prefix="phone-sys-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        for path, (data, mode) in sorted(tree.files.items()):
            p = root / path
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            p.chmod(mode)
        for path, target in sorted(tree.symlinks.items()):
            p = root / path
            p.parent.mkdir(parents=True, exist_ok=True)
            p.symlink_to(target)
        for d in sorted(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()):
            d.chmod(0o755)
        root.chmod(0o755)
        out = Path(tmp) / "sys.squashfs"
        # times come from -mkfs-time/-all-time (mksquashfs refuses SOURCE_DATE_EPOCH beside them)
        env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
        try:
            proc = subprocess.run([*MKSQUASHFS, str(root), str(out), *SQUASHFS_ARGS,
                                   "-mkfs-time", str(epoch), "-all-time", str(epoch)],
                                  capture_output=True, text=True, env=env, check=False)
        except FileNotFoundError:
            raise SysImageError("mksquashfs is not installed (Debian package squashfs-tools)") \
                from None
        if proc.returncode != 0:
            raise SysImageError(f"mksquashfs failed: {(proc.stderr or proc.stdout).strip()}")
        return out.read_bytes()


def build(tree: userland.Tree, board: str, epoch: int, size_mib: int) -> SysImage:
    data = verity.pad(squashfs(tree, epoch))
    salt = salt_for(board)
    hashes, root = verity.hash_tree(data, salt)
    part = data + hashes
    if len(part) > size_mib * 1024 * 1024:
        raise SysImageError(f"system partition needs {len(part)} bytes, board.json gives "
                            f"phone-sys {size_mib} MiB")
    return SysImage(part, len(data) // verity.BLOCK, root, salt)


def compile_helper(source: Path, cc: str = "gcc") -> bytes:
    """The static dm-verity-setup binary (gcc + glibc's libc.a; same compiler, same bytes); *cc*
    is the board's compiler (board.json platform.cc: a cross gcc for another architecture)."""
    with tempfile.TemporaryDirectory(prefix="dmhelper-") as tmp:
        out = Path(tmp) / "dm-verity-setup"
        cmd = [cc, "-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror",
               f"-ffile-prefix-map={source.parent}=.", "-Wl,--build-id=none",
               "-o", str(out), str(source)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise SysImageError(f"{cc} is not installed (Debian packages gcc, libc6-dev; "
                                "gcc-aarch64-linux-gnu, libc6-dev-arm64-cross)") from None
        if proc.returncode != 0:
            raise SysImageError(f"compiling {source.name} failed: {proc.stderr.strip()}")
        return out.read_bytes()
