"""The host's UKI package and delta writers (host_tools/image/uki_package.py, uki_delta.py) against
the device's parser, and the device's SMP upload session for a package (UkiUpload) next to the
bundle's (Upload): the signed manifest is checked on the first bytes, before the sink gets any,
and each refusal carries its IMG_MGMT_ERR code and names what was wrong."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.boot import signature
from firmware.update import uki_delta as codec
from firmware.update import uki_package as U
from firmware.update import upload as up
from host_tools.image import bundle as B
from host_tools.image import uki_delta, uki_package

BOARD = "qemu-x86_64"
VENDOR = Ed25519PrivateKey.generate()
VERIFY = signature.openssl_verifier(VENDOR.public_key().public_bytes_raw())


def pe_like(sections: list[bytes]) -> bytes:
    """A stand-in UKI: a 1024-byte header, then each section at the next 512-byte boundary."""
    out = bytearray(b"MZ" + bytes(1022))
    for s in sections:
        out += s + bytes(-len(s) % 512)
    return bytes(out)


def blob(seed: int, n: int) -> bytes:
    out = b""
    while len(out) < n:
        out += hashlib.sha256(b"%d-%d" % (seed, len(out))).digest()
    return out[:n]


OLD = pe_like([b"ID=trusted-phone\nVERSION_ID=0.1.0\n", blob(1, 300_000), blob(2, 40_000)])
# .osrel grows past one block: everything after it moves by 512 bytes; the last section changes
NEW = pe_like([b"ID=trusted-phone\nVERSION_ID=0.2.0\n" + b"#" * 600, blob(1, 300_000),
               blob(3, 40_000)])


class MemSink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.writes = 0

    def write(self, off: int, data: bytes) -> None:
        self.writes += 1
        self.data[off:off + len(data)] = data

    def read(self, off: int, n: int) -> bytes:
        return bytes(self.data[off:off + n])

    def truncate(self, n: int) -> None:
        del self.data[n:]


def full(uki: bytes = NEW, board: str = BOARD, counter: int = 2,
         key: Ed25519PrivateKey = VENDOR) -> bytes:
    return uki_package.build_package(key, board, "0.2.0", counter, uki)


def send(session: Any, image: bytes, chunk: int = 700) -> int:
    off = 0
    while off < len(image):
        off = session.write(off, image[off:off + chunk])
    return off


def test_package_layout_is_reproducible_and_verifies() -> None:
    pkg = full()
    assert pkg == full()  # Ed25519 and the tar writer are deterministic
    man, sig, name, payload = U.split(pkg)
    assert (name, payload) == (U.FULL_NAME, NEW)
    assert json.loads(man) == {"anti_rollback_counter": 2, "board": BOARD, "format_version": 1,
                               "kind": "uki", "version": "0.2.0",
                               "uki": {"size": len(NEW), "sha256": hashlib.sha256(NEW).hexdigest()}}
    VENDOR.public_key().verify(sig, uki_package.DOMAIN + man)
    assert U.verify(pkg, VERIFY, BOARD, 2)["uki"]["sha256"] == hashlib.sha256(NEW).hexdigest()


def test_delta_sends_only_changed_blocks_and_rebuilds_byte_exact() -> None:
    delta = uki_delta.make_delta(full(), OLD)
    man, sig, name, payload = U.split(delta)
    assert name == U.DELTA_NAME and (man, sig) == U.split(full())[:2]
    ops = [(op, n) for op, _, _, n in codec.ops(payload)]
    data = sum(n for op, n in ops if op == codec.OP_DATA)
    # sent: the grown .osrel (2 blocks) and the changed last section (79 blocks); the header
    # and the shifted 300000-byte section are copied, each as one run
    assert ops[0] == (codec.OP_COPY, 1024) and ops[1] == (codec.OP_DATA, 1024)
    assert data == 1024 + 40_000 + (-40_000 % 512) and len(ops) == 4
    assert ops[2] == (codec.OP_COPY, 300_000 + (-300_000 % 512))  # the shifted section, one COPY
    assert U.rebuild(delta, lambda off, n: OLD[off:off + n]) == NEW
    assert U.verify(delta, VERIFY, BOARD, 2)["version"] == "0.2.0"
    assert len(delta) < len(full()) // 6


def test_delta_of_identical_ukis_is_one_copy() -> None:
    payload = uki_delta.delta_payload(NEW, NEW)
    assert [(op, pos, arg, n) for op, pos, arg, n in codec.ops(payload)] == \
        [(codec.OP_COPY, 0, 0, len(NEW))]


def test_a_delta_of_a_delta_package_is_refused() -> None:
    with pytest.raises(ValueError, match="carries uki.delta, not the full uki.efi"):
        uki_delta.make_delta(uki_delta.make_delta(full(), OLD), OLD)


def test_cli_writes_the_delta(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "uki.tar").write_bytes(full())
    (tmp_path / "old.efi").write_bytes(OLD)
    assert uki_delta.main(["--package", str(tmp_path / "uki.tar"), "--base",
                           str(tmp_path / "old.efi"), "--out", str(tmp_path / "d.tar")]) == 0
    assert (tmp_path / "d.tar").read_bytes() == uki_delta.make_delta(full(), OLD)
    assert "d.tar: " in capsys.readouterr().out
    assert uki_delta.main(["--package", str(tmp_path / "d.tar"), "--base",
                           str(tmp_path / "old.efi"), "--out", str(tmp_path / "e.tar")]) == 1
    assert "not the full uki.efi" in capsys.readouterr().err


def uki_upload(image: bytes, sha: bytes | None = None, board: str = BOARD, floor: int | None = 1,
               sink: MemSink | None = None) -> tuple[U.UkiUpload, MemSink]:
    sink = sink or MemSink()
    return U.UkiUpload(sink, len(image), hashlib.sha256(image).digest() if sha is None else sha,
                       VERIFY, board, floor, 1 << 26), sink


@pytest.mark.parametrize("kind", ["full", "delta"])
def test_uki_upload_takes_a_package(kind: str) -> None:
    image = full() if kind == "full" else uki_delta.make_delta(full(), OLD)
    session, sink = uki_upload(image)
    assert session.write(0, image[:600]) == 600 and sink.writes == 0  # manifest not complete yet
    assert session.same(len(image), hashlib.sha256(image).digest())
    assert send(session, image) == len(image)  # the offset answered: resumes at 600
    assert session.done and bytes(sink.data) == image
    assert session.manifest["uki"]["size"] == len(NEW)
    assert session.digest == hashlib.sha256(image).digest()


def test_uki_upload_refuses_before_writing() -> None:
    other_key = Ed25519PrivateKey.generate()
    bundle = B.pack(b"{}", B.sign(VENDOR, b"{}"), [B.Component("phone-app", "1", b"x")])
    cases = [
        (full(key=other_key), {}, up.IMG_INVALID_IMAGE_HEADER,
         "manifest signature does not verify with the vendor key"),
        (full(board="qemu-aarch64"), {}, up.IMG_INVALID_IMAGE_HEADER,
         "UKI package is for board 'qemu-aarch64', this is 'qemu-x86_64'"),
        (full(counter=1), {"floor": 2}, up.IMG_CURRENT_VERSION_IS_NEWER,
         "anti-rollback: UKI package counter 1 is below this device's floor 2"),
        (full(), {"floor": None}, up.IMG_CURRENT_VERSION_IS_NEWER,  # as Upload answers it
         "anti-rollback floor unreadable: the TPM did not give the floor"),
        (bundle, {}, up.IMG_INVALID_IMAGE_HEADER,
         "not a UKI package: member 'manifest.json' where uki-manifest.json must be "
         "(field name at offset 0)"),
    ]
    for image, kw, rc, reason in cases:
        session, sink = uki_upload(image, **kw)
        with pytest.raises(up.UploadRefused) as e:
            send(session, image)
        assert (e.value.rc, e.value.reason) == (rc, reason)
        assert sink.writes == 0 and not session.done


def test_bundle_upload_refuses_a_uki_package() -> None:
    image = full()
    session = up.Upload(MemSink(), len(image), None, VERIFY, BOARD, 1, 1 << 26)
    with pytest.raises(up.UploadRefused) as e:
        send(session, image)
    assert e.value.reason == ("not a bundle: member 'uki-manifest.json' where manifest.json must "
                              "be (field name at offset 0)")


def test_uki_upload_checks_the_end() -> None:
    image = full()
    session, _ = uki_upload(image, sha=bytes(32))
    with pytest.raises(up.UploadRefused) as e:
        send(session, image)
    assert e.value.rc == up.IMG_INVALID_HASH

    class Corrupting(MemSink):
        def write(self, off: int, data: bytes) -> None:
            super().write(off, data.replace(b"\x00" * 64, b"\x01" * 64) if off > 2048 else data)
    session, _ = uki_upload(image, sink=Corrupting())
    with pytest.raises(up.UploadRefused) as e:
        send(session, image)
    assert (e.value.rc, e.value.reason) == (up.IMG_FLASH_WRITE_FAILED,
                                            "the slot does not hold what was sent")
    # a well-signed package whose payload cannot give the signed UKI: refused after the read back
    man, sig, _, _ = U.split(image)
    bad = uki_package.pack(man, sig, U.DELTA_NAME, uki_delta.delta_payload(NEW, OLD) + b"\x00")
    session, _ = uki_upload(bad)
    with pytest.raises(up.UploadRefused) as e:
        send(session, bad)
    assert e.value.rc == up.IMG_INVALID_IMAGE_HEADER
    assert e.value.reason.startswith("delta trailing at byte ") and "1 bytes after END" in e.value.reason
