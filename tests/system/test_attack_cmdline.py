"""Issue 9.1, run as an attacker would on a provisioned phone (real image, real OVMF, real
swtpm): replace the kernel command line without touching the UKI.

The boot-entry attack plants `\\EFI\\BOOT\\BOOTX64.EFI <command line>` in the device's own variable
store (UEFI 2.10 §3.1.3: the entry's OptionalData becomes the image's LoadOptions) and boots it
through BootNext. With Secure Boot off systemd-stub 252 takes LoadOptions as the kernel command
line instead of the UKI's `.cmdline` and measures it into PCR 12 only: the attacker's line
reaches the kernel, and PCR 12 in the sealing policy makes the TPM refuse (the diagnosis names
it). With Secure Boot on (the vendor's keys enrolled) systemd-stub ignores LoadOptions: the UKI's
`.cmdline` is used and the credentials are released. With Secure Boot on, a UKI that is not
signed by the vendor's db key (unsigned, or one byte changed) does not start at all.

The Secure-Boot-off device is provisioned as a vendor without keys would provision it: from the
same image with the Secure-Boot-off predictions of PCRs 4 and 7 (reference.json
secure_boot.pcrs_secure_boot_off), so the refusal it sees comes from PCR 12 alone."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pexpect
import pytest

from host_tools.image import secureboot
from host_tools.qemu import uefivars
from host_tools.tamper import flash, uki_edit
from tests.system.sealing_support import SealedDevice, assert_no_secret

pytestmark = pytest.mark.slow

ATTACK_WORD = "attacker-was-here"
UKI = "\\EFI\\BOOT\\BOOTX64.EFI"
REFUSED_TIMEOUT = 180.0


def _ref(image: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((image / "reference.json").read_text())
    return doc


def _attack_cmdline(image: Path) -> str:
    # the attacker keeps the UKI's own line (phone.sys= root hash etc.) and adds to it
    return f"{_ref(image)['boot']['cmdline']} loglevel=7 {ATTACK_WORD}"


def _sb_off_image(image: Path, dest: Path, pcr_policy: list[int] | None = None) -> Path:
    """The same disk, no enrolled variable store, PCRs 4 and 7 predicted for Secure Boot off
    (and another sealing PCR set with *pcr_policy*)."""
    dest.mkdir()
    for name in ("disk.img", "BOOTX64.EFI", "vendor-pubkey.pem"):
        os.symlink(image / name, dest / name)
    ref = _ref(image)
    off = ref["secure_boot"]["pcrs_secure_boot_off"]
    ref["pcrs"]["sha256"].update(off)
    ref["secure_boot"] = {"enabled": False}
    if pcr_policy is not None:
        ref["pcr_policy"] = pcr_policy
    (dest / "reference.json").write_text(json.dumps(ref))
    return dest


@pytest.fixture(scope="module")
def sb_off(built_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealedDevice]:
    base = tmp_path_factory.mktemp("attack-sb-off")
    d = SealedDevice(_sb_off_image(built_image, base / "image"), base, name="attack-off",
                     secure_boot=False)
    d.provision()
    yield d


@pytest.fixture(scope="module")
def old_policy(built_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealedDevice]:
    """Secure Boot off and the policy before issue 9, {4, 7, 11, 14}: the attack's control."""
    base = tmp_path_factory.mktemp("attack-old-policy")
    d = SealedDevice(_sb_off_image(built_image, base / "image", [4, 7, 11, 14]), base,
                     name="attack-old", secure_boot=False)
    d.provision()
    yield d


@pytest.fixture(scope="module")
def sb_on(built_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealedDevice]:
    d = SealedDevice(built_image, tmp_path_factory.mktemp("attack-sb-on"), name="attack-on")
    d.provision()
    yield d


def test_control_without_pcr12_the_boot_entry_attack_releases_the_credentials(
        old_policy: SealedDevice, built_image: Path) -> None:
    """The attack is real: sealed to {4, 7, 11, 14} (the policy before issue 9), the phone
    booted with the attacker's command line gets its SIP account from the TPM. This is what the
    PCR 12 test below refuses; if this ever stops releasing, the attack test proves nothing."""
    attack = _attack_cmdline(built_image)
    old_policy.device.prepare()
    uefivars.add_boot_entry(old_policy.device.vars, UKI, attack)
    st, console = old_policy.boot_status()
    assert st["kernel_cmdline"] == attack, st.get("kernel_cmdline")
    assert st["unsealed"] is True and st["credentials_state"] == "unsealed", st
    assert_no_secret(console + json.dumps(st), old_policy.device.disk.read_bytes())


