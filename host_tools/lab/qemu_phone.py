"""An emulated phone as a labgrid target: the ``QemuPhone`` resource and its ``QemuPhoneDriver``.

labgrid's own QEMUDriver starts one QEMU with a kernel or a disk; it knows nothing of swtpm, of
OVMF's read-only code + per-device variable pflash, of Secure Boot (SMM, secure pflash) or of our
device state (TPM, flash, variables under ``build/devices/NAME``). This driver delegates all of
that to ``host_tools.qemu.device`` (the code ``python -m host_tools.qemu`` and the system tests
use), and offers labgrid's PowerProtocol over it:

* ``on()``: swtpm, then QEMU with its serial console on a TCP socket held until our console driver
  is attached (``wait=on``: nothing the firmware prints is lost);
* ``off()``: ``poweroff`` on the console when the phone is at its prompt (TPM2_Shutdown first: an
  unclean TPM reset costs a dictionary-attack try, DESIGN.md), then QEMU and swtpm stopped by PID;
  ``clean_off: false`` makes it a plain power cut;
* ``cycle()``: off, then on.

The serial console is handed to ``PhoneConsoleDriver`` (the QEMU socket is the phone's UART) and
is also reachable as ``serial_url()`` (``socket://127.0.0.1:PORT``), which is what a labgrid
exporter publishes as a ``NetworkSerialPort`` for the remote path (README of the board).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

import attr
from labgrid.driver.common import Driver
from labgrid.driver.exception import ExecutionError
from labgrid.factory import target_factory
from labgrid.protocol import PowerProtocol
from labgrid.resource.common import Resource
from labgrid.step import step

from host_tools.console import Console, ConsoleError
from host_tools.qemu.device import BOARD, REPO, Device, DeviceConfig, DeviceError, Running

_opt_str = attr.validators.optional(attr.validators.instance_of(str))
_bool = attr.validators.instance_of(bool)


@target_factory.reg_resource
@attr.s(eq=False)
class QemuPhone(Resource):  # type: ignore[misc]  # labgrid is untyped
    """One emulated phone (its state: ``DEVICES_DIR/DEVICE``).

    Args:
        device: device name (default ``lab``)
        image_dir: built image directory (default ``$PHONE_IMAGE_DIR`` or ``build/qemu-x86_64``)
        devices_dir: where device state lives (default ``$PHONE_DEVICES_DIR`` or ``build/devices``)
        network: user-mode network (the phone registers and calls through the host)
        secrets: provisioning input (JSON, ``python -m host_tools.provision --secrets``)
        pin_file: the user PIN for provisioning
        fresh: on the first power-on in this process, delete the device's state (TPM, flash,
            variables) and start from a new TPM and a fresh copy of the image, provisioned when
            ``secrets`` is given; default false: the device keeps its state like a real phone
    Relative paths are relative to the environment file.
    """

    device: str = attr.ib(default="lab", validator=attr.validators.instance_of(str))
    image_dir: str | None = attr.ib(default=None, validator=_opt_str)
    devices_dir: str | None = attr.ib(default=None, validator=_opt_str)
    network: bool = attr.ib(default=True, validator=_bool)
    secrets: str | None = attr.ib(default=None, validator=_opt_str)
    pin_file: str | None = attr.ib(default=None, validator=_opt_str)
    fresh: bool = attr.ib(default=False, validator=_bool)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.avail = True   # a local process: always there

    def path(self, value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(value)
        env = getattr(self.target, "env", None) if self.target is not None else None
        if not p.is_absolute() and env is not None:
            p = Path(env.config.resolve_path(value))
        return p

    def image_path(self) -> Path:
        return (self.path(self.image_dir)
                or Path(os.environ.get("PHONE_IMAGE_DIR", REPO / "build" / BOARD)))

    def devices_path(self) -> Path:
        return (self.path(self.devices_dir)
                or Path(os.environ.get("PHONE_DEVICES_DIR", REPO / "build" / "devices")))


@target_factory.reg_driver
@attr.s(eq=False)
class QemuPhoneDriver(Driver, PowerProtocol):  # type: ignore[misc]  # labgrid is untyped
    """PowerProtocol for a ``QemuPhone``: swtpm + QEMU + OVMF via host_tools.qemu.device."""

    bindings = {"phone": "QemuPhone"}
    clean_off: bool = attr.ib(default=True, validator=_bool)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._device: Device | None = None
        self._stack: contextlib.ExitStack | None = None
        self._run: Running | None = None
        self._console: Console | None = None   # the live connection to QEMU's console socket
        self._prepared = False
        self.boots = 0

    # --- device ---------------------------------------------------------------------------

    @property
    def device(self) -> Device:
        if self._device is None:
            res: Any = self.phone
            self._device = Device(res.device, DeviceConfig(
                board=BOARD, build_dir=res.image_path(), devices_dir=res.devices_path(),
                network=res.network, forward_media=False))
        return self._device

    def _prepare(self) -> None:
        """First power-on in this process: with ``fresh``, the device's state is deleted; a
        device without state (new, or just deleted) is provisioned when the resource names
        secrets (else it boots unprovisioned, its flash copied from the image)."""
        res: Any = self.phone
        dev = self.device
        if res.fresh and dev.dir.exists():
            shutil.rmtree(dev.dir)
        if res.secrets is not None and not dev.disk.exists():
            from host_tools.provision import __main__ as provision_cli
            argv = ["--device", dev.name, "--board", BOARD, "--build-dir", str(dev.build_dir),
                    "--devices-dir", str(dev.dir.parent), "--secrets", str(res.path(res.secrets))]
            if res.pin_file is not None:
                argv += ["--pin-file", str(res.path(res.pin_file))]
            rc = provision_cli.main(argv)
            if rc != 0:
                raise ExecutionError(f"provisioning device {dev.name} failed (exit {rc})")
        self._prepared = True

    # --- PowerProtocol --------------------------------------------------------------------

    def on_deactivate(self) -> None:
        self.off()

    @Driver.check_active  # type: ignore[untyped-decorator]
    @step()  # type: ignore[untyped-decorator]
    def on(self) -> None:
        if self._run is not None:
            return
        if not self._prepared:
            self._prepare()
        stack = contextlib.ExitStack()
        try:
            run = stack.enter_context(self.device.running("tcp"))
        except DeviceError as e:
            stack.close()
            raise ExecutionError(str(e)) from None
        self._stack, self._run, self._console = stack, run, run.console
        self.boots += 1

    @Driver.check_active  # type: ignore[untyped-decorator]
    @step()  # type: ignore[untyped-decorator]
    def off(self) -> None:
        run, stack = self._run, self._stack
        if run is None or stack is None:
            return
        self._run = self._stack = None
        con, self._console = self._console, None
        try:
            if self.clean_off and run.proc.poll() is None:
                con = self._live_console(run, con)
                run.shutdown(con)
            else:
                if con is not None:
                    con.close()
                run.stop()
        finally:
            stack.close()

    @Driver.check_active  # type: ignore[untyped-decorator]
    @step()  # type: ignore[untyped-decorator]
    def cycle(self) -> None:
        self.off()
        self.on()

    def _live_console(self, run: Running, con: Console | None) -> Console | None:
        """A console that has seen the prompt, for a clean ``poweroff``; None when the phone
        does not answer (then off() stops it by PID)."""
        if con is not None and not con.spawn.closed:
            return con
        try:
            fresh = Console.open(run.target)
        except OSError:
            return None
        try:
            fresh.wait_prompt(timeout=15, alive=run.check_alive)
        except (ConsoleError, DeviceError):
            pass   # prompt_seen stays False: shutdown() stops by PID
        return fresh

    # --- for the console driver and the tests ---------------------------------------------

    @property
    def running(self) -> Running | None:
        return self._run

    def serial_url(self) -> str:
        """``socket://127.0.0.1:PORT``: QEMU's console socket (one client at a time)."""
        if self._run is None:
            raise ExecutionError("the phone is powered off: no serial console")
        return self._run.target

    def take_console(self) -> Console:
        """The console for PhoneConsoleDriver: the connection made at power-on (it saw every
        byte since reset) or, after that one was closed, a new connection to QEMU's socket."""
        if self._run is None:
            raise ExecutionError("the phone is powered off: no serial console")
        if self._console is None or self._console.spawn.closed:
            self._console = Console.open(self._run.target)
        return self._console

    def check_alive(self) -> None:
        """Raise DeviceError (QEMU's own stderr) when QEMU has exited."""
        if self._run is not None:
            self._run.check_alive()

    def forward_media(self) -> int:
        """Forward the RTP/RTCP ports the phone reports from 127.0.0.1 (host peers' media)."""
        if self._run is None or self._console is None:
            raise ExecutionError("the phone is powered off")
        return self._run.forward_media(self._console)
