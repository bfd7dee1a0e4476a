"""host_tools.image.modules, .userland, .initramfs: module order from .modinfo, pruning rules,
unchecked-hash .pyc, a bootable archive layout."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from host_tools import kernel_fetch
from host_tools.image import initramfs, modules, userland

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def kernel() -> kernel_fetch.Kernel:
    # apt-get download + dpkg -x on first use, then cached under build/cache/kernel
    return kernel_fetch.fetch_kernel(REPO / "build" / "cache" / "kernel")


def test_modules_in_dependency_order(kernel: kernel_fetch.Kernel) -> None:
    def key(name: str) -> str:  # file names mix "-" and "_" (dm-verity.ko, virtio_blk.ko)
        return name.removesuffix(".ko").replace("-", "_")

    order = [key(name) for name, _ in modules.resolve(kernel.modules_dir)]
    for wanted in modules.WANTED:
        assert wanted in order
    pos = {n: i for i, n in enumerate(order)}
    for name, data in modules.resolve(kernel.modules_dir):
        for dep in modules.depends(data):
            assert pos[key(dep)] < pos[key(name)], f"{dep} must load before {name}"
    assert "virtio" in modules.depends(dict(modules.resolve(kernel.modules_dir))["virtio_pci.ko"])


def test_module_errors(kernel: kernel_fetch.Kernel, tmp_path: Path) -> None:
    with pytest.raises(modules.ModuleError, match="module nonexistent not found"):
        modules.resolve(kernel.modules_dir, ("nonexistent",))
    with pytest.raises(modules.ModuleError, match="not a 64-bit little-endian ELF"):
        modules.depends(b"#!/bin/sh\n")
    ko = bytearray((kernel.modules_dir / "kernel/drivers/virtio/virtio.ko").read_bytes())
    struct.pack_into("<Q", ko, 0x28, len(ko))  # section header table past the end
    with pytest.raises(modules.ModuleError, match="section header table"):
        modules.depends(bytes(ko))


def test_pyc_is_unchecked_hash_and_reproducible(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("X = 1\n")
    a, b = userland.compile_pyc([(src, "/opt/m.py"), (src, "/opt/m.py")])
    assert a == b
    # PEP 552: flags word after the magic; 0b01 = hash-based, check_source clear
    assert struct.unpack_from("<I", a, 4)[0] == 0b01
    import importlib.util
    assert a[:4] == importlib.util.MAGIC_NUMBER


def test_pyc_compile_error_is_reported(tmp_path: Path) -> None:
    src = tmp_path / "bad.py"
    src.write_text("def (:\n")
    with pytest.raises(userland.UserlandError, match="byte-compiling failed"):
        userland.compile_pyc([(src, "/bad.py")])


def test_stdlib_pruning_rules() -> None:
    assert userland._stdlib_keep("json/__init__.py")
    assert userland._stdlib_keep("lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so")
    assert not userland._stdlib_keep("lib-dynload/_sqlite3.cpython-311-x86_64-linux-gnu.so")
    assert not userland._stdlib_keep("test/test_os.py")
    assert not userland._stdlib_keep("tkinter/__init__.py")
    assert not userland._stdlib_keep("json/__pycache__/x.pyc")


def test_archive_layout(tmp_path: Path) -> None:
    tree = userland.Tree()
    tree.add("bin/busybox", b"\x7fELF", 0o755)
    tree.symlinks["bin/sh"] = "busybox"
    (tmp_path / "firmware" / "boot").mkdir(parents=True)
    (tmp_path / "firmware" / "boot" / "__init__.py").write_text("")
    (tmp_path / "firmware" / "errors.py").write_text("E = 1\n")
    (tmp_path / "firmware" / "app.py").write_text("A = 1\n")
    fw = initramfs.firmware_files(tmp_path, ["errors.py", "boot", "missing"])
    assert [d for _, d in fw] == ["opt/phone/firmware/boot/__init__.py",
                                  "opt/phone/firmware/errors.py"]
    data = initramfs.build(tree, [("virtio.ko", b"ko")], b"#!/bin/sh\n", fw)
    assert data == initramfs.build(tree, [("virtio.ko", b"ko")], b"#!/bin/sh\n", fw)
    assert data[4:8] == b"\0\0\0\0"  # gzip MTIME field is zero (RFC 1952 §2.3.1)
    # A gzip head archive (top directories, /dev/console), then the zstd body.
    head = zlib.decompressobj(wbits=31)
    head_raw = head.decompress(data)
    assert head.eof
    assert head.unused_data[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic (RFC 8878 §3.1.1)
    assert b"dev/console\0" in head_raw and b"TRAILER!!!" in head_raw[-140:]
    raw = initramfs.decompress(data)
    assert raw.startswith(head_raw)
    names = []
    pos = 0
    trailers = 0
    while pos < len(raw):
        # newc header: magic + 13 eight-digit hex fields (Linux initramfs-buffer-format)
        assert raw[pos:pos + 6] == b"070701"
        fields = [int(raw[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, uid, gid, mtime, size, namesize = (fields[1], fields[2], fields[3], fields[5],
                                                 fields[6], fields[11])
        name = raw[pos + 110:pos + 110 + namesize - 1].decode()
        if name == "TRAILER!!!":
            trailers += 1
            pos += 110 + namesize
            pos += -pos % 4
            continue
        assert (uid, gid, mtime) == (0, 0, 0)
        names.append((name, mode))
        pos += 110 + namesize
        pos += -pos % 4
        pos += size + (-size % 4)
    assert trailers == 2
    got = dict(names)
    assert got["init"] == 0o100755
    assert got["dev/console"] == 0o20600
    assert got["lib/modules/load-order"] == 0o100644
    assert "opt/phone/firmware/boot/__pycache__/__init__.cpython-311.pyc" in got
    assert "opt/phone/firmware/app.py" not in got


def test_decompress_rejects_a_bad_body() -> None:
    head = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = head.compress(b"070701") + head.flush()
    with pytest.raises(initramfs.InitramfsError, match="zstd body does not decompress"):
        initramfs.decompress(data + b"\x28\xb5\x2f\xfd broken")
    with pytest.raises(initramfs.InitramfsError, match="gzip head archive is truncated"):
        initramfs.decompress(data[:-6])


def test_stdlib_import_closure(tmp_path: Path) -> None:
    # The Debian stdlib unpacked by the image build (apt-get download + dpkg -x, cached).
    root = userland.fetch_and_unpack(REPO / "build" / "cache")
    fw = tmp_path / "firmware"
    fw.mkdir()
    (fw / "__init__.py").write_text("")
    # In firmware code an import inside a function body is followed too (modulefinder reads the
    # byte code); in the stdlib only what a module imports when it is imported.
    (fw / "a.py").write_text("import json, pickle, calendar\n\ndef f():\n    import colorsys\n")
    keep = userland.import_closure(root, fw)
    std = userland.STDLIB
    assert f"{std}/json/decoder.py" in keep
    assert f"{std}/colorsys.py" in keep
    assert f"{std}/pickle.py" in keep and f"{std}/_compat_pickle.py" in keep  # module level
    assert f"{std}/doctest.py" not in keep  # only pickle._test() imports it
    assert f"{std}/argparse.py" not in keep  # only calendar.main() imports it
    assert not any(k.startswith(f"{std}/asyncio/") for k in keep)
    assert f"{std}/encodings/cp437.py" in keep  # codecs are found by name at run time
    assert f"{std}/stringprep.py" in keep  # what they import too (idna, for getaddrinfo)
    assert f"{std}/runpy.py" in keep and f"{std}/site.py" in keep  # -m and start-up
    # cryptography's own closure is always in
    assert any(k.startswith(f"{userland.DIST_PACKAGES}/cryptography/") for k in keep)
    assert f"{std}/mailbox.py" not in keep
    assert f"{std}/turtle.py" not in keep
