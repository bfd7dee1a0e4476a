"""Interactive console: the user's terminal <-> the phone's serial line.

The terminal is put in raw mode so keys reach the phone as typed (its tty echoes and edits
lines).  Ctrl-] or Ctrl-C leaves: the phone is powered off cleanly first (TPM2_Shutdown).
"""

from __future__ import annotations

import os
import select
import sys
import termios
import tty
from typing import Callable

import pexpect

from host_tools.console import Console

QUIT_KEYS = (b"\x1d", b"\x03")  # Ctrl-], Ctrl-C


def bridge(con: Console, alive: Callable[[], bool]) -> None:
    """Copy between stdin/stdout and the console until a quit key or the machine stops."""
    fd = sys.stdin.fileno()
    is_tty = os.isatty(fd)
    saved = termios.tcgetattr(fd) if is_tty else None
    out = sys.stdout.buffer
    try:
        if is_tty:
            tty.setraw(fd)
        stdin_open = True
        while alive():
            try:
                text = con.spawn.read_nonblocking(65536, timeout=0.05)
                out.write(text.encode())
                out.flush()
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                return
            if not stdin_open:
                continue
            ready, _, _ = select.select([fd], [], [], 0)
            if ready:
                data = os.read(fd, 1024)
                if not data:
                    stdin_open = False
                    continue
                if any(k in data for k in QUIT_KEYS):
                    return
                con.spawn.send(data.replace(b"\r", b"\n") if is_tty else data)
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
