"""PhoneStrategy's transitions are checked by what the console prints, tested on a real captured
boot (tests/data/lab/boot-console.bin: a QEMU phone's serial output from reset to its first
prompt) played over a TCP serial line, with labgrid's own ExternalPowerDriver switching a flag
the line waits for. No QEMU: the full boot is tests/hil.

* the whole capture: off -> firmware -> stage_loader -> prompt, in that order;
* the capture cut after the kernel's lines (the stage loader never starts): the strategy stops
  in ``firmware`` and says which marker it missed and the last line seen;
* nothing after power-on: the strategy never leaves ``off``.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from labgrid import Environment
from labgrid.strategy.common import StrategyError

import host_tools.lab  # noqa: F401  (registers the classes with labgrid)

CAPTURE = (Path(__file__).resolve().parents[2] / "data" / "lab" / "boot-console.bin").read_bytes()
KERNEL_ONLY = CAPTURE[:CAPTURE.index(b"init: firmware partition")]


class Line:
    """A serial line over TCP: after the power flag appears, sends *output* to the client."""

    def __init__(self, flag: Path, output: bytes) -> None:
        self.flag = flag
        self.output = output
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        self.srv.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except OSError:
                continue
            with conn:
                while not self.flag.exists() and not self.stop.is_set():
                    time.sleep(0.05)
                for i in range(0, len(self.output), 64):   # in pieces, as a UART delivers it
                    conn.sendall(self.output[i:i + 64])
                    time.sleep(0.01)
                self.stop.wait()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.srv.close()


def _env(tmp_path: Path, output: bytes) -> Iterator[tuple[Environment, Line]]:
    flag = tmp_path / "power-on"
    line = Line(flag, output)
    (tmp_path / "env.yaml").write_text(f"""
targets:
  main:
    resources:
      NetworkSerialPort: {{host: 127.0.0.1, port: {line.port}, protocol: raw}}
    drivers:
      ExternalPowerDriver:
        cmd_on: "touch {flag}"
        cmd_off: "rm -f {flag}"
        delay: 0.0
      PhoneConsoleDriver: {{}}
      PhoneStrategy: {{boot_timeout: 2}}
""")
    env = Environment(str(tmp_path / "env.yaml"))
    try:
        yield env, line
    finally:
        env.cleanup()
        line.close()


def cause(e: BaseException) -> str:
    """labgrid's never_retry wraps every failure in "PhoneStrategy is in broken state" (the
    strategy then refuses further transitions); the diagnosis is the first exception."""
    while e.__cause__ is not None:
        e = e.__cause__
    return str(e)


@pytest.fixture
def full(tmp_path: Path) -> Iterator[tuple[Environment, Line]]:
    yield from _env(tmp_path, CAPTURE)


@pytest.fixture
def kernel_only(tmp_path: Path) -> Iterator[tuple[Environment, Line]]:
    yield from _env(tmp_path, KERNEL_ONLY)


@pytest.fixture
def silent(tmp_path: Path) -> Iterator[tuple[Environment, Line]]:
    yield from _env(tmp_path, b"")


def test_capture_is_a_real_boot() -> None:
    text = CAPTURE.decode()
    assert text.index("BdsDxe: starting") < text.index("stage loader started") \
        < text.index("phone> ") == len(text) - len("phone> ")


def test_full_boot_reaches_prompt_through_each_state(full: tuple[Environment, Line]) -> None:
    env, _ = full
    strategy = env.get_target().get_driver("PhoneStrategy")
    seen: list[str] = []
    real = strategy._expect

    def record(marker: str, status: object) -> None:
        real(marker, status)
        seen.append(getattr(status, "name"))

    strategy._expect = record
    strategy.transition("prompt")
    assert seen == ["firmware", "stage_loader"]
    assert strategy.status.name == "prompt"
    assert strategy.console.console.prompt_seen


def test_stage_loader_missing_stops_in_firmware(kernel_only: tuple[Environment, Line]) -> None:
    env, _ = kernel_only
    strategy = env.get_target().get_driver("PhoneStrategy")
    with pytest.raises(StrategyError) as e:
        strategy.transition("prompt")
    assert "broken state" in str(e.value)
    msg = cause(e.value)
    assert "stage_loader" in msg and "'stage loader started' not seen within 2 s" in msg, msg
    assert "ima: Can not allocate sha512" in msg, msg   # the last line seen
    assert strategy.status.name == "firmware"


def test_no_firmware_output_never_leaves_off(silent: tuple[Environment, Line]) -> None:
    env, _ = silent
    strategy = env.get_target().get_driver("PhoneStrategy")
    with pytest.raises(StrategyError) as e:
        strategy.transition("firmware")
    assert "firmware: 'BdsDxe: starting' not seen within 2 s" in cause(e.value), cause(e.value)
    assert strategy.status.name == "off"


def test_unknown_state_is_named(full: tuple[Environment, Line]) -> None:
    env, _ = full
    strategy = env.get_target().get_driver("PhoneStrategy")
    with pytest.raises(StrategyError) as e:
        strategy.transition("shell")
    assert cause(e.value) == "unknown state 'shell' (one of off, firmware, stage_loader, prompt)"
