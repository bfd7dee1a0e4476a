# swtpm's socket interface: the "server" channel carries raw TPM 2.0 command and response bytes
# (no mssim-style framing); the "control" channel (by convention on server port + 1) takes
# swtpm ioctl-style commands such as CMD_INIT (power-on). Used by tests and by the host tools.

import socket

from firmware.errors import TransportError

HEADER = 10
MAX_RESPONSE = 8192
CMD_INIT = 0x00000002  # swtpm control channel (swtpm man page "swtpm-ioctls": PTM_INIT)
CMD_SHUTDOWN = 0x00000003


def _recv_exact(sock, n, what):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise TransportError("connection closed while reading %s (%d of %d bytes)" % (what, len(buf), n))
        buf += chunk
    return buf


def _connect(host, port, path, timeout):
    try:
        if path is not None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(path)
        else:
            ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
            s = socket.socket(ai[0], socket.SOCK_STREAM)
            addr = ai[-1]
            s.settimeout(timeout)
            s.connect(addr)
    except OSError as e:
        raise TransportError("cannot connect to swtpm at %s: %s" % (path or "%s:%d" % (host, port), e))
    return s


class SwtpmTransport:
    """Raw TPM commands over one swtpm socket connection (TCP host:port, or a unix socket path)."""

    def __init__(self, host="127.0.0.1", port=2321, path=None, timeout=30.0):
        self.host = host
        self.port = port
        self.path = path
        self.timeout = timeout
        self._sock = None

    def _socket(self):
        if self._sock is None:
            self._sock = _connect(self.host, self.port, self.path, self.timeout)
        return self._sock

    def send(self, command):
        s = self._socket()
        try:
            s.sendall(command)
            head = _recv_exact(s, 6, "response header")
            size = int.from_bytes(head[2:6], "big")
            if size < HEADER or size > MAX_RESPONSE:
                raise TransportError("implausible response size %d" % size)
            return head + _recv_exact(s, size - 6, "response body")
        except OSError as e:
            self.close()
            raise TransportError("swtpm I/O failed: %s" % e)
        except TransportError:
            self.close()
            raise

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def power_on(self):
        """CMD_INIT on the control channel (port + 1): what a platform reset does. Needed when
        swtpm runs without `--flags not-need-init`."""
        if self.path is not None:
            raise TransportError("control channel unknown for a unix-socket swtpm")
        c = _connect(self.host, self.port + 1, None, self.timeout)
        try:
            c.sendall(CMD_INIT.to_bytes(4, "big") + (0).to_bytes(4, "big"))
            res = int.from_bytes(_recv_exact(c, 4, "control result"), "big")
        finally:
            c.close()
        if res != 0:
            raise TransportError("swtpm CMD_INIT failed with 0x%x" % res)
