# The phone's serial console: a prompt and line commands (help, status, pcrs, log, poweroff).
# core.py is sans-I/O (a line in, text out); phone.py reads the device (TPM, logs, state file);
# __main__.py wires both to the serial line.

from firmware.console.core import (  # noqa: F401
    Console, PROMPT, ACTION_NONE, ACTION_POWEROFF, MAX_LINE, frame_blob, parse_frames)
