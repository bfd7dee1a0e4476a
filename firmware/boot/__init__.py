# The stage loader (runs in the initramfs as PID 1): read the signed phone bundle from the firmware
# partition, measure every component it holds into PCR 14 (one event each in the phone's log, then
# a separator), verify the bundle's signature and contents, and start the phone application as an
# unprivileged user only when everything verified.
#
# ustar.py, manifest.py and stage.py are sans-I/O (MicroPython-compatible); __main__.py does the I/O.
