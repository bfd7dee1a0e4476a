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

import asyncio
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from smpclient import SMPClient
from smpclient.generics import success
from smpclient.requests.image_management import ImageStatesRead
from smpclient.requests.os_management import ResetWrite
from smpclient.transport.serial import SMPSerialTransport

from host_tools.console import Console
from host_tools.image import bundle as B
from host_tools.image.build import BuildOptions, build
from host_tools.provision import _fw, disk, reference
from host_tools.qemu.device import Device, DeviceConfig, Running
from host_tools.update import core
from host_tools.update.bundle_ref import bundle_update_reference
from tests.system.conftest import BOARD, REPO
from tests.system.sealing_support import SealedDevice
from tests.system.test_call import PHONE_PASSWORD, PHONE_USER, kamailio_for_phone

BOOT_TIMEOUT = 300.0


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
        """Open the console, wait for the prompt (after a reboot), then for `cond(status)`."""
        con = self.console()
        try:
            self.run.wait_prompt(con, BOOT_TIMEOUT)
            st: dict[str, Any] = con.wait_status(cond, what, timeout=120)
            return st
        finally:
            con.close()

    def flash(self, image: bytes | None, *args: str) -> subprocess.CompletedProcess[str]:
        files = []
        if image is not None:
            path = self.sealed.inputs / f"upload-{hashlib.sha256(image).hexdigest()[:8]}.tar"
            path.write_bytes(image)
            files.append(str(path))
        return subprocess.run([sys.executable, "-m", "host_tools.flash", "--port", self.run.target,
                               *files, *args], cwd=REPO, capture_output=True, text=True,
                              timeout=600, check=False)

    def store(self) -> bytes:
        return disk.read_partition(self.device.disk)

    def bank(self, name: str) -> bytes:
        off, size = disk.find_partition(self.device.disk, name)
        with self.device.disk.open("rb") as f:
            f.seek(off)
            return f.read(size)


def _smp(target: str, req: Any) -> Any:
    async def go() -> Any:
        c = SMPClient(SMPSerialTransport(), target)
        await c.connect()
        try:
            return await c.request(req)
        finally:
            await c.disconnect()
    return asyncio.run(asyncio.wait_for(go(), 60))


def _foreign_bundle(key: Ed25519PrivateKey, board: str, version: str, counter: int) -> bytes:
    comps = [B.Component("phone-app", version, b"not for this phone " * 100)]
    man = B.manifest(board, version, counter, comps, 14)
    return B.pack(man, B.sign(key, man), comps)


def _policy_file(sealed: SealedDevice, installed: Path, new: Path, out: Path) -> Path:
    """`python -m host_tools.update --policy-out`: the signed policy for the factory UKI + the
    new bundle, from the two references and the vendor's policy key (no device store)."""
    p = subprocess.run([sys.executable, "-m", "host_tools.update", "--policy-out", str(out),
                        "--installed", str(installed), "--bundle-reference", str(new),
                        "--policy-key", str(sealed.policy_key)], cwd=REPO, capture_output=True,
                       text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    return out


def _proven_on_a_tpm_copy(sealed: SealedDevice, policy: Path, installed: dict[str, Any],
                          new: dict[str, Any]) -> None:
    """The file's entry unseals on a copy of the device's TPM booted with the update's events
    (host_tools.update's dry run; the device's store is only read)."""
    ref = reference.parse(bundle_update_reference(installed, new), "bundle update reference")
    meta = _fw.unpack(disk.read_partition(sealed.device.disk))
    updated = core.with_entry(meta, json.loads(policy.read_bytes())["entry"], ref)
    assert core.dry_run(sealed.device.tpm_dir, updated, ref) == new["anti_rollback_counter"]


@pytest.fixture(scope="module")
def registrar(built_image: Path) -> Iterator[object]:
    yield from kamailio_for_phone(built_image)


@pytest.fixture(scope="module")
def lab(built_image: Path, registrar: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("flash-ab")
    builds = {}
    for version, counter in (("0.2.0", 2), ("0.3.0", 3)):
        # the same tree and keys as the device's image, a newer bundle
        builds[version] = build(BuildOptions(board=BOARD, out=base / version, repo=REPO,
                                             cache=REPO / "build" / "cache", keys=REPO / "build" / "keys",
                                             bundle_version=version, anti_rollback_counter=counter))
    sealed = SealedDevice(built_image, base, name="flash-ab")
    sealed.device.config.reboot = True
    sealed.device.config.network = True  # ready includes registering with the test's Kamailio
    (sealed.inputs / "secrets.json").write_text(json.dumps(
        {"sip-account": {"username": PHONE_USER, "password": PHONE_PASSWORD},
         "user-secret": "flash-ab-user-secret"}))
    sealed.provision()
    policies = {}
    for version in ("0.2.0", "0.3.0"):
        policies[version] = _policy_file(sealed, built_image / "reference.json",
                                         base / version / "reference.json", base / f"policy-{version}.json")
    _proven_on_a_tpm_copy(sealed, policies["0.2.0"], json.loads((built_image / "reference.json").read_text()),
                          json.loads((base / "0.2.0" / "reference.json").read_text()))
    vendor = B.load_or_create_key(REPO / "build" / "keys" / "dev-signing-key.pem", create=False)
    with sealed.device.running("pty") as run:
        yield Lab(sealed, run, (built_image / "bundle.tar").read_bytes(),
                  (base / "0.2.0" / "bundle.tar").read_bytes(), (base / "0.3.0" / "bundle.tar").read_bytes(),
                  _foreign_bundle(vendor, "qemu-aarch64", "0.4.0", 4),
                  _foreign_bundle(Ed25519PrivateKey.generate(), BOARD, "0.4.0", 4), policies, {})
        con = Console.open(run.target)
        try:
            run.wait_prompt(con, 60)
        finally:
            run.shutdown(con)


def _slot(st: dict[str, Any]) -> dict[str, Any]:
    slot: dict[str, Any] = st["slot"]
    return slot


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
    by_slot = {i.slot: i for i in r.images}
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
