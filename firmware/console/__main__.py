# python3 -m firmware.console: the phone application's console on its standard input/output (the
# serial line). Exit status EXIT_POWEROFF asks the stage loader (PID 1) to power the device off.
#
# With credentials the TPM released, the SIP phone runs in the same select() loop as the console
# (loop.serve_select); without them it never starts (status says why, `call` is refused).

import os
import sys

from firmware.console.loop import serve, serve_select
from firmware.console.phone import PhoneDevice


def _now_ms():
    import time
    return int(time.monotonic() * 1000)


def main():
    getenv = getattr(os, "getenv", lambda k, d=None: d)
    broker = None
    fd = getenv("PHONE_BROKER_FD")  # the stage loader's TPM broker (firmware/boot/broker.py)
    if fd:
        from firmware.console.tpm_broker import BrokerChannel
        broker = BrokerChannel.from_fd(int(fd))
    device = PhoneDevice(run_dir=getenv("PHONE_RUN_DIR", "/run/phone"),
                         tpm_device=getenv("PHONE_TPM", "/dev/tpmrm0"), broker=broker)
    device.release_credentials()  # before the first prompt: status is final once it shows
    device.prepare_phone(_now_ms())   # the phone itself starts in the loop, after the prompt
    if not hasattr(sys.stdin, "fileno"):
        return serve(device, sys.stdin.buffer, sys.stdout.buffer)
    echo = _share_line(sys.stdin.fileno())
    return serve_select(device, sys.stdin.fileno(), sys.stdout.buffer, _now_ms, echo=echo)


def _share_line(fd):
    """Make the serial tty carry SMP next to the console (docs/flashing.md): no kernel echo (a
    client would read its own request back; the loop echoes text lines itself) and no EOF
    character (SMP continuation lines start with 0x04, the tty's default VEOF: it would end the
    console's input). -> True when the tty was changed (the loop then echoes)."""
    try:
        import termios
        if not os.isatty(fd):
            return False
        attrs = termios.tcgetattr(fd)
        attrs[3] &= ~(termios.ECHO | termios.ECHONL)
        attrs[6][termios.VEOF] = 0  # _POSIX_VDISABLE on Linux
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        return True
    except Exception:  # noqa: BLE001  no termios (MicroPython) or not a tty: leave it as it is
        return False


if __name__ == "__main__":
    sys.exit(main())
