"""A/B for the UKI (issue 11 §1: "the bundle, and the UKI where the board allows"), on the real
image under QEMU + OVMF (Secure Boot on) + swtpm, in ONE QEMU run that the phone reboots itself
(SMP OS reset). The UKI's banks are two files on the ESP (bank a: the removable path
\\EFI\\BOOT\\BOOTX64.EFI, bank b: \\EFI\\phone\\uki-b.efi); a test sets the one-shot UEFI BootNext
to the new bank's Boot#### entry, the phone's confirm puts it first in BootOrder, and a trial that
never confirms is reverted by the firmware itself (BootNext is gone after one boot).

1. factory boot: UKI bank a, confirmed; MCUmgr image 1 in the stock smpclient's state list with
   the SHA-256 of the factory UKI;
2. release 0.2.0: `host_tools.flash bundle.tar --uki uki.tar --uki-base <factory UKI>` sends only
   a delta of the UKI; the phone rebuilds it and checks it against the signed SHA-256; with the
   release's signed PCR policy (new UKI + new bundle), `--test --reset` boots UKI b and bundle b
   on trial; the phone unseals, registers, confirms both; PCRs 4 and 11 are the 0.2.0 build's;
   the anti-rollback floor rises to 2;
3. refusals before the inactive UKI bank is written: a UKI package for another board, signed by
   another key, below the floor (each on its first kilobytes), a delta against a UKI the phone
   does not run (by the root broker, with both hashes);
4. UKI 0.3.0 alone (into bank a now), without its signed policy: the trial never gets ready and is
   reset; the firmware boots UKI b again (BootOrder), the record says why, the credentials unseal;
5. after power-off, virt-firmware (independent of our code) reads the device's UEFI variable
   store: BootOrder starts with the entry for \\EFI\\phone\\uki-b.efi, and no BootNext is left."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from smpclient.generics import success
from smpclient.requests.image_management import ImageStatesRead
from smpclient.requests.os_management import ResetWrite

from host_tools.console import Console
from host_tools.image import bundle as B
from host_tools.image import uki_package
from host_tools.qemu.device import Running
from tests.system.conftest import REPO
from tests.system.flash_support import (build_bundles, flash, policy_file, registrar, registrar_secrets,
                                        slot, smp, uki_slot, wait_ready)
from tests.system.sealing_support import SealedDevice

__all__ = ["registrar"]


@dataclass
class Lab:
    sealed: SealedDevice
    run: Running
    builds: dict[str, Path]
    factory: Path
    policies: dict[str, Path]
    timings: dict[str, float]

    def flash(self, *args: str) -> Any:
        return flash(self.sealed.inputs, self.run.target, None, *args)

    def wait_ready(self, cond: Any, what: str) -> dict[str, Any]:
        return wait_ready(self.run, cond, what)

    def images(self) -> dict[tuple[int, int], Any]:
        r = smp(self.run.target, ImageStatesRead())
        assert success(r)
        return {(i.image or 0, i.slot): i for i in r.images}

    def pcrs(self) -> dict[str, str]:
        con = Console.open(self.run.target)
        try:
            return con.pcrs()["sha256"]
        finally:
            con.close()


@pytest.fixture(scope="module")
def lab(built_image: Path, registrar: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("flash-uki")
    builds = build_bundles(base, (("0.2.0", 2), ("0.3.0", 3)))
    sealed = SealedDevice(built_image, base, name="flash-uki")
    sealed.device.config.reboot = True
    registrar_secrets(sealed, "flash-uki-user-secret")
    sealed.provision()
    # a release's policy: its own reference (new UKI + new bundle); 0.3.0 gets none
    ref2 = builds["0.2.0"] / "reference.json"
    policies = {"0.2.0": policy_file(sealed, ref2, ref2, base / "policy-0.2.0.json")}
    with sealed.device.running("pty") as run:
        yield Lab(sealed, run, builds, built_image, policies, {})
        if run.proc.poll() is None:  # the last test powers the phone off itself
            con = Console.open(run.target)
            try:
                run.wait_prompt(con, 60)
            finally:
                run.shutdown(con)


def _uki(d: Path) -> bytes:
    return (d / "BOOTX64.EFI").read_bytes()


def test_factory_boot_runs_uki_bank_a_confirmed(lab: Lab) -> None:
    st = lab.wait_ready(lambda s: s.get("registered") is True, "registered")
    assert uki_slot(st) == {"running": "a", "trial": False, "confirmed": "a", "pending": None,
                            "last": None, "version": "0.1.0"}
    imgs = lab.images()
    assert bytes(imgs[(1, 0)].hash) == hashlib.sha256(_uki(lab.factory)).digest()
    assert imgs[(1, 0)].active and imgs[(1, 0)].confirmed and (1, 1) not in imgs


def test_release_with_a_uki_delta_boots_both_on_trial_and_confirms_them(lab: Lab) -> None:
    new = lab.builds["0.2.0"]
    t0 = time.monotonic()
    p = lab.flash(str(new / "bundle.tar"), "--uki", str(new / "uki.tar"), "--uki-base",
                  str(lab.factory / "BOOTX64.EFI"), "--policy", str(lab.policies["0.2.0"]),
                  "--test", "--reset")
    lab.timings["upload_s"] = time.monotonic() - t0
    assert p.returncode == 0, p.stdout + p.stderr
    assert "a delta" in p.stdout and "UKI marked for test" in p.stdout, p.stdout
    st = lab.wait_ready(lambda s: uki_slot(s).get("confirmed") == "b" and slot(s).get("confirmed") == "b",
                        "UKI b and bundle b confirmed")
    took = time.monotonic() - t0
    print(f"\nrelease 0.2.0 (bundle + UKI delta + policy): upload {lab.timings['upload_s']:.1f} s, "
          f"to confirmed {took:.1f} s; {p.stdout.strip()}")
    assert uki_slot(st) == {"running": "b", "trial": False, "confirmed": "b", "pending": None,
                            "last": "confirmed bank b (version 0.2.0)", "version": "0.2.0"}
    assert slot(st)["running"] == "b" and slot(st)["floor"] == 2
    assert st["image_version"] == "0.2.0" and st["unsealed"] is True and st["registered"] is True
    ref = json.loads((new / "reference.json").read_text())
    pcrs = lab.pcrs()
    for pcr in ("4", "11", "14"):  # the new UKI (4: Authenticode, 11: its sections), the bundle
        assert pcrs[pcr] == ref["pcrs"]["sha256"][pcr], pcr
    log = lab.sealed.device.console_log.read_text(errors="replace")
    assert "trial boot of UKI bank b (version 0.2.0)" in log
    assert "UKI bank b confirmed: first in BootOrder" in log
    imgs = lab.images()
    assert bytes(imgs[(1, 0)].hash) == hashlib.sha256(_uki(new)).digest() and imgs[(1, 0)].active


def _foreign(key: Ed25519PrivateKey, board: str, counter: int, uki: bytes) -> bytes:
    return uki_package.build_package(key, board, "0.9.0", counter, uki)


@pytest.mark.parametrize("which,why", [
    ("other_board", "is for board 'qemu-aarch64', this is 'qemu-x86_64'"),
    ("wrong_key", "signature does not verify with the vendor key"),
    ("downgrade", "anti-rollback"),
])
def test_refused_before_the_inactive_uki_bank_is_written(lab: Lab, which: str, why: str) -> None:
    before = lab.images().get((1, 1))
    vendor = B.load_or_create_key(REPO / "build" / "keys" / "dev-signing-key.pem", create=False)
    uki = _uki(lab.builds["0.3.0"])
    data = {"other_board": lambda: _foreign(vendor, "qemu-aarch64", 4, uki),
            "wrong_key": lambda: _foreign(Ed25519PrivateKey.generate(), "qemu-x86_64", 4, uki),
            "downgrade": lambda: _foreign(vendor, "qemu-x86_64", 1, uki)}[which]()
    path = lab.sealed.inputs / f"uki-{which}.tar"
    path.write_bytes(data)
    # a delta against the running UKI: only the manifest's checks are at stake, not 16 MB of line
    p = lab.flash("--uki", str(path), "--uki-base", str(_uki_path(lab.builds["0.2.0"])))
    assert p.returncode == 1, p.stdout + p.stderr
    assert why in p.stdout, p.stdout
    after = lab.images().get((1, 1))
    assert (before is None and after is None) or (
        before is not None and after is not None and bytes(before.hash) == bytes(after.hash))


def test_a_delta_against_a_uki_the_phone_does_not_run_is_refused(lab: Lab) -> None:
    new = lab.builds["0.3.0"]
    p = lab.flash("--uki", str(new / "uki.tar"), "--uki-base", str(lab.factory / "BOOTX64.EFI"))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "base" in p.stdout, p.stdout
    assert (1, 1) in lab.images() and lab.images()[(1, 1)].version == "0.1.0"


def test_uki_trial_without_its_policy_is_reverted_by_the_firmware(lab: Lab) -> None:
    new = lab.builds["0.3.0"]
    p = lab.flash("--uki", str(new / "uki.tar"), "--uki-base", str(_uki_path(lab.builds["0.2.0"])),
                  "--test", "--reset")
    assert p.returncode == 0, p.stdout + p.stderr
    st = lab.wait_ready(lambda s: uki_slot(s).get("running") == "a", "trial of UKI bank a")
    assert uki_slot(st)["trial"] is True and uki_slot(st)["version"] == "0.3.0"
    assert st["unsealed"] is False  # no signed policy for the 0.3.0 UKI: never ready
    assert success(smp(lab.run.target, ResetWrite()))
    st = lab.wait_ready(lambda s: uki_slot(s).get("running") == "b" and s.get("unsealed") is True,
                        "reverted to UKI bank b")
    assert uki_slot(st)["last"] == ("reverted to UKI bank b (version 0.2.0): trial UKI bank a "
                                    "(version 0.3.0) was never confirmed")
    assert uki_slot(st)["confirmed"] == "b" and slot(st)["floor"] == 2
    assert lab.pcrs()["4"] == json.loads((lab.builds["0.2.0"] / "reference.json").read_text())[
        "pcrs"]["sha256"]["4"]


def _uki_path(d: Path) -> Path:
    return d / "BOOTX64.EFI"


def test_after_power_off_virt_firmware_reads_bank_b_first_in_bootorder_and_no_bootnext(lab: Lab) -> None:
    """The device's UEFI variable store, read by virt-firmware (not our codecs) once QEMU is off."""
    from virt.firmware.efi import bootentry
    from virt.firmware.varstore.edk2 import Edk2VarStore
    con = Console.open(lab.run.target)
    lab.run.wait_prompt(con, 60)
    lab.run.shutdown(con)
    assert lab.run.proc.poll() is not None
    varlist = Edk2VarStore(str(lab.sealed.device.vars)).get_varlist()
    assert "BootNext" not in varlist  # the one-shot trial of bank a was used up
    order = varlist["BootOrder"].data
    first = int.from_bytes(order[:2], "little")
    entry = bootentry.BootEntry(data=varlist[f"Boot{first:04X}"].data)
    assert str(entry.title) == "trusted-phone UKI bank b"
    assert str(entry.devicepath[1].get_filepath()).lower() == "\\efi\\phone\\uki-b.efi"
