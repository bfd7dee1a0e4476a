"""The UKI package and its delta on the real UKIs (issue 11: A/B for the UKI over the serial line):
`make image` writes build/<board>/uki.tar, signed by the vendor and accepted by the device's
parser; a delta against the installed UKI rebuilds the new one byte for byte and is a small
fraction of the full package; applied to another base, it is refused. Prints the sizes
(docs/BENCHMARKS.md "UKI delta")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware.boot import signature
from firmware.update import uki_package as U
from firmware.update import upload as up
from host_tools.image import uki_delta, uki_package
from tests.system.conftest import BOARD
from tests.system.uki_support import UkiBuild, build_ukis

LINE_115200 = 6600  # B/s measured into the phone on a paced 115200-baud line (docs/BENCHMARKS.md)


@pytest.fixture(scope="module")
def ukis(tmp_path_factory: pytest.TempPathFactory) -> tuple[UkiBuild, list[UkiBuild]]:
    return build_ukis(tmp_path_factory.mktemp("uki-pairs"))


def verifier(out: Path) -> object:
    return signature.load_public_key((out / "vendor-pubkey.pem").read_bytes())


def test_image_build_writes_the_signed_full_package(built_image: Path) -> None:
    pkg = (built_image / uki_package.PACKAGE_NAME).read_bytes()
    man = U.verify(pkg, verifier(built_image), BOARD, 1)
    uki = (built_image / "BOOTX64.EFI").read_bytes()
    assert U.split(pkg)[2:] == (U.FULL_NAME, uki)
    assert man["uki"]["size"] == len(uki) and man["board"] == BOARD
    ref = json.loads((built_image / "reference.json").read_text())["boot"]
    assert (ref["uki_sha256"], ref["uki_size"]) == (man["uki"]["sha256"], len(uki))
    assert U.rebuild(pkg, lambda off, n: b"") == uki  # a full payload needs no base


@pytest.mark.parametrize("which", ["version", "code"])
def test_delta_rebuilds_the_new_uki_byte_for_byte(ukis: tuple[UkiBuild, list[UkiBuild]],
                                                  which: str) -> None:
    old, new_ukis = ukis
    new = next(b for b in new_ukis if b.name == which)
    old_uki = old.uki
    full = new.package
    delta = uki_delta.make_delta(full, old_uki)
    man = U.verify(delta, verifier(new.out), BOARD, 2)
    assert man["version"] in ("0.2.0", "0.2.1")
    assert U.rebuild(delta, lambda off, n: old_uki[off:off + n]) == new.uki
    payload = U.split(delta)[3]
    print(f"\nUKI delta ({new.what}): full package {len(full)} B (UKI {len(new.uki)} B), "
          f"delta package {len(delta)} B (payload {len(payload)} B) = "
          f"{100 * len(delta) / len(full):.2f}%; at {LINE_115200} B/s: "
          f"{len(full) / LINE_115200:.0f} s vs {len(delta) / LINE_115200:.1f} s")
    assert len(delta) < len(full) // (100 if which == "version" else 20)
    # the upload session takes the real delta package (checked before and after writing)
    sink = bytearray()

    class Sink:
        def write(self, off: int, data: bytes) -> None:
            sink[off:off + len(data)] = data

        def read(self, off: int, n: int) -> bytes:
            return bytes(sink[off:off + n])

    session = U.UkiUpload(Sink(), len(delta), None, verifier(new.out), BOARD, 2, 1 << 26)
    off = 0
    while off < len(delta):
        off = session.write(off, delta[off:off + 1984])
    assert session.done and bytes(sink) == delta


def test_delta_against_another_installed_uki_is_refused(
        ukis: tuple[UkiBuild, list[UkiBuild]]) -> None:
    old, (version, code) = ukis
    delta = uki_delta.make_delta(code.package, old.uki)
    wrong = version.uki  # a device that runs another UKI than the delta was made against
    with pytest.raises(U.BaseMismatch) as e:
        U.rebuild(delta, lambda off, n: wrong[off:off + n])
    assert "the base UKI is not the delta's" in e.value.reason


def test_each_upload_session_refuses_the_other_format(built_image: Path) -> None:
    verify = verifier(built_image)
    for session_type, image, reason in (
            (up.Upload, (built_image / uki_package.PACKAGE_NAME).read_bytes(),
             "not a bundle: member 'uki-manifest.json' where manifest.json must be"),
            (U.UkiUpload, (built_image / "bundle.tar").read_bytes(),
             "not a UKI package: member 'manifest.json' where uki-manifest.json must be")):
        written: list[int] = []

        class Sink:
            def write(self, off: int, data: bytes) -> None:
                written.append(off)

            def read(self, off: int, n: int) -> bytes:
                return b""

        session = session_type(Sink(), len(image), None, verify, BOARD, 1, 1 << 26)
        with pytest.raises(up.UploadRefused) as e:
            session.write(0, image[:1984])
        assert e.value.reason.startswith(reason) and not written
