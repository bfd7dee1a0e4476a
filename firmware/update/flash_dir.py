# The slots' flash on a directory (the device's data partition, or a test's temp dir): one file per
# bank and the record in slots.json, replaced atomically (write a temporary file, fsync, rename).

import os


class FileSink:
    def __init__(self, path):
        self.path = path

    def write(self, off, data):
        mode = "r+b" if _exists(self.path) else "wb"
        with open(self.path, mode) as f:
            f.seek(off)
            f.write(data)

    def read(self, off, n):
        with open(self.path, "rb") as f:
            f.seek(off)
            return f.read(n)

    def truncate(self, n):
        with open(self.path, "wb" if n == 0 else "r+b") as f:
            if n:
                f.truncate(n)


class DirFlash:
    def __init__(self, root, capacity):
        self.root = root
        self.capacity = capacity

    def _path(self, name):
        return self.root + "/" + name

    def sink(self, bank):
        return FileSink(self._path("bank-%s.bundle" % bank))

    def read_bundle(self, bank):
        p = self._path("bank-%s.bundle" % bank)
        if not _exists(p):
            return b""
        with open(p, "rb") as f:
            return f.read()

    def load_state(self):
        p = self._path("slots.json")
        if not _exists(p):
            return None
        with open(p, "rb") as f:
            return f.read()

    def save_state(self, data):
        tmp = self._path("slots.json.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if hasattr(os, "fsync"):
                os.fsync(f.fileno())
        os.rename(tmp, self._path("slots.json"))


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False
