# The stage loader's console lines: "boot: [uptime] text" on the serial console.

import sys
import time

T0 = time.monotonic()


def say(msg):
    sys.stdout.write("boot: [%5.1f s] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()