def test_secure_boot_off_boot_entry_cmdline_is_used_but_credentials_stay_sealed(
        sb_off: SealedDevice, built_image: Path) -> None:
    # first the golden boot of this device unseals: the SB-off predictions are right
    st, _ = sb_off.boot_status()
    assert st["unsealed"] is True, st
    attack = _attack_cmdline(built_image)
    uefivars.add_boot_entry(sb_off.device.vars, UKI, attack)
    st, console = sb_off.boot_status()
    # the attack took effect: the kernel ran with the attacker's command line ...
    assert st["kernel_cmdline"] == attack, st.get("kernel_cmdline")
    assert f"Command line: {attack}" in console  # loglevel=7: the kernel's own log says so
    # ... and the TPM did not release the SIP account: PCR 12 alone differs
    assert st["unsealed"] is False and st["state"] == "integrity-failed", st
    assert st["unsealed_reason"].startswith("TPM refused the sealed credentials (TPM_RC_"), st
    assert "kernel command line overridden (PCR 12)" in st["unsealed_reason"], st
    assert [d["pcr"] for d in st["pcrs_differ"]] == [12], st
    assert_no_secret(console + json.dumps(st), sb_off.device.disk.read_bytes())


def test_secure_boot_on_boot_entry_cmdline_is_ignored(sb_on: SealedDevice,
                                                      built_image: Path) -> None:
    uefivars.add_boot_entry(sb_on.device.vars, UKI, _attack_cmdline(built_image))
    st, console = sb_on.boot_status()
    assert st["kernel_cmdline"] == _ref(built_image)["boot"]["cmdline"], st.get("kernel_cmdline")
    assert ATTACK_WORD not in console
    assert st["unsealed"] is True and st["credentials_state"] == "unsealed", st
    assert_no_secret(console + json.dumps(st), sb_on.device.disk.read_bytes())


def _boot_is_refused(dev: SealedDevice) -> str:
    """Boot and watch the console: OVMF refuses the UKI; the phone's prompt never comes."""
    with dev.device.running("tcp") as run:
        con = run.console
        assert con is not None
        try:
            i = con.spawn.expect([r"Access Denied|Security Violation", r"phone> ",
                                  pexpect.EOF], timeout=REFUSED_TIMEOUT)
        finally:
            con.close()
            run.stop()
    text = dev.console_text()
    assert i == 0, text[-3000:]
    return text


@pytest.mark.parametrize("how", ["unsigned", "one byte changed"])
def test_secure_boot_on_refuses_a_uki_not_signed_by_the_vendor(sb_on: SealedDevice,
                                                              how: str) -> None:
    sb_on.restore_golden()
    disk = sb_on.device.disk
    esp = flash.esp_offset(disk)
    signed = uki_edit.read_uki(disk, esp)
    if how == "unsigned":
        bad = secureboot.strip_signature(signed)
    else:
        bad, _note = uki_edit.change_section_byte(signed, "cmdline", None)
    uki_edit.write_uki(disk, esp, bad)
    text = _boot_is_refused(sb_on)
    assert "Linux version" not in text  # the kernel never started
    sb_on.restore_golden()


# --- the EFI-shell attack, typed on the serial console (host_tools/console.py) ----------------
DOWN = "\x1b[B"  # VT100 cursor down: what the edk2 terminal driver reads as SCAN_DOWN


def _settle(con: Any, seconds: float) -> None:
    """Let the firmware draw (and read what it printed) for *seconds*."""
    try:
        con.spawn.expect(pexpect.TIMEOUT, timeout=seconds)
    except pexpect.EOF:
        raise AssertionError("QEMU closed the console") from None


# The attacker presses ESC while OVMF starts. OVMF waits for that key only as long as its boot
# timeout (PcdPlatformBootTimeOut, from QEMU's `-boot menu=on,splash-time=MS`, fw_cfg
# etc/boot-menu-wait); without it the window is a moment, which two loaded vCPUs missed once
# (the ESCs reached the console after BdsDxe had started the UKI). A longer window gives the
# attacker more, not less: the attack is refused either way.
MENU_WAIT = ["-boot", "menu=on,splash-time=15000"]


