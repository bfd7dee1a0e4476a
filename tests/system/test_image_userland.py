"""The image's own userland runs the firmware: the built initramfs and the system partition (the
squashfs, read back with unsquashfs after checking its dm-verity root hash against reference.json)
are unpacked into one directory as the guest sees them (/sysroot), and the firmware unit tests run
in it under the image's python3.11 and its pruned standard library (host_tools/image/userland.py
keeps only what the firmware and `cryptography` import), in a chroot with its own mount and PID
namespaces. A module the pruning dropped but the firmware needs fails here, before any boot.
Needs root or unprivileged user namespaces (unshare --map-root-user)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from host_tools.cpio_newc import read_entries
from host_tools.image import disk, initramfs, verity
from host_tools.image.build import partitions
from host_tools.image.sysimage import MOUNT_POINT

REPO = Path(__file__).resolve().parents[2]
# Modules the image does not ship on purpose: the libsrtp engine needs pylibsrtp (host only).
NOT_IN_IMAGE = {"firmware.media.srtp_libsrtp"}


def unpack(initrd: bytes, root: Path) -> None:
    for e in read_entries(initramfs.decompress(initrd)):
        path = root / e.path
        kind = stat.S_IFMT(e.mode)
        if kind == stat.S_IFDIR:
            path.mkdir(parents=True, exist_ok=True)
        elif kind == stat.S_IFLNK:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink() or path.exists():
                path.unlink()
            path.symlink_to(e.data.decode())
        elif kind == stat.S_IFREG:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                path.unlink()
            path.write_bytes(e.data)
            path.chmod(e.mode & 0o7777)
        # device nodes: not needed to run python (and mknod needs privileges)


def in_image(root: Path, script: str) -> subprocess.CompletedProcess[str]:
    cmd = ["unshare", "--mount", "--pid", "--fork", f"--mount-proc={root / 'proc'}"]
    if os.geteuid() != 0:
        cmd.insert(1, "--map-root-user")
    cmd += ["chroot", str(root), "/bin/sh", "-c", script]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def image_root(built_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("userland") / "root"
    root.mkdir()
    unpack((built_image / "initrd.img").read_bytes(), root)
    # the system partition, as /init mounts it
    reference = json.loads((built_image / "reference.json").read_text())
    sysp = reference["boot"]["system_partition"]
    offset = disk.MIB
    for p in partitions(json.loads((REPO / "board" / "qemu-x86_64" / "board.json").read_text())
                        ["partitions_mib"]):
        if p.name == "phone-sys":
            break
        offset += p.size_mib * disk.MIB
    with (built_image / "disk.img").open("rb") as f:
        f.seek(offset)
        part = f.read(sysp["size"])
    data = part[:sysp["data_blocks"] * verity.BLOCK]
    tree, root_hash = verity.hash_tree(data, bytes.fromhex(sysp["salt"]))
    assert root_hash.hex() == sysp["root_hash"] and part[len(data):] == tree
    img = root.parent / "sys.squashfs"
    img.write_bytes(data)
    subprocess.run(["unsquashfs", "-q", "-d", str(root / MOUNT_POINT), str(img)], check=True,
                   capture_output=True)
    (root / "proc").mkdir(exist_ok=True)
    work = root / "work"
    shutil.copytree(REPO / "firmware", work / "firmware",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for rel in ("tests/__init__.py", "tests/unit/__init__.py", "tests/mpy_run.py"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, work / rel)
    for rel in ("tests/unit/firmware", "tests/data"):
        shutil.copytree(REPO / rel, work / rel, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_every_firmware_module_imports_with_the_image_stdlib(image_root: Path) -> None:
    names = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / "firmware").rglob("*.py") if p.name != "__main__.py")
    names = [n for n in names if n not in NOT_IN_IMAGE]
    script = ("import importlib, sys\n"
              "bad = []\n"
              f"for n in {names!r}:\n"
              "    try:\n"
              "        importlib.import_module(n)\n"
              "    except Exception as e:\n"
              "        bad.append('%s: %r' % (n, e))\n"
              "print('imported', len(sys.modules), 'modules')\n"
              "print('\\n'.join(bad))\n"
              "sys.exit(1 if bad else 0)\n")
    (image_root / "work" / "imports.py").write_text(script)
    r = in_image(image_root, "cd /work && PATH=/sysroot/usr/bin:$PATH PYTHONPATH=/work "
                             "PYTHONDONTWRITEBYTECODE=1 python3 imports.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(names) > 50


def test_firmware_unit_tests_pass_in_the_image_userland(image_root: Path) -> None:
    r = in_image(image_root, "cd /work && PATH=/sysroot/usr/bin:$PATH PYTHONPATH=/work "
                             "PYTHONDONTWRITEBYTECODE=1 python3 tests/mpy_run.py")
    tail = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # "cpython: N passed, N failed, N skipped"
    words = tail.replace(",", "").split()
    assert words[0] == "cpython:" and words[2::2] == ["passed", "failed", "skipped"], tail
    assert int(words[3]) == 0 and int(words[1]) > 200, tail
