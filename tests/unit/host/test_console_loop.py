"""firmware.console.loop.serve_select on CPython (the device's loop): a phone step that raises on
remote input does not end the console; the error is one line in the phone's log and the next
command is still answered."""

from __future__ import annotations

import io
import json
import os
import time
from typing import Any

from firmware.console.loop import serve_select
from tests.unit.firmware.test_console import Device


class App:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, line: str) -> None:
        self.lines.append(line)


class Phone:
    def __init__(self) -> None:
        self.app = App()


class BrokenStepDevice(Device):
    """Every step raises, as a phone that met a bug on a received INVITE would."""

    def __init__(self, in_w: int, script: list[bytes]) -> None:
        super().__init__()
        self.phone = Phone()
        self.steps = 0
        self.in_w = in_w
        self.script = script

    def sockets(self) -> list[Any]:
        return []

    def next_deadline(self) -> int:
        return 0          # step at once, every turn

    def pending(self) -> bool:
        return False

    def step(self, ready: list[Any], now: int) -> None:
        self.steps += 1
        if self.script:
            os.write(self.in_w, self.script.pop(0))
        elif self.steps > 30 and self.in_w >= 0:
            os.close(self.in_w)
            self.in_w = -1
        raise AttributeError("'NoneType' object has no attribute 'split'")


def test_step_errors_are_logged_and_the_console_keeps_answering() -> None:
    r, w = os.pipe()
    dev = BrokenStepDevice(w, [b"status\n", b"help\n"])
    out = io.BytesIO()
    rc = serve_select(dev, r, out, lambda: int(time.monotonic() * 1000), max_wait_ms=10)
    os.close(r)
    assert rc == 0 and dev.steps > 30
    text = out.getvalue().decode()
    status = [ln for ln in text.split("\n") if ln.startswith("phone> {")]
    assert json.loads(status[0][len("phone> "):])["state"] == "running"
    assert "\n  poweroff" in text
    lines = dev.phone.app.lines
    # the first ten, then every hundredth: a persistent bug cannot flood the log
    assert len(lines) == 10 + dev.steps // 100
    assert lines[0] == ("error: phone step failed (1): AttributeError: 'NoneType' object has no "
                        "attribute 'split'")
    assert "error: phone step" not in text      # logged to the phone's log, not the console


class NoticeDevice(Device):
    """A phone that learns a remote party's integrity level while the console runs."""

    def __init__(self, in_w: int, script: list[bytes]) -> None:
        super().__init__()
        self.in_w = in_w
        self.script = script
        self.steps = 0
        self.notices = ["call c1: remote sip:carol@127.0.0.1 is verified (image 0.1.0)"]

    def sockets(self) -> list[Any]:
        return []

    def next_deadline(self) -> int:
        return 0

    def pending(self) -> bool:
        return False

    def take_notices(self) -> list[str]:
        out, self.notices = self.notices, []
        return out

    def step(self, ready: list[Any], now: int) -> None:
        self.steps += 1
        if self.script:
            os.write(self.in_w, self.script.pop(0))
        elif self.steps > 5 and self.in_w >= 0:
            os.close(self.in_w)
            self.in_w = -1


def test_notices_are_printed_once_and_the_host_keeps_them_out_of_answers() -> None:
    from host_tools.console import drop_notices

    r, w = os.pipe()
    dev = NoticeDevice(w, [b"status\n"])
    out = io.BytesIO()
    rc = serve_select(dev, r, out, lambda: int(time.monotonic() * 1000), max_wait_ms=10)
    os.close(r)
    text = out.getvalue().decode()
    assert rc == 0
    assert text.count("notice: call c1: remote sip:carol@127.0.0.1 is verified (image 0.1.0)\n") == 1
    # a notice that lands inside an answer (between the command and its JSON) is dropped by the host
    mixed = "status\r\nnotice: call c1: remote sip:x@y is failed\r\n{\"state\":\"running\"}\r\n"
    assert drop_notices(mixed) == "status\n{\"state\":\"running\"}\n"


def test_host_finds_notices_after_a_prompt() -> None:
    from host_tools.console import Console

    con = Console.__new__(Console)    # the transcript alone: no serial port needed
    con.transcript = ["phone> notice: call c1: remote sip:a@h is verified (image 0.1.0)\r\n",
                      "phone> status\r\n{}\r\nphone> notice: call c2: remote sip:b@h is failed\r\n"]
    assert con.notices() == ["call c1: remote sip:a@h is verified (image 0.1.0)",
                             "call c2: remote sip:b@h is failed"]


