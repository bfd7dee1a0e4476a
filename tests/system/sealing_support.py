"""A provisioned phone for the sealing system tests (test_sealing.py, test_sealing_pin.py): its own
swtpm state and flash under a test directory, provisioned from the image's reference.json with
known secrets and PIN so the tests can search the console and the flash for them."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

from host_tools.console import Console
from host_tools.provision import __main__ as provision_cli
from host_tools.qemu.device import Device, DeviceConfig
from host_tools.tamper.__main__ import main as tamper_main

BOARD = "qemu-x86_64"
BOOT_TIMEOUT = 300.0
SIP_PASSWORD = "qemu-Sip-Secret-7d3b91f0c2"
USER_SECRET = "qemu-user-secret-55aa01"
PIN = b"739104"


class SealedDevice:
    def __init__(self, image: Path, base: Path, name: str = "sealing",
                 secure_boot: bool | None = None) -> None:
        self.image = image
        self.name = name
        self.devices = base / "devices"
        self.device = Device(name, DeviceConfig(board=BOARD, build_dir=image, devices_dir=self.devices,
                                                secure_boot=secure_boot))
        self.inputs = base / "inputs"
        self.inputs.mkdir(parents=True)
        (self.inputs / "secrets.json").write_text(json.dumps(
            {"sip-account": {"username": "phone1", "password": SIP_PASSWORD}, "user-secret": USER_SECRET}))
        (self.inputs / "pin").write_bytes(PIN)
        self.policy_key = base / "policy-signing-key.pem"
        self.golden = b""

    def provision(self) -> None:
        rc = provision_cli.main(["--device", self.name, "--board", BOARD, "--build-dir", str(self.image),
                                 "--devices-dir", str(self.devices), "--secrets", str(self.inputs / "secrets.json"),
                                 "--pin-file", str(self.inputs / "pin"), "--policy-key", str(self.policy_key)])
        assert rc == 0
        self.golden = self.device.disk.read_bytes()

    def restore_golden(self) -> None:
        """The flash as provisioned (golden image + store); `tamper --restore` would zero the store."""
        self.device.disk.write_bytes(self.golden)

    def tamper(self, *args: str) -> None:
        rc = tamper_main(["--device", self.name, "--image-dir", str(self.image), "--devices-dir",
                          str(self.devices), *args])
        assert rc == 0

    @contextlib.contextmanager
    def booted(self, clean: bool = True) -> Iterator[Console]:
        """Boot to the prompt and yield the console. On exit, *clean*: `poweroff` (the phone sends
        TPM2_Shutdown first); else QEMU is killed by PID with the phone running: a power loss,
        the TPM never sees TPM2_Shutdown (Part 3 §9.4), so its next TPM2_Startup is not orderly."""
        with self.device.running("tcp") as run:
            con = run.console
            assert con is not None
            try:
                run.wait_prompt(con, BOOT_TIMEOUT)
                yield con
            finally:
                if clean:
                    run.shutdown(con)
                else:
                    con.close()
                    run.stop()  # SIGTERM to QEMU, then swtpm: no poweroff, no TPM2_Shutdown

    def boot_status(self) -> tuple[dict[str, Any], str]:
        with self.booted() as con:
            st: dict[str, Any] = con.status()
        return st, self.console_text()

    def console_text(self) -> str:
        """What the serial line carried in the last boot (both ways: the guest's tty echoes what
        the host typed)."""
        return self.device.console_log.read_text(errors="replace")


def assert_no_secret(text: str, flash: bytes, typed: list[str] | None = None) -> None:
    """The sealed secrets never show on the console or in the flash; neither does the PIN, except
    where the user typed it: the tty's echo of a `pin` command line is the user's input, not the
    firmware's output, so lines that are exactly such an echo (after the prompt) are left out.
    *typed*: the command lines sent in this boot."""
    for needle in (SIP_PASSWORD, USER_SECRET, PIN.decode()):
        assert needle.encode() not in flash
    for needle in (SIP_PASSWORD, USER_SECRET):
        assert needle not in text
    typed_lines = set(typed or [])
    # the PIN and every well-formed guess typed (6+ digits: shorter ones match any number)
    pins = {PIN.decode()} | {w[1] for w in (line.split() for line in typed_lines)
                             if len(w) == 2 and w[0] == "pin" and w[1].isdigit() and len(w[1]) >= 6}
    for raw in text.replace("\r", "\n").split("\n"):
        line = raw.strip()
        while line.startswith("phone>"):
            line = line[len("phone>"):].strip()
        if line in typed_lines:
            continue  # the echo of what the host typed
        for p in pins:
            assert p not in line, f"the console printed a PIN: {raw!r}"
