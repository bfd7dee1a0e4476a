"""host_tools.console against the phone's real console loop (firmware.console.loop.serve) served
on a TCP socket (what QEMU's ``-serial`` socket is) and on a pty (what a board's UART looks like
to the host), with the terminal echo a tty gives."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import tty
from pathlib import Path
from typing import Any, Iterator

import pytest

from firmware.console.loop import serve
from host_tools.console import Console, ConsoleError, ConsoleTimeout, parse_frames

FW_LOG = bytes(range(256)) * 40


class FakePhone:
    """Real data, no TPM: what PhoneDevice returns on a booted phone."""

    def __init__(self) -> None:
        self.shutdowns = 0

    def status(self) -> dict[str, Any]:
        return {"state": "running", "image_version": "0.1.0", "components": [],
                "pcr14": "ab" * 32, "unsealed": False, "registered": False}

    def pcrs(self, bank: str) -> dict[int, bytes]:
        return {i: bytes([i]) * 32 for i in range(24)}

    def firmware_log(self) -> bytes:
        return FW_LOG

    def phone_log(self) -> bytes:
        return b"\x00\x01phone"

    def shutdown_tpm(self) -> None:
        self.shutdowns += 1


class EchoingLines:
    """The line side of a tty in canonical mode with ECHO: what is read is echoed back."""

    def __init__(self, rfile: Any, wfile: Any) -> None:
        self.rfile, self.wfile = rfile, wfile

    def readline(self) -> bytes:
        line: bytes = self.rfile.readline()
        self.wfile.write(line.replace(b"\n", b"\r\n"))
        return line


class CrLfWriter:
    """ONLCR: the tty turns \\n into \\r\\n on output."""

    def __init__(self, wfile: Any) -> None:
        self.wfile = wfile

    def write(self, b: bytes) -> None:
        self.wfile.write(b.replace(b"\n", b"\r\n"))

    def flush(self) -> None:
        self.wfile.flush()


@pytest.fixture
def tcp_phone() -> Iterator[tuple[str, FakePhone, dict[str, int]]]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    phone = FakePhone()
    result: dict[str, int] = {}

    def run() -> None:
        conn, _ = srv.accept()
        with conn, conn.makefile("rb") as r, conn.makefile("wb", buffering=0) as w:
            result["rc"] = serve(phone, EchoingLines(r, w), CrLfWriter(w))  # type: ignore[no-untyped-call]

    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield f"socket://127.0.0.1:{srv.getsockname()[1]}", phone, result
    srv.close()
    t.join(timeout=5)


def test_socket_console_commands(tcp_phone: tuple[str, FakePhone, dict[str, int]]) -> None:
    url, phone, result = tcp_phone
    with Console.open(url) as con:
        assert con.wait_prompt(timeout=10) < 5
        assert con.status()["pcr14"] == "ab" * 32
        pcrs = con.pcrs()
        assert pcrs["sha256"]["23"] == "17" * 32 and len(pcrs["sha256"]) == 24
        logs = con.logs()
        assert logs == {"firmware": FW_LOG, "phone": b"\x00\x01phone"}
        assert con.command("bogus") == "error: unknown command 'bogus' (type help)\n"
        with pytest.raises(ConsoleError, match="status x: error: status takes no arguments"):
            con.json_command("status x")
        assert con.command("") == ""
        assert "TPM shut down; powering off" in con.poweroff(timeout=10)
    assert phone.shutdowns == 1


def test_pty_console_like_a_board_uart(tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)  # the test plays the tty itself (echo, CRLF) like the other test
    phone = FakePhone()

    def run() -> None:
        with os.fdopen(master, "rb", buffering=0) as r, os.fdopen(os.dup(master), "wb",
                                                                  buffering=0) as w:
            serve(phone, EchoingLines(r, w), CrLfWriter(w))  # type: ignore[no-untyped-call]

    # Opening a serial port flushes its input (pyserial): start the phone after opening, as a
    # board that is powered on after the host connected (otherwise wait_prompt pokes it).
    t = threading.Thread(target=run, daemon=True)
    path = os.ttyname(slave)
    try:
        with Console.open(path) as con:
            t.start()
            assert con.wait_prompt(timeout=10) < 2
            assert con.status()["state"] == "running"
            assert con.logs()["firmware"] == FW_LOG
            con.poweroff(timeout=10)
    finally:
        os.close(slave)
        t.join(timeout=5)
    assert phone.shutdowns == 1


def test_no_prompt_times_out_with_last_line() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        time.sleep(0.3)  # pyserial drops input already pending when it opens the socket
        conn.sendall(b"\x1b[2JBdsDxe: loading Boot0001\r\n")
        conn.close()  # the machine died before its prompt

    t = threading.Thread(target=run, daemon=True)
    t.start()
    with Console.open(f"socket://127.0.0.1:{srv.getsockname()[1]}") as con:
        with pytest.raises(ConsoleError) as info:
            con.wait_prompt(timeout=5)
        assert con.last_line() == "BdsDxe: loading Boot0001", (str(info.value), con.text())
    assert "console closed before the prompt" in str(info.value)
    assert "BdsDxe" in str(info.value)
    srv.close()
    t.join(timeout=5)


def test_wait_prompt_timeout_is_typed() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    with Console.open(f"socket://127.0.0.1:{srv.getsockname()[1]}") as con:
        with pytest.raises(ConsoleTimeout, match="no prompt"):
            con.wait_prompt(timeout=1.0)
    srv.close()


def test_parse_frames_checks_size_and_digest() -> None:
    body = "YWJj"
    digest = hashlib.sha256(b"abc").hexdigest()
    ok = f"-----BEGIN X size=3 sha256={digest}-----\r\n{body}\r\n-----END X-----\r\n"
    assert parse_frames(ok) == {"X": b"abc"}
    with pytest.raises(ConsoleError, match="frame X: 3 bytes, header says 4"):
        parse_frames(ok.replace("size=3", "size=4"))
    with pytest.raises(ConsoleError, match="sha256 does not match"):
        parse_frames(ok.replace("YWJj", "YWJk"))
    with pytest.raises(ConsoleError, match="bad base64"):
        parse_frames(ok.replace("YWJj", "YW!j"))
