"""Shared pieces of the flashing system tests (test_flash_ab.py, test_flash_faults.py): newer
bundles from the image's tree and keys, the signed PCR policy for one delivered into a sealed
device's store, `python -m host_tools.flash` as people run it, the stock smpclient, the banks
read from the device's flash copy, and the console's status after a boot."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from smpclient import SMPClient
from smpclient.transport.serial import SMPSerialTransport

from host_tools.console import Console, ConsoleError
from host_tools.image.build import BuildOptions, build
from host_tools.provision import _fw, disk, reference
from host_tools.qemu.device import Device, Running
from host_tools.update import core, policy_key
from host_tools.update.bundle_ref import bundle_update_reference
from tests.system.conftest import BOARD, REPO
from tests.system.sealing_support import SealedDevice
from tests.system.test_call import PHONE_PASSWORD, PHONE_USER, kamailio_for_phone

BOOT_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def registrar(built_image: Path) -> Iterator[object]:
    """The test's Kamailio: a trial image is ready (and confirms itself) once it registered."""
    yield from kamailio_for_phone(built_image)


def registrar_secrets(sealed: SealedDevice, user_secret: str) -> None:
    """Before provisioning: the SIP account the registrar knows, and a user secret."""
    sealed.device.config.network = True
    (sealed.inputs / "secrets.json").write_text(json.dumps(
        {"sip-account": {"username": PHONE_USER, "password": PHONE_PASSWORD},
         "user-secret": user_secret}))


def build_bundles(base: Path, versions: tuple[tuple[str, int], ...]) -> dict[str, Path]:
    """Images of the same tree and keys as the device's, with newer bundles: version -> out dir."""
    out = {}
    for version, counter in versions:
        build(BuildOptions(board=BOARD, out=base / version, repo=REPO, cache=REPO / "build" / "cache",
                           keys=REPO / "build" / "keys", bundle_version=version,
                           anti_rollback_counter=counter))
        out[version] = base / version
    return out


def policy_file(sealed: SealedDevice, installed: Path, new: Path, out: Path) -> Path:
    """`python -m host_tools.update --policy-out`: the signed policy for the factory UKI + the
    new bundle, from the two references and the vendor's policy key (no device store)."""
    p = subprocess.run([sys.executable, "-m", "host_tools.update", "--policy-out", str(out),
                        "--installed", str(installed), "--bundle-reference", str(new),
                        "--policy-key", str(sealed.policy_key)], cwd=REPO, capture_output=True,
                       text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    return out


def prove_policy(sealed: SealedDevice, entry: dict[str, Any], installed: dict[str, Any],
                 new: dict[str, Any]) -> dict[str, Any]:
    """The device's store with *entry* added, after the entry unsealed on a copy of the device's
    TPM booted with the update's events (host_tools.update's dry run; the store is only read)."""
    ref = reference.parse(bundle_update_reference(installed, new), "bundle update reference")
    meta = _fw.unpack(disk.read_partition(sealed.device.disk))
    updated: dict[str, Any] = core.with_entry(meta, entry, ref)
    assert core.dry_run(sealed.device.tpm_dir, updated, ref) == new["anti_rollback_counter"]
    return updated


def deliver_policy(sealed: SealedDevice, installed: dict[str, Any], new: dict[str, Any]) -> None:
    """The signed policy for the factory UKI + the new bundle written into the device's store on
    its flash copy before booting, as `make update` does (the field path is over SMP: `flash
    --policy`, tests/system/test_flash_ab.py)."""
    ref = reference.parse(bundle_update_reference(installed, new), "bundle update reference")
    meta = _fw.unpack(disk.read_partition(sealed.device.disk))
    key = policy_key.load_or_create(sealed.policy_key, create=False)
    disk.write_store(sealed.device.disk, _fw.pack(prove_policy(sealed, core.make_entry(meta, ref, key),
                                                               installed, new)))


def flash_command(inputs: Path, target: str, image: bytes | None, *args: str) -> list[str]:
    """`python -m host_tools.flash --port TARGET [FILE] ARGS`, the image written under *inputs*
    (None: no image, e.g. a policy alone)."""
    files = []
    if image is not None:
        path = inputs / f"upload-{hashlib.sha256(image).hexdigest()[:8]}.tar"
        path.write_bytes(image)
        files.append(str(path))
    return [sys.executable, "-m", "host_tools.flash", "--port", target, *files, *args]


def flash(inputs: Path, target: str, image: bytes | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(flash_command(inputs, target, image, *args), cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=False)


def smp(target: str, req: Any) -> Any:
    """One request through the stock MCUmgr client (smpclient)."""
    async def go() -> Any:
        c = SMPClient(SMPSerialTransport(), target)
        await c.connect()
        try:
            return await c.request(req)
        finally:
            await c.disconnect()
    return asyncio.run(asyncio.wait_for(go(), 60))


def read_bank(device: Device, name: str) -> bytes:
    off, size = disk.find_partition(device.disk, name)
    with device.disk.open("rb") as f:
        f.seek(off)
        return f.read(size)


def wait_ready(run: Running, cond: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """Open the console, wait for the prompt (after a reboot), then for `cond(status)`."""
    con = Console.open(run.target)
    try:
        run.wait_prompt(con, BOOT_TIMEOUT)
        for attempt in range(3):
            try:
                st: dict[str, Any] = con.wait_status(cond, what, timeout=120)
                return st
            except ConsoleError as e:
                # a poke typed during the boot prints one more prompt, which may arrive after
                # the command's drain and end its answer early (empty): ask again
                if "not one JSON object: ''" not in str(e) or attempt == 2:
                    raise
        raise AssertionError("unreachable")
    finally:
        con.close()


def slot(st: dict[str, Any]) -> dict[str, Any]:
    """The bundle's part of `status` "slot" (the UKI's banks, "uki", are uki_slot's)."""
    return {k: v for k, v in st["slot"].items() if k != "uki"}


def uki_slot(st: dict[str, Any]) -> dict[str, Any]:
    u: dict[str, Any] = st["slot"].get("uki") or {}
    return u


def reference_of(image_dir: Path) -> dict[str, Any]:
    ref: dict[str, Any] = json.loads((image_dir / "reference.json").read_text())
    return ref
