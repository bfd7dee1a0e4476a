"""Flashing the booted phone over its serial console (issue 11 §1), on the real image under QEMU +
OVMF + swtpm, in ONE QEMU run that the phone itself reboots (SMP OS reset; DeviceConfig.reboot):

1. factory boot: bank a, confirmed, credentials released (authorized PCR policy), registered with
   the test's Kamailio (TLS, the account sealed to the TPM), floor 1;
2. `python -m host_tools.flash --port PTY bundle-0.2.0.tar --policy policy-0.2.0.json --test
   --reset`: the bundle goes to the inactive bank and its signed PCR policy (written by
   `python -m host_tools.update --policy-out`, without the device's store) over SMP file
   management into the sealed store, through the root broker's checks; the phone reboots into
   bank b on trial, unseals with the delivered policy, confirms itself once ready (console up,
   credentials released, registered) and only then raises the anti-rollback floor to 2; the stock
   smpclient reads the image state;
3. refusals before writing (downgrade, another board, a wrong vendor key): an SMP error and the
   inactive bank's bytes unchanged; a signed policy with a bad signature, or for an older
   version: refused with the reason, the sealed store's bytes unchanged;
4. bundle 0.3.0 on trial with no signed PCR policy delivered for it: its credentials stay sealed,
   so it never reaches ready and never confirms; reset (stock smpclient) -> the loader reverts to
   bank b, `status` says why, the credentials unseal again and the floor stayed 2.

Nothing writes the device's store on the host after provisioning: the signed PCR policy for 0.2.0
arrives over the serial line (docs/flashing.md "Signed PCR policy"). Its reference is the factory
UKI with the new bundle (host_tools/update/bundle_ref.py): an SMP update changes the bundle, not
the ESP."""

from __future__ import annotations

import hashlib
import json
import subprocess
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
from host_tools.provision import disk
from host_tools.qemu.device import Device, Running
from tests.system.conftest import BOARD, REPO
from tests.system.flash_support import (build_bundles, flash, policy_file, prove_policy, read_bank,
                                        reference_of, registrar, registrar_secrets, slot as _slot,
                                        smp as _smp, wait_ready)
from tests.system.sealing_support import SealedDevice


@dataclass
class Lab:
    sealed: SealedDevice
    run: Running
    v1: bytes
    v2: bytes
    v3: bytes
    other_board: bytes
    wrong_key: bytes
    policies: dict[str, Path]
    timings: dict[str, float]

    @property
    def device(self) -> Device:
        return self.sealed.device

    def console(self) -> Console:
        return Console.open(self.run.target)

    def wait_ready(self, cond: Any, what: str) -> dict[str, Any]:
        return wait_ready(self.run, cond, what)

    def flash(self, image: bytes | None, *args: str) -> subprocess.CompletedProcess[str]:
        return flash(self.sealed.inputs, self.run.target, image, *args)

    def store(self) -> bytes:
        return disk.read_partition(self.device.disk)

    def bank(self, name: str) -> bytes:
        return read_bank(self.device, name)


def _foreign_bundle(key: Ed25519PrivateKey, board: str, version: str, counter: int) -> bytes:
    comps = [B.Component("phone-app", version, b"not for this phone " * 100)]
    man = B.manifest(board, version, counter, comps, 14)
    return B.pack(man, B.sign(key, man), comps)


