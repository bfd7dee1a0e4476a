"""Issue 9 part 2 on the booted image (real image, swtpm, OVMF): what the phone's uid and root
can do to the TPM after the real stage loader ran.

Attacker code gets into the guest the way `make tamper` models a compromised build server: the
phone-app component is rebuilt with tests/system/attacker/prelude.py in front of
firmware/console/__main__.py and re-signed with the dev key, so the genuine loader verifies,
measures and starts it as the phone. It prints one `ATTACK {json}` line, then the genuine
console runs.

Root after the loader: a test image variant built by this module from a copy of the source tree
where the loader leaves the console as root (PHONE_UID 0, no privilege drop) and the bundle
carries the same prelude. Everything else is the production loader: it measures, closes PCR
14, locks the platform hierarchy and starts the broker exactly as in production; the device is
provisioned by host_tools.provision from that variant's reference. So the TPM state root meets
(hierarchy authorizations, platform hierarchy disabled, the anti-rollback index's attributes)
is the production one; only who runs the console differs. No production image has this code.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from host_tools.image import bundle
from host_tools.image.initramfs import PYC_TAG
from host_tools.tamper import bundle_ops, flash
from tests.system.conftest import REPO
from tests.system.sealing_support import SealedDevice

pytestmark = pytest.mark.slow

PRELUDE = (Path(__file__).parent / "attacker" / "prelude.py").read_text()
CONSOLE_MAIN = "firmware/console/__main__.py"
DEV_KEY_NAME = "dev-signing-key.pem"  # beside the image directory: build/keys


def _with_prelude(source: str) -> str:
    return PRELUDE + "\n\n# --- the genuine firmware/console/__main__.py ---\n" + source


def _attacker_phone_app(archive: bytes) -> bytes:
    out: list[tuple[str, bytes]] = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        for info in tar.getmembers():
            f = tar.extractfile(info)
            assert f is not None
            out.append((info.name, f.read()))
    pyc = f"firmware/console/__pycache__/__main__.{PYC_TAG}.pyc"
    names = [n for n, _ in out]
    assert CONSOLE_MAIN in names and pyc in names, names[:20]
    out = [(n, _with_prelude(d.decode()).encode() if n == CONSOLE_MAIN else d)
           for n, d in out if n != pyc]  # no byte code: the loader installs the source
    return bundle.ustar(sorted(out))


def _attack_line(text: str) -> dict[str, Any]:
    m = re.search(r"ATTACK (\{.*\})", text)
    assert m is not None, "no ATTACK line; console:\n" + text[-3000:]
    obj: dict[str, Any] = json.loads(m.group(1))
    return obj


BROKER_REFUSALS = [
    {"ok": False, "error": "refused: operation not allowed"},
    {"ok": False, "error": "refused: operation not allowed"},
    {"ok": False, "error": "refused: request is not UTF-8 JSON"},
    {"ok": False, "error": "refused: unlock: the PIN must be 4..16 digits"},
]


@pytest.fixture(scope="module")
def phone_uid_attack(built_image: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    dev = SealedDevice(built_image, tmp_path_factory.mktemp("privilege"), name="privilege")
    dev.provision()
    key = bundle.load_or_create_key(built_image.parent / "keys" / DEV_KEY_NAME, create=False)
    with flash.edit(dev.device) as disk:
        b, part = flash.read_bundle(disk)
        b2, _ = bundle_ops.replace_data(b, "phone-app", _attacker_phone_app(b.data("phone-app")), key)
        flash.write_bundle(disk, part, b2)
    with dev.booted() as con:
        st = con.status()
    text = dev.console_text()
    # the loader accepted the re-signed bundle and started it (the attacker ran); the TPM still
    # refuses the credentials to this build (PCR 14 differs)
    assert st["state"] == "integrity-failed" and st["unsealed"] is False, st
    # the hierarchy authorizations exist only in the vendor's record: not on the device's flash,
    # not on its console
    record = json.loads((dev.devices / dev.name / "provisioning-record.json").read_text())
    flash_bytes = dev.device.disk.read_bytes()
    for value in record["hierarchy_auth"].values():
        assert value not in text and bytes.fromhex(value) not in flash_bytes
        assert value.encode() not in flash_bytes
    return _attack_line(text), text


def test_phone_uid_cannot_open_the_tpm(phone_uid_attack: tuple[dict[str, Any], str]) -> None:
    attack, _ = phone_uid_attack
    assert attack["uid"] == 1000
    assert attack["/dev/tpmrm0"] == "errno 13" and attack["/dev/tpm0"] == "errno 13"  # EACCES


def test_broker_refuses_everything_but_its_operations(phone_uid_attack: tuple[dict[str, Any], str]) -> None:
    attack, text = phone_uid_attack
    assert attack["broker"] == BROKER_REFUSALS
    # and says so on the console, without the request's values
    refused = [line for line in text.splitlines() if "broker: refused a request" in line]
    assert len(refused) == 4, refused
    assert not any("1234; da reset" in line for line in refused)


# --- root after the loader: the test image variant -------------------------------------------

ROOT_PATCHES = {
    "firmware/boot/console_proc.py": [
        ("PHONE_UID = 1000 ", "PHONE_UID = 0  # TEST VARIANT: the console stays root\nPHONE_UID_PROD = 1000 "),
        ('    if os.getuid() != 0:\n        return\n    os.setgroups([])',
         '    return  # TEST VARIANT: no privilege drop\n    os.setgroups([])'),
    ],
}


def _root_variant(tmp: Path) -> Path:
    """A copy of the source tree with ROOT_PATCHES and the prelude, built into tmp/build."""
    src = tmp / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
                           ).stdout.decode().split("\0")
    for rel in filter(None, files):
        if not (REPO / rel).is_file():
            continue
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    for rel, subs in ROOT_PATCHES.items():
        text = (src / rel).read_text()
        for old, new in subs:
            assert old in text, (rel, old)
            text = text.replace(old, new)
        (src / rel).write_text(text)
    main = src / CONSOLE_MAIN
    main.write_text(_with_prelude(main.read_text()))
    (src / "build").mkdir()
    os.symlink(REPO / "build" / "cache", src / "build" / "cache")
    (src / "build" / "keys").mkdir()
    for k in (REPO / "build" / "keys").iterdir():
        if k.is_dir():  # e.g. the TPM manufacturer CA (host_tools/provision/manufacturer.py)
            shutil.copytree(k, src / "build" / "keys" / k.name)
        else:
            shutil.copy2(k, src / "build" / "keys" / k.name)
    out = tmp / "image"
    proc = subprocess.run([sys.executable, "-m", "host_tools.image", "--board", "qemu-x86_64",
                           "--out", str(out)], cwd=src, env=dict(os.environ, PYTHONPATH=str(src)),
                          capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def root_attack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("rootvariant")
    image = _root_variant(tmp)
    dev = SealedDevice(image, tmp, name="root")
    dev.provision()
    with dev.booted() as con:
        con.status()
    attack = _attack_line(dev.console_text())
    assert attack["uid"] == 0
    return attack


# TPM 2.0 Part 2 §6.6.3: format-1 codes with bit 11 set name session 1 (0x900 + code).
# Platform: Debian's OVMF (2022.11) sets a random platformAuth before it boots the UKI (seen at
# every boot: the loader's probe gets TPM_RC_BAD_AUTH and reports "platformAuth set by the
# firmware"), so platform commands fail on the authorization, not on a disabled hierarchy. Owner
# and platform authorizations are not DA-protected (TPM_RC_BAD_AUTH); lockout is (AUTH_FAIL).
ROOT_EXPECTED = {
    "DictionaryAttackLockReset": "0x98e TPM_RC_AUTH_FAIL",  # lockoutAuth unknown
    # one failed lockoutAuth locks the lockout hierarchy for lockoutRecovery (86400 s, Part 1
    # §19.8.6): every later attempt is TPM_RC_LOCKOUT without even a check of the value
    "Clear(lockout)": "0x921 TPM_RC_LOCKOUT",
    "Clear(platform)": "0x9a2 TPM_RC_BAD_AUTH",
    "NV_UndefineSpace(owner)": "0x9a2 TPM_RC_BAD_AUTH",  # ownerAuth unknown
    "NV_UndefineSpace(platform)": "0x9a2 TPM_RC_BAD_AUTH",
    "HierarchyChangeAuth(owner)": "0x9a2 TPM_RC_BAD_AUTH",
    "HierarchyChangeAuth(endorsement)": "0x9a2 TPM_RC_BAD_AUTH",
    "HierarchyChangeAuth(lockout)": "0x921 TPM_RC_LOCKOUT",
    "HierarchyChangeAuth(platform)": "0x9a2 TPM_RC_BAD_AUTH",
    "HierarchyControl(platform on)": "0x9a2 TPM_RC_BAD_AUTH",
}


def test_root_after_the_loader_is_refused_by_the_tpm(root_attack: dict[str, Any]) -> None:
    assert root_attack["tpm"] | {"startup_clear": None, "rollback_index": None} == \
        ROOT_EXPECTED | {"startup_clear": None, "rollback_index": None}


def test_root_sees_the_index_platform_created(root_attack: dict[str, Any]) -> None:
    flags = int(root_attack["tpm"]["startup_clear"], 16)
    # phEnable SET with OVMF's platformAuth (see ROOT_EXPECTED), phEnableNV SET (Part 2 §8.7)
    assert flags & 0x1 and flags & 0x8
    attrs = int(root_attack["tpm"]["rollback_index"], 16)
    assert attrs & 0x40000000 and attrs & 0x400  # PLATFORMCREATE, POLICY_DELETE (Part 2 §13.4)
