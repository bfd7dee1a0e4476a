"""The system partition's dm-verity hash tree against veritysetup (cryptsetup), the squashfs and the
static dm helper (host_tools/image/verity.py, sysimage.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from host_tools.image import sysimage, userland, verity

REPO = Path(__file__).resolve().parents[3]
SALT = bytes(range(32))


def veritysetup_format(data: bytes, salt: bytes, tmp: Path) -> tuple[bytes, bytes]:
    """(the tree veritysetup writes right after *data*, its root hash)."""
    dev = tmp / "dev.img"
    dev.write_bytes(data)
    r = subprocess.run(["veritysetup", "format", "--no-superblock", "--format=1",
                        "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096",
                        f"--salt={salt.hex()}", f"--hash-offset={len(data)}", str(dev), str(dev)],
                       capture_output=True, text=True, check=True)
    root = next(line.split(":", 1)[1].strip() for line in r.stdout.splitlines()
                if line.startswith("Root hash"))
    return dev.read_bytes()[len(data):], bytes.fromhex(root)


@pytest.mark.parametrize("blocks", [1, 2, 127, 128, 129, 128 * 128 + 1])
def test_hash_tree_matches_veritysetup(blocks: int, tmp_path: Path) -> None:
    data = hashlib.shake_256(b"%d" % blocks).digest(4096 * blocks)
    tree, root = verity.hash_tree(data, SALT)
    ref_tree, ref_root = veritysetup_format(data, SALT, tmp_path)
    assert root == ref_root
    assert ref_tree[:len(tree)] == tree and not ref_tree[len(tree):].strip(b"\0")


def test_verify_with_veritysetup_and_a_changed_block_fails(tmp_path: Path) -> None:
    data = hashlib.shake_256(b"x").digest(4096 * 300)
    tree, root = verity.hash_tree(data, SALT)
    dev = tmp_path / "dev.img"
    dev.write_bytes(data + tree)

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["veritysetup", "verify", "--no-superblock", "--format=1",
                               "--hash=sha256", "--data-block-size=4096",
                               "--hash-block-size=4096", f"--data-blocks={len(data) // 4096}",
                               f"--salt={SALT.hex()}", f"--hash-offset={len(data)}",
                               str(dev), str(dev), root.hex()],
                              capture_output=True, text=True, check=False)

    assert check().returncode == 0
    bad = bytearray(data + tree)
    bad[4096 * 123 + 7] ^= 1
    dev.write_bytes(bytes(bad))
    assert check().returncode != 0


def test_bad_data_is_named() -> None:
    with pytest.raises(verity.VerityError, match="multiple of 4096 bytes, not 10"):
        verity.hash_tree(b"0123456789", SALT)
    with pytest.raises(verity.VerityError, match="multiple of 4096 bytes, not 0"):
        verity.hash_tree(b"", SALT)


def test_split_keeps_the_loader_side_in_the_initramfs() -> None:
    tree = userland.Tree()
    for path in ("usr/bin/python3.11", "lib/x86_64-linux-gnu/libc.so.6", "bin/busybox",
                 "opt/phone/board"):
        tree.add(path, b"x")
    tree.symlinks["usr/bin/python3"] = "python3.11"
    tree.symlinks["bin/sh"] = "busybox"
    keep, sys_tree = sysimage.split(tree)
    assert sorted(sys_tree.files) == ["lib/x86_64-linux-gnu/libc.so.6", "usr/bin/python3.11"]
    assert sys_tree.symlinks == {"usr/bin/python3": "python3.11"}
    assert sorted(keep.files) == ["bin/busybox", "opt/phone/board"]
    assert keep.symlinks["bin/sh"] == "busybox"
    assert keep.symlinks["lib64/ld-linux-x86-64.so.2"].startswith("/sysroot/")


def test_squashfs_is_reproducible_and_readable(tmp_path: Path) -> None:
    tree = userland.Tree()
    tree.add("usr/bin/tool", b"#!/bin/sh\necho hi\n", 0o755)
    tree.add("usr/lib/data.txt", b"data" * 5000)
    tree.symlinks["usr/bin/alias"] = "tool"
    a = sysimage.build(tree, "qemu-x86_64", 1767225600, 8)
    b = sysimage.build(tree, "qemu-x86_64", 1767225600, 8)
    assert a == b
    assert a.cmdline_arg() == (f"phone.sys={a.root_hash.hex()}:{a.salt.hex()}:{a.data_blocks}")
    img = tmp_path / "sys.img"
    img.write_bytes(a.partition[:a.data_blocks * 4096])
    out = tmp_path / "out"
    subprocess.run(["unsquashfs", "-q", "-d", str(out), str(img)], check=True,
                   capture_output=True)
    assert (out / "usr/lib/data.txt").read_bytes() == b"data" * 5000
    assert os.readlink(out / "usr/bin/alias") == "tool"
    assert (out / "usr/bin/tool").stat().st_mode & 0o777 == 0o755
    with pytest.raises(sysimage.SysImageError, match="board.json gives phone-sys 0 MiB"):
        sysimage.build(tree, "qemu-x86_64", 1767225600, 0)


def test_dm_helper_builds_static_and_checks_its_arguments(tmp_path: Path) -> None:
    binary = sysimage.compile_helper(REPO / "board" / "qemu-x86_64" / "dm-verity-setup.c")
    assert binary == sysimage.compile_helper(REPO / "board" / "qemu-x86_64" /
                                             "dm-verity-setup.c")  # reproducible
    exe = tmp_path / "dm-verity-setup"
    exe.write_bytes(binary)
    exe.chmod(0o755)
    file_out = subprocess.run(["file", str(exe)], capture_output=True, text=True).stdout
    assert "statically linked" in file_out or "static-pie" in file_out, file_out
    for args, msg in (([], "usage: dm-verity-setup"),
                      (["x", "/dev/null", "0", "a" * 64, "b" * 64], "DATA_BLOCKS 0"),
                      (["x", "/dev/null", "1", "A" * 64, "b" * 64], "64 lowercase hex")):
        r = subprocess.run([str(exe), *args], capture_output=True, text=True)
        assert r.returncode == 2 and msg in r.stderr, r.stderr