@contextlib.contextmanager
def _menu_wait(dev: SealedDevice) -> Iterator[None]:
    before = list(dev.device.config.extra_qemu_args)
    dev.device.config.extra_qemu_args = before + MENU_WAIT
    try:
        yield
    finally:
        dev.device.config.extra_qemu_args = before


def _to_efi_shell_entry(con: Any) -> None:
    """ESC while OVMF starts -> its setup front page (UiApp); Boot Manager (third item); then
    the "EFI Internal Shell" entry of the Boot Manager Menu, selected with Enter."""
    for _ in range(400):
        con.spawn.send("\x1b")
        try:
            con.spawn.expect_exact("Boot Manager", timeout=0.3)
            break
        except pexpect.TIMEOUT:
            continue
    else:
        raise AssertionError("OVMF's setup page never came up: " + con.text()[-2000:])
    _settle(con, 4.0)
    con.spawn.send(DOWN)
    _settle(con, 1.0)
    con.spawn.send(DOWN)
    _settle(con, 1.0)
    con.spawn.send("\r")
    con.spawn.expect_exact("Use the <^> and <v> keys", timeout=60)
    menu = con.spawn.before
    _settle(con, 3.0)
    names = [n for n in ("UEFI Misc Device", "EFI Internal Shell", "file BOOTX64.EFI")
             if n in menu]
    names.sort(key=menu.index)
    assert "EFI Internal Shell" in names, menu[-2000:]
    for _ in range(names.index("EFI Internal Shell")):
        con.spawn.send(DOWN)
        _settle(con, 1.0)
    con.spawn.send("\r")


def test_secure_boot_off_efi_shell_cmdline_does_not_release_credentials(
        sb_off: SealedDevice, built_image: Path) -> None:
    sb_off.restore_golden()
    sb_off.device.vars.unlink()  # fresh variables: OVMF's own boot entries only
    attack = _attack_cmdline(built_image)
    with _menu_wait(sb_off), sb_off.device.running("tcp") as run:
        con = run.console
        assert con is not None
        try:
            _to_efi_shell_entry(con)
            con.spawn.expect_exact("Shell> ", timeout=120)
            for ch in f"fs0:{UKI} {attack}\r":  # typed, one key at a time
                con.spawn.send(ch)
            run.wait_prompt(con, 300)
            st = con.status()
        finally:
            run.shutdown(con)
    console = sb_off.console_text()
    # the shell started the UKI with the typed line as LoadOptions; systemd-stub used it
    assert ATTACK_WORD in st["kernel_cmdline"], st.get("kernel_cmdline")
    assert st["unsealed"] is False and st["state"] == "integrity-failed", st
    assert "kernel command line overridden (PCR 12)" in st["unsealed_reason"], st
    # PCR 4 moves too: OVMF measures the setup page and the shell it started (EV_EFI_BOOT_SERVICES_
    # APPLICATION) before the UKI, so this path was refused by the old {4, 7, 11, 14} already
    assert [d["pcr"] for d in st["pcrs_differ"]] == [4, 12], st
    assert_no_secret(console + json.dumps(st), sb_off.device.disk.read_bytes())


def test_secure_boot_on_refuses_the_efi_shell(sb_on: SealedDevice) -> None:
    sb_on.restore_golden()
    sb_on.device.vars.unlink()  # fresh enrolled variables: OVMF's own boot entries only
    with _menu_wait(sb_on), sb_on.device.running("tcp") as run:
        con = run.console
        assert con is not None
        try:
            _to_efi_shell_entry(con)
            # OVMF 2022.11's Boot Manager Menu answers a refused option with this line and
            # returns to the menu (captured); with Secure Boot off the same keys start the shell
            i = con.spawn.expect([r"Access Denied|Security Violation|Press any key to continue",
                                  r"UEFI Interactive Shell|Shell> ", pexpect.EOF],
                                 timeout=REFUSED_TIMEOUT)
            _settle(con, 5.0)
        finally:
            con.close()
            run.stop()
    # the shell is not signed by the vendor's db key: OVMF does not start it
    text = sb_on.console_text()
    assert i == 0, text[-3000:]
    assert "UEFI Interactive Shell" not in text and "Shell> " not in text
