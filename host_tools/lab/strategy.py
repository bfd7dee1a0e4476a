"""``PhoneStrategy``: off -> firmware -> stage_loader -> prompt, each step checked on the console.

States (``Status``):

* ``off``: the power driver switched the phone off (QEMU and swtpm stopped by PID);
* ``firmware``: power on; the UEFI firmware printed ``firmware_marker`` (OVMF's boot manager:
  ``BdsDxe: starting Boot0001 ...``, it is about to start the signed UKI);
* ``stage_loader``: the stage loader printed ``stage_marker`` (``boot: [ 0.0 s] stage loader
  started``: the kernel ran /init, which started ``python3 -m firmware.boot``, the code that
  verifies the bundle and measures it into PCR 14);
* ``prompt``: the phone console printed ``phone> `` (its first prompt: no key was pressed during
  the boot).

Without a power driver (a place shared through a labgrid coordinator whose power port is not
ours, a board switched by hand) only ``prompt`` is reachable: the strategy then attaches to the
running phone and pokes the line until a prompt answers. ``cycle()`` is a power cycle through
the power driver (``PowerProtocol.cycle``), checked by the same three markers. Before it cuts
the power of a phone at its prompt the strategy types ``poweroff`` (``clean_poweroff``): the
phone shuts its TPM down first, as it does when a user switches it off.
"""

from __future__ import annotations

import enum
from typing import Any

import attr
from labgrid.binding import BindingState
from labgrid.driver.exception import ExecutionError
from labgrid.factory import target_factory
from labgrid.step import step
from labgrid.strategy.common import Strategy, StrategyError, never_retry

from host_tools.console import ConsoleError
from host_tools.lab.console_driver import PhoneConsoleDriver

FIRMWARE_MARKER = "BdsDxe: starting"
STAGE_MARKER = "stage loader started"


class Status(enum.Enum):
    unknown = 0
    off = 1
    firmware = 2
    stage_loader = 3
    prompt = 4


@target_factory.reg_driver
@attr.s(eq=False)
class PhoneStrategy(Strategy):  # type: ignore[misc]  # labgrid is untyped
    bindings = {"power": {"PowerProtocol", None}, "console": "PhoneConsoleDriver"}

    status: Status = attr.ib(default=Status.unknown)
    firmware_marker: str = attr.ib(default=FIRMWARE_MARKER, validator=attr.validators.instance_of(str))
    stage_marker: str = attr.ib(default=STAGE_MARKER, validator=attr.validators.instance_of(str))
    boot_timeout: float = attr.ib(default=300.0, converter=float)
    # Before the power is cut at the prompt, `poweroff` on the console: the phone sends
    # TPM2_Shutdown (Part 3 §9.4) first. A power loss after a PIN was used in that boot costs a
    # dictionary-attack try at the next TPM2_Startup (docs/sealing.md "PIN guessing").
    clean_poweroff: bool = attr.ib(default=True, validator=attr.validators.instance_of(bool))

    @property
    def phone_console(self) -> PhoneConsoleDriver:
        con: PhoneConsoleDriver = self.console
        return con

    def _alive(self) -> None:
        check = getattr(self.power, "check_alive", None)
        if check is not None:
            check()

    def _need_power(self, status: Status) -> Any:
        if self.power is None:
            raise StrategyError(f"cannot reach {status.name}: this target has no power driver "
                                "(only 'prompt' on a running phone)")
        return self.power

    @never_retry  # type: ignore[untyped-decorator]
    @step(args=["status"])  # type: ignore[untyped-decorator]
    def transition(self, status: Status | str, *, step: Any) -> None:
        if not isinstance(status, Status):
            try:
                status = Status[status]
            except KeyError:
                raise StrategyError(f"unknown state {status!r} (one of "
                                    f"{', '.join(s.name for s in Status if s.value)})") from None
        if status == Status.unknown:
            raise StrategyError(f"can not transition to {status}")
        if status == self.status:
            step.skip("nothing to do")
            return
        if status == Status.off:
            power = self._need_power(status)
            self._console_poweroff()
            self.target.deactivate(self.console)
            self.target.activate(power)
            power.off()
        elif status == Status.firmware:
            power = self._need_power(status)
            self.transition(Status.off)
            power.on()
            self.target.activate(self.console)
            self._expect(self.firmware_marker, Status.firmware)
        elif status == Status.stage_loader:
            if self.status != Status.firmware:
                self.transition(Status.firmware)
            self._expect(self.stage_marker, Status.stage_loader)
        elif status == Status.prompt:
            if self.power is None:
                self.target.activate(self.console)
                self._prompt(poke=True)
            else:
                if self.status != Status.stage_loader:
                    self.transition(Status.stage_loader)
                self._prompt(poke=False)
        self.status = status

    @never_retry  # type: ignore[untyped-decorator]
    @step()  # type: ignore[untyped-decorator]
    def cycle(self) -> None:
        """A power cycle through the power driver (PowerProtocol.cycle), then the same checked
        path firmware -> stage_loader -> prompt."""
        power = self._need_power(Status.firmware)
        self._console_poweroff()
        self.target.deactivate(self.console)
        self.target.activate(power)
        power.cycle()
        self.status = Status.off
        self.target.activate(self.console)
        self._expect(self.firmware_marker, Status.firmware)
        self.status = Status.firmware
        self._expect(self.stage_marker, Status.stage_loader)
        self.status = Status.stage_loader
        self._prompt(poke=False)
        self.status = Status.prompt

    @never_retry  # type: ignore[untyped-decorator]
    @step(args=["status"])  # type: ignore[untyped-decorator]
    def force(self, status: Status | str) -> None:
        """Take the state as given (``--lg-initial-state``): attach, switch nothing."""
        if not isinstance(status, Status):
            status = Status[status]
        if status in (Status.firmware, Status.stage_loader, Status.prompt):
            if self.power is not None:
                self.target.activate(self.power)
            self.target.activate(self.console)
        self.status = status

    def _console_poweroff(self) -> None:
        if not (self.clean_poweroff and self.status == Status.prompt
                and self.console.state is BindingState.active):
            return
        try:
            self.phone_console.console.poweroff(timeout=60)
        except ConsoleError:
            pass   # it did not answer: the power is cut anyway

    def _expect(self, marker: str, status: Status) -> None:
        try:
            self.phone_console.wait_for(marker, self.boot_timeout, alive=self._alive)
        except (ConsoleError, ExecutionError) as e:
            raise StrategyError(f"{status.name}: {e}") from None

    def _prompt(self, poke: bool) -> None:
        try:
            self.phone_console.console.wait_prompt(self.boot_timeout, alive=self._alive,
                                                   poke=poke)
        except ConsoleError as e:
            raise StrategyError(f"prompt: {e}") from None
        if poke:
            self.phone_console.settle()
