"""labgrid brings ``pyserial-labgrid``, a fork that installs the same ``serial`` package as
pyserial 3.5 over it (host_tools/requirements.txt). Both of its users still work on a real pty:
smpclient's SMP serial transport (frames both ways, checked with the ``smp`` package's own
codec) and host_tools.console (prompt, command, answer)."""

from __future__ import annotations

import asyncio
import os
import threading
import tty

import serial
from smp import packet
from smpclient.transport.serial import SMPSerialTransport

from host_tools.console import PROMPT, Console, open_port

# an SMP header (Image state read, group 1, id 0: read, seq 7) with an empty CBOR map
REQUEST = bytes([0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x07, 0x00, 0xA0])
RESPONSE = bytes([0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x07, 0x00, 0xA0])


def _pty() -> tuple[int, int, str]:
    """A raw pty pair; the slave stays open here too (reading the master of a pty whose slave
    nobody holds is EIO, and the client opens it by name a moment later)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def _read_frame(fd: int) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        buf += os.read(fd, 4096)
    return buf


def test_installed_serial_is_the_labgrid_fork_with_pyserial_api() -> None:
    assert serial.__version__.startswith("3.5")
    for name in ("Serial", "serial_for_url", "SerialException", "SerialBase"):
        assert hasattr(serial, name), name


def test_smpclient_frames_both_ways_on_a_pty() -> None:
    master, slave, name = _pty()
    try:
        async def run() -> bytes:
            t = SMPSerialTransport()
            await t.connect(name, 5.0)
            try:
                await t.send(REQUEST)
                frame = await asyncio.get_running_loop().run_in_executor(None, _read_frame, master)
                decoder = packet.decode()
                next(decoder)
                try:
                    decoder.send(frame)
                    raise AssertionError(f"frame not complete: {frame!r}")
                except StopIteration as done:
                    assert done.value == REQUEST
                for chunk in packet.encode(RESPONSE):
                    os.write(master, chunk)
                return await asyncio.wait_for(t.receive(), 10)
            finally:
                await t.disconnect()

        assert asyncio.run(run()) == RESPONSE
    finally:
        os.close(master)
        os.close(slave)


def test_console_command_on_a_pty() -> None:
    master, slave, name = _pty()

    def phone() -> None:
        # answers line by line (pyserial flushes what arrived before it opened the port, so the
        # phone speaks only when spoken to): an empty line gets a prompt, "ping" gets "pong"
        buf = b""
        while b"ping\n" not in buf:
            chunk = os.read(master, 1024)
            buf += chunk
            if chunk.endswith(b"\n") and b"ping" not in chunk:
                os.write(master, b"\r\n" + PROMPT.encode())
        os.write(master, b"ping\r\npong\r\n" + PROMPT.encode())

    th = threading.Thread(target=phone)
    th.start()
    try:
        with Console(open_port(name)) as con:
            con.spawn.sendline("")
            con.wait_prompt(timeout=10, poke=False)
            assert con.command("ping", timeout=10) == "pong\n"
    finally:
        th.join(10)
        os.close(master)
        os.close(slave)
