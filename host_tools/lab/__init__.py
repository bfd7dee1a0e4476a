"""labgrid integration for the phone (issue 11 §3): what a lab's HIL run drives.

Importing this package registers with labgrid's target factory (an environment file lists it
under ``imports: [host_tools.lab]``):

* ``QemuPhone`` (resource) + ``QemuPhoneDriver`` (PowerProtocol): an emulated phone, swtpm +
  QEMU + OVMF (Secure Boot, pflash) started by ``host_tools.qemu.device`` (qemu_phone.py);
* ``PhoneConsoleDriver`` (ConsoleProtocol): ``host_tools.console`` (pyserial + pexpect) over a
  labgrid serial resource (``NetworkSerialPort``, ``RawSerialPort``) or QEMU's console
  (console_driver.py);
* ``PhoneStrategy``: off -> firmware -> stage_loader -> prompt, each transition checked by what
  the console prints (strategy.py).
"""

from host_tools.lab.console_driver import PhoneConsoleDriver
from host_tools.lab.qemu_phone import QemuPhone, QemuPhoneDriver
from host_tools.lab.strategy import PhoneStrategy, Status

__all__ = ["PhoneConsoleDriver", "PhoneStrategy", "QemuPhone", "QemuPhoneDriver", "Status"]