@pytest.fixture(scope="module")
def lab(built_image: Path, registrar: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("flash-ab")
    # the same tree and keys as the device's image, newer bundles
    builds = build_bundles(base, (("0.2.0", 2), ("0.3.0", 3)))
    sealed = SealedDevice(built_image, base, name="flash-ab")
    sealed.device.config.reboot = True
    registrar_secrets(sealed, "flash-ab-user-secret")  # ready includes registering with Kamailio
    sealed.provision()
    policies = {}
    for version in ("0.2.0", "0.3.0"):
        policies[version] = policy_file(sealed, built_image / "reference.json",
                                        builds[version] / "reference.json", base / f"policy-{version}.json")
    prove_policy(sealed, json.loads(policies["0.2.0"].read_bytes())["entry"], reference_of(built_image),
                 reference_of(builds["0.2.0"]))
    vendor = B.load_or_create_key(REPO / "build" / "keys" / "dev-signing-key.pem", create=False)
    with sealed.device.running("pty") as run:
        yield Lab(sealed, run, (built_image / "bundle.tar").read_bytes(),
                  (builds["0.2.0"] / "bundle.tar").read_bytes(), (builds["0.3.0"] / "bundle.tar").read_bytes(),
                  _foreign_bundle(vendor, "qemu-aarch64", "0.4.0", 4),
                  _foreign_bundle(Ed25519PrivateKey.generate(), BOARD, "0.4.0", 4), policies, {})
        con = Console.open(run.target)
        try:
            run.wait_prompt(con, 60)
        finally:
            run.shutdown(con)


def test_factory_boot_is_bank_a_confirmed_with_floor_1(lab: Lab) -> None:
    st = lab.wait_ready(lambda s: s.get("registered") is True, "registered")
    assert _slot(st) | {"floor": None} == {"running": "a", "trial": False, "confirmed": "a",
                                           "pending": None, "last": None, "floor": None}
    assert _slot(st)["floor"] == 1 and st["image_version"] == "0.1.0"


def test_flash_test_reset_boots_b_on_trial_which_confirms_itself(lab: Lab) -> None:
    t0 = time.monotonic()
    p = lab.flash(lab.v2, "--policy", str(lab.policies["0.2.0"]), "--test", "--reset")
    lab.timings["upload_s"] = time.monotonic() - t0
    assert p.returncode == 0, p.stdout + p.stderr
    assert "signed PCR policy /policy/0.2.0.json added to the phone's sealed store" in p.stdout
    st = lab.wait_ready(lambda s: _slot(s).get("confirmed") == "b", "bank b confirmed")
    lab.timings["upload_to_confirmed_s"] = time.monotonic() - t0
    print(f"\nflash 0.2.0: upload+test+reset {lab.timings['upload_s']:.1f} s, upload start -> "
          f"confirmed {lab.timings['upload_to_confirmed_s']:.1f} s ({len(lab.v2)} bytes)")
    assert _slot(st)["running"] == "b" and _slot(st)["trial"] is False
    assert _slot(st)["last"] == "confirmed bank b (version 0.2.0)"
    assert st["image_version"] == "0.2.0" and st["unsealed"] is True  # the signed policy works
    assert st["registered"] is True
    assert _slot(st)["floor"] == 2
    log = lab.device.console_log.read_text(errors="replace")
    trial_boot = log[log.rindex("trial boot of bank b"):]
    # the loader read floor 1 on the trial boot (release did not move it); it rose with the confirm
    assert "anti-rollback floor 1 (" in trial_boot
    assert "trial image confirmed (ready: credentials released, registered)" in trial_boot
    assert "floor raised to 2" in trial_boot
    # the stock MCUmgr client reads the same state
    r = _smp(lab.run.target, ImageStatesRead())
    assert success(r)
    by_slot = {i.slot: i for i in r.images if not i.image}  # image 0, the bundle
    assert by_slot[0].version == "0.2.0" and by_slot[0].active and by_slot[0].confirmed
    assert bytes(by_slot[0].hash) == hashlib.sha256(lab.v2).digest()
    assert by_slot[1].version == "0.1.0" and not by_slot[1].pending


@pytest.mark.parametrize("which,why", [
    ("v1", "anti-rollback: bundle counter 1 is below this device's floor 2"),
    ("other_board", "bundle is for board 'qemu-aarch64', this is 'qemu-x86_64'"),
    ("wrong_key", "manifest signature does not verify with the vendor key"),
])
def test_refused_before_the_inactive_bank_is_written(lab: Lab, which: str, why: str) -> None:
    before = lab.bank("phone-fw")  # bank a is the inactive one now
    p = lab.flash(getattr(lab, which))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "refused" in p.stdout and why in p.stdout, p.stdout
    assert lab.bank("phone-fw") == before


def _bad_signature(doc: dict[str, Any]) -> None:
    s = bytearray.fromhex(doc["entry"]["s"])
    s[-1] ^= 1
    doc["entry"]["s"] = s.hex()


@pytest.mark.parametrize("which,change,why", [
    ("0.3.0", _bad_signature, "policy signature does not verify with this device's policy key"),
    ("0.2.0", lambda d: d["entry"].update(anti_rollback=1),  # a downgrade of the installed 2
     "policy version 1 is older than this device's newest signed policy (2)"),
])
def test_a_bad_signed_policy_over_smp_is_refused_and_the_store_unchanged(
        lab: Lab, which: str, change: Any, why: str) -> None:
    before = lab.store()
    doc = json.loads(lab.policies[which].read_bytes())
    change(doc)
    bad = lab.sealed.inputs / f"bad-policy-{which}.json"
    bad.write_text(json.dumps(doc))
    p = lab.flash(None, "--policy", str(bad))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "refused" in p.stdout and why in p.stdout, p.stdout
    assert lab.store() == before


def test_trial_that_never_gets_ready_is_reverted_and_status_says_why(lab: Lab) -> None:
    p = lab.flash(lab.v3, "--test", "--reset")
    assert p.returncode == 0, p.stdout + p.stderr
    st = lab.wait_ready(lambda s: _slot(s).get("running") == "a", "trial of bank a")
    # no signed PCR policy was delivered for 0.3.0: the TPM refuses, so the phone is not ready
    assert _slot(st)["trial"] is True and st["unsealed"] is False and st["image_version"] == "0.3.0"
    time.sleep(3)
    con = lab.console()
    try:
        st = con.status()
    finally:
        con.close()
    assert _slot(st)["trial"] is True and _slot(st)["confirmed"] == "b" and _slot(st)["floor"] == 2
    r = _smp(lab.run.target, ResetWrite())  # the stock client reboots it
    assert success(r)
    st = lab.wait_ready(lambda s: _slot(s).get("running") == "b" and s.get("unsealed") is True,
                        "reverted to bank b")
    assert _slot(st) | {"floor": None} == {
        "running": "b", "trial": False, "confirmed": "b", "pending": None, "floor": None,
        "last": "reverted to bank b (version 0.2.0): trial image bank a (version 0.3.0) was never confirmed"}
    assert _slot(st)["floor"] == 2 and st["image_version"] == "0.2.0"
