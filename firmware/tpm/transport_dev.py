# Linux TPM character device (/dev/tpmrm0 with the kernel's resource manager, or /dev/tpm0):
# write one whole command, read one whole response (the driver delivers it in one read).

from firmware.errors import TransportError

MAX_RESPONSE = 4096  # TPM_BUFSIZE of the Linux TPM driver


class DeviceTransport:
    def __init__(self, path="/dev/tpmrm0"):
        self.path = path
        self._f = None

    def _file(self):
        if self._f is None:
            try:
                try:
                    self._f = open(self.path, "r+b", buffering=0)
                except TypeError:  # MicroPython's open() has no buffering argument
                    self._f = open(self.path, "r+b")
            except OSError as e:
                raise TransportError("cannot open %s: %s" % (self.path, e))
        return self._f

    def send(self, command):
        f = self._file()
        try:
            n = f.write(command)
            if n is not None and n != len(command):
                raise TransportError("short write to %s: %d of %d bytes" % (self.path, n, len(command)))
            rsp = f.read(MAX_RESPONSE)
        except OSError as e:
            self.close()
            raise TransportError("%s I/O failed: %s" % (self.path, e))
        if not rsp:
            raise TransportError("empty response from %s" % self.path)
        return rsp

    def close(self):
        if self._f is not None:
            try:
                self._f.close()
            finally:
                self._f = None
