"""``PhoneConsoleDriver``: the phone's serial console (host_tools.console: pyserial + pexpect) as
a labgrid ConsoleProtocol driver.

It binds to one serial line: a ``NetworkSerialPort`` (a lab's ser2net/rfc2217 or raw TCP port,
local or through a labgrid ``RemotePlace``), a ``RawSerialPort`` (a board's ``/dev/ttyUSB0``)
or a ``QemuPhoneDriver`` (QEMU's console socket, attached from power-on). ``console`` is the
``host_tools.console.Console`` the HIL tests speak the phone's protocol with (commands, ``status``,
``pcrs``, framed logs); read/write/sendline/expect are labgrid's ConsoleProtocol over the same
pexpect spawn, so labgrid's own tools work on the line too.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import attr
import pexpect
import serial
from labgrid.driver.common import Driver
from labgrid.driver.exception import ExecutionError
from labgrid.factory import target_factory
from labgrid.protocol import ConsoleProtocol
from labgrid.resource.serialport import NetworkSerialPort, RawSerialPort
from labgrid.util.proxy import proxymanager

from host_tools.console import Console, ConsoleTimeout
from host_tools.lab.qemu_phone import QemuPhoneDriver


@target_factory.reg_driver
@attr.s(eq=False)
class PhoneConsoleDriver(Driver, ConsoleProtocol):  # type: ignore[misc]  # labgrid is untyped
    bindings = {"port": {"NetworkSerialPort", "RawSerialPort", "QemuPhoneDriver"}}

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._console: Console | None = None

    def url(self) -> str:
        """The pyserial URL (or device path) of the bound line."""
        port: Any = self.port
        if isinstance(port, QemuPhoneDriver):
            return port.serial_url()
        if isinstance(port, NetworkSerialPort):
            host, tcp = proxymanager.get_host_and_port(port)
            if port.protocol == "raw":
                return f"socket://{host}:{tcp}"
            if port.protocol == "rfc2217":
                return f"rfc2217://{host}:{tcp}?ign_set_control"
            raise ExecutionError(f"NetworkSerialPort protocol {port.protocol!r}: "
                                 "raw or rfc2217 only")
        if isinstance(port, RawSerialPort):
            return str(port.port)
        raise ExecutionError(f"cannot open a console on {port!r}")

    def on_activate(self) -> None:
        port: Any = self.port
        if isinstance(port, QemuPhoneDriver):
            self._console = port.take_console()
        elif isinstance(port, RawSerialPort):
            self._console = Console(serial.Serial(port.port, port.speed, timeout=1))
        else:
            self._console = Console.open(self.url())

    def on_deactivate(self) -> None:
        con, self._console = self._console, None
        if con is not None:
            con.close()

    @property
    def console(self) -> Console:
        """The phone's console protocol (host_tools.console.Console) on this line."""
        if self._console is None:
            raise ExecutionError("PhoneConsoleDriver is not active")
        return self._console

    # --- labgrid's ConsoleProtocol -------------------------------------------------------

    @Driver.check_active  # type: ignore[untyped-decorator]
    def read(self, size: int = 1024, timeout: float = 0.0) -> bytes:
        try:
            text: str = self.console.spawn.read_nonblocking(size, timeout=timeout)
        except pexpect.TIMEOUT:
            return b""
        return text.encode()

    @Driver.check_active  # type: ignore[untyped-decorator]
    def write(self, data: bytes) -> None:
        self.console.spawn.send(data)

    @Driver.check_active  # type: ignore[untyped-decorator]
    def sendline(self, line: str) -> None:
        self.console.spawn.sendline(line)

    @Driver.check_active  # type: ignore[untyped-decorator]
    def sendcontrol(self, char: str) -> None:
        self.console.spawn.sendcontrol(char)

    @Driver.check_active  # type: ignore[untyped-decorator]
    def expect(self, pattern: Any, timeout: float = -1) -> tuple[int, Any, Any, Any]:
        """As labgrid's ConsoleExpectMixin: (index, before, match, after)."""
        spawn = self.console.spawn
        index = spawn.expect(pattern, timeout=timeout)
        return index, spawn.before, spawn.match, spawn.after

    # --- boot markers (for PhoneStrategy) ------------------------------------------------

    def settle(self, quiet: float = 2.0, limit: float = 30.0) -> None:
        """Wait until the line has been quiet for *quiet* seconds: each empty line typed to get
        a prompt from a phone still booting comes back as one more prompt later, which the next
        command would take for its answer."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                self.console.spawn.read_nonblocking(65536, timeout=quiet)
            except pexpect.TIMEOUT:
                return

    def wait_for(self, text: str, timeout: float,
                 alive: Callable[[], None] | None = None) -> None:
        """Wait until *text* shows on the line (consumed in order: what came before is
        skipped); *alive* is called every second and may raise (QEMU died)."""
        spawn = self.console.spawn
        waited = 0.0
        while True:
            try:
                spawn.expect_exact(text, timeout=1.0)
                return
            except pexpect.TIMEOUT:
                waited += 1.0
            except pexpect.EOF:
                if alive is not None:
                    alive()
                raise ExecutionError(f"console closed before {text!r}; last line: "
                                     f"{self.console.last_line()!r}") from None
            if alive is not None:
                alive()
            if waited >= timeout:
                raise ConsoleTimeout(f"{text!r} not seen within {timeout:.0f} s; last line: "
                                     f"{self.console.last_line()!r}")