def test_the_loaders_log_lines_are_kept_out_of_answers() -> None:
    """The stage loader prints "boot: [uptime] ..." (firmware/boot/log.py) on the same console
    at any moment: seen inside a `status` answer when the broker refused a `trust` request."""
    from firmware.boot import log
    from host_tools.console import drop_notices

    r, w = os.pipe()
    saved, log.sys.stdout = log.sys.stdout, os.fdopen(w, "w")
    try:
        log.say("broker: trust failed: ValueError")
        log.sys.stdout.flush()
    finally:
        log.sys.stdout.close()
        log.sys.stdout = saved
    line = os.read(r, 4096).decode()
    os.close(r)
    assert line.startswith("boot: [") and line.endswith("] broker: trust failed: ValueError\n")
    mixed = "status\r\n" + line.replace("\n", "\r\n") + "{\"state\":\"running\"}\r\n"
    assert drop_notices(mixed) == "status\n{\"state\":\"running\"}\n"
    # a JSON answer that merely mentions such text is kept
    assert drop_notices("{\"log\": \"boot: [  1.0 s] x\"}\n") == "{\"log\": \"boot: [  1.0 s] x\"}\n"


class SmpDevice(Device):
    """A console device with an SMP server on the shared line (echo and reset only)."""

    def __init__(self) -> None:
        super().__init__()
        from firmware.smp.server import SmpServer

        class Smp:
            server = SmpServer(None, None)

            def tick(self) -> None:
                return None
        self.smp = Smp()
        self.shutdowns = 0

    def sockets(self) -> list[Any]:
        return []

    def next_deadline(self) -> None:
        return None

    def pending(self) -> bool:
        return False

    def step(self, ready: list[Any], now: int) -> None:
        pass

    def shutdown_tpm(self) -> None:
        self.shutdowns += 1


def _smp_request(group: int, command: int, body: dict[str, Any], seq: int) -> bytes:
    from firmware.smp import cbor
    from firmware.smp import header as H
    from firmware.smp import serial as S
    payload = cbor.encode(body)
    frame = H.Header(H.OP_WRITE, H.V2, 0, len(payload), group, seq, command).pack() + payload
    return b"".join(S.encode(frame))


def test_smp_and_console_share_the_line_and_reset_reboots() -> None:
    """A text line is a command (echoed: the tty does not), SMP lines go to the SMP server and its
    answer starts a line (after the prompt); an OS reset shuts the TPM down and exits with
    EXIT_REBOOT. The SMP continuation lines start with 0x04, the tty's default EOF character."""
    from firmware.console.loop import EXIT_REBOOT
    from firmware.smp import serial as S
    r, w = os.pipe()
    dev = SmpDevice()
    long_echo = "x" * 300  # two serial lines: a continuation line (04 14) must reach the server
    os.write(w, b"help\n" + _smp_request(0, 0, {"d": long_echo}, 7) + _smp_request(0, 5, {}, 8))
    out = io.BytesIO()
    rc = serve_select(dev, r, out, lambda: int(time.monotonic() * 1000), max_wait_ms=10, echo=True)
    os.close(r)
    os.close(w)
    assert rc == EXIT_REBOOT and dev.shutdowns == 1
    data = out.getvalue()
    assert b"phone> help\n" in data and b"\n  poweroff" in data
    split = S.Splitter()
    frames = [item for kind, item in split.feed(data) if kind == "smp"]
    assert not split.errors and len(frames) == 2
    from firmware.smp import cbor
    assert cbor.decode(frames[0][8:]) == {"r": long_echo}
    assert frames[1][8:] == cbor.encode({})
    assert data.endswith(b"TPM shut down; rebooting\n")


def test_a_damaged_smp_frame_is_dropped_and_said_then_the_resend_is_answered() -> None:
    """MCUmgr SMP serial transport: a frame whose CRC16 does not check is dropped unanswered
    (the client resends after its timeout); the console says so on a line of its own."""
    from firmware.console.loop import EXIT_REBOOT
    from firmware.smp import serial as S
    r, w = os.pipe()
    dev = SmpDevice()
    good = _smp_request(0, 0, {"d": "y" * 300}, 9)
    cont = good.index(b"\n\x04\x14") + 4   # a base64 character of the continuation line
    bad = good[:cont] + (b"B" if good[cont:cont + 1] != b"B" else b"C") + good[cont + 1:]
    os.write(w, bad + good + _smp_request(0, 5, {}, 10))
    out = io.BytesIO()
    rc = serve_select(dev, r, out, lambda: int(time.monotonic() * 1000), max_wait_ms=10, echo=True)
    os.close(r)
    os.close(w)
    assert rc == EXIT_REBOOT
    data = out.getvalue()
    assert b"\nsmp: dropped a damaged frame: CRC16 mismatch (frame 0x" in data
    split = S.Splitter()
    frames = [item for kind, item in split.feed(data) if kind == "smp"]
    assert not split.errors and len(frames) == 2   # the resend's answer and the reset's
