# python3 -m firmware.console: the phone application's console on its standard input/output (the
# serial line). Exit status EXIT_POWEROFF asks the stage loader (PID 1) to power the device off.

import os
import sys

from firmware.console.core import ACTION_POWEROFF, PROMPT, Console
from firmware.console.phone import PhoneDevice

EXIT_POWEROFF = 80


def serve(device, stdin, stdout):
    console = Console(device)
    stdout.write(("\n" + PROMPT).encode())
    stdout.flush()
    while True:
        line = stdin.readline()
        if not line:
            return 0  # end of input: the caller decides (the loader restarts us)
        text, action = console.handle(line)
        stdout.write(text.encode())
        if action == ACTION_POWEROFF:
            stdout.flush()
            return EXIT_POWEROFF
        stdout.write(PROMPT.encode())
        stdout.flush()


def main():
    getenv = getattr(os, "getenv", lambda k, d=None: d)
    device = PhoneDevice(run_dir=getenv("PHONE_RUN_DIR", "/run/phone"),
                         tpm_device=getenv("PHONE_TPM", "/dev/tpmrm0"))
    return serve(device, sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main())
