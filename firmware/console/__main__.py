# python3 -m firmware.console: the phone application's console on its standard input/output (the
# serial line). Exit status EXIT_POWEROFF asks the stage loader (PID 1) to power the device off.

import os
import sys

from firmware.console.loop import serve
from firmware.console.phone import PhoneDevice


def main():
    getenv = getattr(os, "getenv", lambda k, d=None: d)
    device = PhoneDevice(run_dir=getenv("PHONE_RUN_DIR", "/run/phone"),
                         tpm_device=getenv("PHONE_TPM", "/dev/tpmrm0"))
    device.release_credentials()  # before the first prompt: status is final once it shows
    return serve(device, sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main())
