"""QEMU + swtpm runner for emulated phones (board qemu-x86_64).

    python -m host_tools.qemu --device NAME [--exec CMD ...] [--console stdio|pty|tcp] [--kvm]

Python API (system tests boot one device and reuse it)::

    from host_tools.qemu import Device
    with Device("ci").boot() as console:
        console.status()
"""

from host_tools.qemu.device import Device, DeviceConfig, DeviceError

__all__ = ["Device", "DeviceConfig", "DeviceError"]
