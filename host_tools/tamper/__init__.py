"""Tamper with an emulated phone's flash to show the measured boot catching it.

    python -m host_tools.tamper --device NAME --component phone-app [--resign no]

Operates only on ``build/devices/NAME/disk.img`` (the device's own copy of the image), never on
``build/<board>/``.  The bundle operations are sans-I/O (``bundle_ops``); ``flash`` finds the
partitions by GPT name and writes them back; ``uki_edit`` changes the UKI on the ESP via mtools.
See docs/tamper.md for the walk-through.
"""

from host_tools.tamper.bundle_ops import Bundle, TamperError

__all__ = ["Bundle", "TamperError"]
