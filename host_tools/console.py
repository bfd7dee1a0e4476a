"""Host-side driver for the phone's serial console (pyserial + pexpect).

Layers, bottom up (labgrid's split):

* a *port*: any pyserial object.  ``open_port(target)`` opens QEMU's TCP console
  (``socket://127.0.0.1:PORT``), a pty path (``/dev/pts/N``) or a board's ``/dev/ttyUSB0`` the
  same way, so every tool and test above this works on QEMU and on hardware alike;
* ``SerialSpawn``: a pexpect spawn over that port (expect/send on a serial line);
* ``Console``: the phone's protocol: wait for the prompt, send one command line, read its
  answer up to the next prompt; helpers that decode ``status``/``pcrs`` JSON and the framed
  base64 logs of ``log`` (size and SHA-256 checked).

    with Console.open("socket://127.0.0.1:4555") as con:
        con.wait_prompt(timeout=120)
        print(con.status()["state"])
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import select
import termios
import time
from types import TracebackType
from typing import Any, Callable

import pexpect
import pexpect.spawnbase
import serial

PROMPT = "phone> "
BAUDRATE = 115200
POKE_INTERVAL = 3.0  # seconds between empty lines sent while waiting for a prompt
_FRAME_RE = re.compile(r"-----BEGIN (\S+) size=(\d+) sha256=([0-9a-f]{64})-----\n(.*?)"
                       r"-----END \1-----", re.S)
_ANSI_RE = re.compile(r"\x1b(\[[0-9;=?]*[A-Za-z]|.)")
LOG_FRAMES = {"firmware": "FIRMWARE-LOG", "phone": "PHONE-LOG"}


class ConsoleError(RuntimeError):
    """The console answered something unexpected, or the line closed."""


class ConsoleTimeout(ConsoleError):
    """No prompt (or no answer) within the time allowed."""


def open_port(target: str, timeout: float = 1.0) -> serial.SerialBase:
    """A pyserial port for *target*: a pyserial URL (``socket://host:port``, ``rfc2217://...``)
    or a device path (``/dev/ttyUSB0``, a pty's ``/dev/pts/N``).  pyserial discards input that
    is pending when the port opens; ``Console.wait_prompt`` pokes the line for a fresh prompt."""
    if "://" in target:
        port: serial.SerialBase = serial.serial_for_url(target, timeout=timeout)
    else:
        port = serial.Serial(target, BAUDRATE, timeout=timeout)
    return port


class SerialSpawn(pexpect.spawnbase.SpawnBase):  # type: ignore[misc]  # pexpect is untyped
    """pexpect over a pyserial port: read whatever arrived (at least one byte or a timeout)."""

    def __init__(self, port: serial.SerialBase, timeout: float = 30.0,
                 on_text: Callable[[str], None] | None = None) -> None:
        super().__init__(timeout=timeout, maxread=65536, encoding="utf-8",
                         codec_errors="replace")
        self.port = port
        self.port.timeout = 0  # non-blocking reads; waiting is done with select()
        self.name = f"<serial {port.port}>"
        self.on_text = on_text
        self.closed = False

    def read_nonblocking(self, size: int = 1, timeout: float | None = -1) -> str:
        if timeout == -1:
            timeout = self.timeout
        try:
            # Wait with select() on the port's descriptor, then take whatever arrived: pyserial's
            # in_waiting on socket:// only says "something", so a blocking read(size) would
            # wait for all *size* bytes.
            ready, _, _ = select.select([self.port.fileno()], [], [], timeout)
            data: bytes = self.port.read(size) if ready else b""
        except (serial.SerialException, OSError, termios.error) as e:
            self.flag_eof = True
            raise pexpect.EOF(f"serial line closed: {e}") from None
        if not data:
            raise pexpect.TIMEOUT("no data")
        text: str = self._decoder.decode(data, final=False)
        self._log(text, "read")
        if self.on_text is not None:
            self.on_text(text)
        return text

    def send(self, s: str | bytes) -> int:
        b = s.encode() if isinstance(s, str) else s
        self._log(b.decode(errors="replace"), "send")
        try:
            n: int | None = self.port.write(b)
        except (serial.SerialException, OSError) as e:
            self.flag_eof = True
            raise pexpect.EOF(f"serial line closed: {e}") from None
        # No flush(): on a tty it is tcdrain(), which waits for the far end to read and hangs
        # when nobody does (a pty whose QEMU side paused); the kernel has the bytes already.
        return n if n is not None else len(b)

    def sendline(self, s: str = "") -> int:
        return self.send(s + "\n")

    def close(self) -> None:
        if not self.closed:
            self.port.close()
            self.closed = True

    def isalive(self) -> bool:
        return not self.closed and not self.flag_eof


class Console:
    """The phone's console protocol over a serial line (QEMU socket/pty or a board's UART)."""

    def __init__(self, port: serial.SerialBase,
                 on_text: Callable[[str], None] | None = None) -> None:
        self.transcript: list[str] = []

        def record(text: str) -> None:
            self.transcript.append(text)
            if on_text is not None:
                on_text(text)

        self.spawn = SerialSpawn(port, on_text=record)
        self.prompt_seen = False  # the phone answered at least once: poweroff can work

    @classmethod
    def open(cls, target: str, on_text: Callable[[str], None] | None = None) -> "Console":
        return cls(open_port(target), on_text)

    # --- reading ---------------------------------------------------------------------------

    def text(self) -> str:
        """Everything received so far."""
        return "".join(self.transcript)

    def last_line(self) -> str:
        """The last non-empty console line received so far (for progress displays)."""
        return last_line("".join(self.transcript[-50:]))

    def wait_prompt(self, timeout: float = 180.0,
                    alive: Callable[[], None] | None = None,
                    tick: Callable[[], None] | None = None, poke: bool = True) -> float:
        """Wait until the prompt shows; returns the seconds waited.  With *poke*, sends an empty
        line every few seconds (a console opened after the prompt was printed still sees one;
        a driver attached from power-on does not need it, and each poke typed during boot
        becomes one more prompt later).  *alive* is called every second and may raise (e.g.
        when QEMU died); *tick* likewise, for progress displays."""
        t0 = time.monotonic()
        last_poke = t0
        while True:
            now = time.monotonic()
            if now - t0 > timeout:
                raise ConsoleTimeout(f"no prompt {PROMPT!r} after {timeout:.0f} s; last line: "
                                     f"{self.last_line()!r}")
            try:
                self.spawn.expect_exact(PROMPT, timeout=1.0)
                self.prompt_seen = True
                return time.monotonic() - t0
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF as e:
                if alive is not None:
                    alive()
                raise ConsoleError(f"console closed before the prompt: {e}; last line: "
                                   f"{self.last_line()!r}") from None
            if alive is not None:
                alive()
            if tick is not None:
                tick()
            if poke and time.monotonic() - last_poke > POKE_INTERVAL:
                try:
                    self.spawn.sendline("")
                except pexpect.EOF as e:
                    raise ConsoleError(f"console closed before the prompt: {e}") from None
                last_poke = time.monotonic()

    def command(self, line: str, timeout: float = 60.0) -> str:
        """Send one command line; return its answer (text up to the next prompt, without the
        echoed command line, newlines as ``\\n``)."""
        if "\n" in line or "\r" in line:
            raise ValueError("a console command is one line")
        self._drain()
        try:
            self.spawn.sendline(line)
            deadline = time.monotonic() + timeout
            while True:
                self.spawn.expect_exact(PROMPT, timeout=max(0.0, deadline - time.monotonic()))
                # A prompt with nothing before it is a stray one, not this command's: the answer
                # to a poke typed while the phone was booting that reached us after _drain (the
                # phone reads the pokes together and prompts once per line; seen under TCG load
                # as status answering ''). The phone echoes every command line
                # (firmware/console/loop.py), so a real answer never comes with nothing before it.
                if not line or str(self.spawn.before).strip():
                    break
        except pexpect.TIMEOUT:
            raise ConsoleTimeout(f"no answer to {line!r} within {timeout:.0f} s; got "
                                 f"{str(self.spawn.before)[-300:]!r}") from None
        except pexpect.EOF:
            raise ConsoleError(f"console closed while running {line!r}; got "
                               f"{str(self.spawn.before)[-300:]!r}") from None
        return _strip_echo(drop_notices(str(self.spawn.before)), line)

    def notices(self) -> list[str]:
        """The phone's "notice: ..." lines received so far (e.g. the remote party's integrity
        level at call set-up), without the prefix, in order."""
        text = self.text().replace("\r\n", "\n").replace("\r", "\n")
        out = []
        for ln in text.split("\n"):
            while ln.startswith(PROMPT):   # printed between answers: it may follow a prompt
                ln = ln[len(PROMPT):]
            if ln.startswith(NOTICE):
                out.append(ln[len(NOTICE):])
        return out

    def _drain(self) -> None:
        """Drop what arrived before the command (extra prompts from pokes, kernel messages)."""
        while True:
            try:
                self.spawn.read_nonblocking(65536, timeout=0.05)
            except pexpect.TIMEOUT:
                return
            except pexpect.EOF:
                return

    # --- typed helpers --------------------------------------------------------------------

    def json_command(self, line: str, timeout: float = 60.0) -> Any:
        answer = self.command(line, timeout).strip()
        if answer.startswith("error:"):
            raise ConsoleError(f"{line}: {answer}")
        try:
            return json.loads(answer)
        except ValueError:
            raise ConsoleError(f"{line}: answer is not one JSON object: {answer[:300]!r}") \
                from None

    def status(self) -> dict[str, Any]:
        obj = self.json_command("status")
        if not isinstance(obj, dict):
            raise ConsoleError(f"status: not a JSON object: {obj!r}")
        return obj

    def wait_status(self, cond: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60.0,
                    every: float = 0.5) -> dict[str, Any]:
        """The first ``status`` for which *cond* holds, asked every *every* seconds; ConsoleTimeout
        naming *what* and the last status after *timeout* seconds."""
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = self.status()
            if cond(st):
                return st
            time.sleep(every)
        raise ConsoleTimeout(f"{what} not reached in {timeout:.0f} s; last status {json.dumps(st)}")

    def pcrs(self, bank: str = "sha256") -> dict[str, dict[str, str]]:
        """``{"sha256": {"0": hex, ...}}``: the format ``host_tools.verify --pcrs`` reads."""
        obj = self.json_command(f"pcrs {bank}")
        if not isinstance(obj, dict) or not isinstance(obj.get(bank), dict):
            raise ConsoleError(f"pcrs: unexpected answer {obj!r}")
        return obj

    def logs(self, timeout: float = 120.0) -> dict[str, bytes]:
        """``{"firmware": bytes, "phone": bytes}`` from the ``log`` command, checked against the
        size and SHA-256 in each frame header."""
        answer = self.command("log", timeout)
        frames = parse_frames(answer)
        out: dict[str, bytes] = {}
        for key, name in LOG_FRAMES.items():
            if name not in frames:
                raise ConsoleError(f"log: no {name} frame in the answer: {answer[:300]!r}")
            out[key] = frames[name]
        return out

    def poweroff(self, timeout: float = 30.0) -> str:
        """Ask the phone to shut its TPM down and power off; returns its last words.  The line
        closes (QEMU exits) or goes quiet; both count as done."""
        self._drain()
        try:
            self.spawn.sendline("poweroff")
        except pexpect.EOF:
            return ""  # already gone
        try:
            self.spawn.expect(["powering off", pexpect.EOF], timeout=timeout)
        except pexpect.TIMEOUT:
            raise ConsoleTimeout(f"poweroff not acknowledged within {timeout:.0f} s") from None
        return _strip_echo(str(self.spawn.before) + str(self.spawn.after), "poweroff")

    def close(self) -> None:
        self.spawn.close()

    def __enter__(self) -> "Console":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def last_line(text: str) -> str:
    """The last non-empty line of console output, without terminal escapes and controls."""
    tail = _ANSI_RE.sub("", text).replace("\r", "\n")
    for line in reversed(tail.split("\n")):
        line = "".join(ch for ch in line if ch >= " ").strip()
        if line:
            return line
    return ""


NOTICE = "notice: "   # firmware/console/loop.py: lines the phone prints between answers


# firmware/boot/log.py: the stage loader (root, the TPM broker) prints "boot: [  3.5 s] ..." on the
# same console at any moment, e.g. a broker request it refused while the phone answers `status`.
_LOADER_LINE = re.compile(r"boot: \[\s*\d+\.\d s\] ")


def drop_notices(text: str) -> str:
    """*text* without the phone's notice lines and the stage loader's log lines (either may
    arrive while an answer is read; neither is part of it)."""
    text = text.replace("\r\n", "\n").replace("\r", "")
    return "".join(ln for ln in text.splitlines(keepends=True)
                   if not ln.startswith(NOTICE) and not _LOADER_LINE.match(ln))


def _strip_echo(text: str, line: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "")
    first, sep, rest = text.partition("\n")
    if first.strip() == line.strip():
        return rest
    return text


def parse_frames(text: str) -> dict[str, bytes]:
    """Framed base64 blobs in *text* (see firmware/console/core.py): {NAME: bytes}.  Raises
    ConsoleError naming the frame when the size or SHA-256 does not match its header."""
    text = text.replace("\r\n", "\n").replace("\r", "")
    out: dict[str, bytes] = {}
    for m in _FRAME_RE.finditer(text):
        name, size, digest, body = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        try:
            data = base64.b64decode("".join(body.split()), validate=True)
        except ValueError:
            raise ConsoleError(f"frame {name}: bad base64") from None
        if len(data) != size:
            raise ConsoleError(f"frame {name}: {len(data)} bytes, header says {size}")
        if hashlib.sha256(data).hexdigest() != digest:
            raise ConsoleError(f"frame {name}: sha256 does not match its header")
        out[name] = data
    return out
