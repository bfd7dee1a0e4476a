"""Issue 9.1, the boot-entry attack, run as an attacker would on a provisioned phone (real image,
real OVMF, real swtpm): plant a UEFI boot entry `\\EFI\\BOOT\\BOOTX64.EFI <command line>` in the
device's own variable store (UEFI 2.10 §3.1.3: the entry's OptionalData becomes the image's
LoadOptions) and boot it through BootNext.

With Secure Boot off systemd-stub 252 takes LoadOptions as the kernel command line instead of the
UKI's `.cmdline` and measures it into PCR 12 only (UAPI TPM PCR Registry); the attacker's line
must reach the kernel (we see it), and the TPM must still refuse the sealed credentials because
PCR 12 is in the policy; the diagnosis names PCR 12."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from host_tools.qemu import uefivars
from tests.system.sealing_support import SealedDevice, assert_no_secret

pytestmark = pytest.mark.slow

ATTACK_WORD = "attacker-was-here"
UKI = "\\EFI\\BOOT\\BOOTX64.EFI"


@pytest.fixture(scope="module")
def sealed(built_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealedDevice]:
    d = SealedDevice(built_image, tmp_path_factory.mktemp("attack-cmdline"), name="attack")
    d.provision()
    yield d


def test_boot_entry_with_cmdline_does_not_release_credentials(sealed: SealedDevice,
                                                              built_image: Path) -> None:
    ref = json.loads((built_image / "reference.json").read_text())
    # the attacker keeps the UKI's own line (phone.sys= root hash etc.) and adds to it
    attack = f"{ref['boot']['cmdline']} loglevel=7 {ATTACK_WORD}"
    sealed.device.prepare()
    uefivars.add_boot_entry(sealed.device.vars, UKI, attack)
    st, console = sealed.boot_status()
    # the attack took effect: the kernel ran with the attacker's command line
    assert ATTACK_WORD in st.get("kernel_cmdline", "") or f"Command line: {attack}" in console, \
        console[-3000:]
    # ... and the TPM did not release the SIP account
    assert st["unsealed"] is False, st
    assert st["state"] == "integrity-failed", st
    assert "kernel command line overridden (PCR 12)" in st["unsealed_reason"], st
    assert 12 in [d["pcr"] for d in st["pcrs_differ"]], st
    assert_no_secret(console + json.dumps(st), sealed.device.disk.read_bytes())
