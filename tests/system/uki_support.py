"""Real old/new UKI pairs for the UKI package and delta tests (test_uki_package.py) and the bench
(bench/bench_uki_delta.py), all built from this tree and build/keys into a temporary directory
(not the built image, which may be older than the tree): the old UKI is version 0.1.0; the new
ones are the next version (what changes: .osrel and the Secure Boot signature), and the next
version from a copy of the tree with one line of the stage loader changed (the .initrd too)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from host_tools.image import uki_package
from tests.system.conftest import REPO, build_snapshot
from tests.system.flash_support import build_bundles

CHANGED_FILE = "firmware/boot/stage.py"


@dataclass
class UkiBuild:
    name: str
    out: Path       # the build's directory: BOOTX64.EFI, uki.tar, vendor-pubkey.pem
    what: str       # what differs from the built image

    @property
    def package(self) -> bytes:
        return (self.out / uki_package.PACKAGE_NAME).read_bytes()

    @property
    def uki(self) -> bytes:
        return (self.out / "BOOTX64.EFI").read_bytes()


def build_ukis(base: Path) -> tuple[UkiBuild, list[UkiBuild]]:
    """(the old build, the two newer builds); ~5 s each with the package cache warm."""
    outs = build_bundles(base, (("0.1.0", 1), ("0.2.0", 2)))
    repo = base / "changed-repo"
    for part in ("firmware", "board"):
        shutil.copytree(REPO / part, repo / part,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    with (repo / CHANGED_FILE).open("a") as f:
        f.write("# one more line of loader code\n")
    build_snapshot(repo, REPO / "build" / "keys", base / "0.2.1", bundle_version="0.2.1",
                   anti_rollback_counter=2)
    return UkiBuild("old", outs["0.1.0"], "the installed one"), [
            UkiBuild("version", outs["0.2.0"], "next version: .osrel and the signature"),
            UkiBuild("code", base / "0.2.1",
                     f"next version and one line of {CHANGED_FILE}: .osrel, .initrd, signature")]
