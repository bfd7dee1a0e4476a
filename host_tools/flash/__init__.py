"""Flash a vendor-signed firmware bundle to a phone over its serial console with MCUmgr SMP.

``python -m host_tools.flash --port URL FILE`` (pyserial URLs: /dev/ttyUSB0, socket://host:port,
rfc2217://host:port, a QEMU pty). The protocol is the device's own sans-I/O SMP core
(firmware/smp); stock clients (smpmgr, smpclient, mcumgr) work against the device too.
"""
