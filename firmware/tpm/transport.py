# Open a TPM transport from a URI, the one string users pass on command lines (`--tpm URI`):
#   swtpm:HOST:PORT          swtpm's TCP server channel; its control channel is PORT+1 by the
#                            convention tpm2-tools' swtpm TCTI and this repository use
#   swtpm:HOST               port 2321
#   swtpm:///path/to/sock    swtpm's server channel on a unix socket
#   /dev/tpmrm0, device:/dev/tpmrm0   a Linux TPM character device

from firmware.tpm.transport_dev import DeviceTransport
from firmware.tpm.transport_swtpm import SwtpmTransport

DEFAULT_SWTPM_PORT = 2321


def open_uri(uri):
    if uri.startswith("device:"):
        return DeviceTransport(uri[len("device:"):])
    if uri.startswith("/dev/"):
        return DeviceTransport(uri)
    if uri.startswith("swtpm://"):
        path = uri[len("swtpm://"):]
        if not path.startswith("/"):
            raise ValueError("swtpm:// URI needs an absolute socket path: %r" % uri)
        return SwtpmTransport(path=path)
    if uri.startswith("swtpm:"):
        rest = uri[len("swtpm:"):]
        host, sep, port = rest.rpartition(":")
        if not sep:
            host, port = rest, str(DEFAULT_SWTPM_PORT)
        try:
            port_n = int(port)
        except ValueError:
            raise ValueError("bad port in TPM URI %r" % uri)
        if not host or not 0 < port_n < 65535:
            raise ValueError("bad TPM URI %r (want swtpm:HOST:PORT)" % uri)
        return SwtpmTransport(host, port_n)
    raise ValueError("unknown TPM URI %r (use swtpm:HOST:PORT, swtpm:///socket or /dev/tpmrm0)" % uri)
