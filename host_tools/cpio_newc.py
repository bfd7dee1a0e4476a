"""Deterministic cpio "newc" archives (the Linux initramfs format), no root needed.

Entries are written sorted by path, parents first, with fixed mtime, uid/gid 0
and sequential inode numbers, so the same inputs always give the same bytes.
Device nodes (e.g. ``/dev/console``) can be described without mknod.

    arc = CpioArchive()
    arc.add_file("bin/busybox", Path("/bin/busybox").read_bytes(), mode=0o755)
    arc.add_symlink("bin/sh", "busybox")
    arc.add_chardev("dev/console", 5, 1, mode=0o600)
    data = arc.to_gzip()
"""

from __future__ import annotations

import dataclasses
import gzip
import stat

_MAGIC = b"070701"


@dataclasses.dataclass(frozen=True)
class Entry:
    path: str  # relative, no leading "/"
    mode: int  # full st_mode (type bits + permissions)
    data: bytes = b""
    rdev_major: int = 0
    rdev_minor: int = 0


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(ino: int, mode: int, nlink: int, mtime: int, size: int, rmaj: int, rmin: int,
            namesize: int) -> bytes:
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, rmaj, rmin, namesize, 0)
    return _MAGIC + b"".join(b"%08X" % f for f in fields)


class CpioArchive:
    """An in-memory newc archive under construction."""

    def __init__(self, mtime: int = 0) -> None:
        self.mtime = mtime
        self._entries: dict[str, Entry] = {}

    def _add(self, entry: Entry) -> None:
        path = entry.path.strip("/")
        if not path or ".." in path.split("/"):
            raise ValueError(f"bad archive path {entry.path!r}")
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in self._entries:
                self._entries[parent] = Entry(parent, stat.S_IFDIR | 0o755)
        self._entries[path] = dataclasses.replace(entry, path=path)

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        self._add(Entry(path, stat.S_IFDIR | mode))

    def add_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._add(Entry(path, stat.S_IFREG | mode, data))

    def add_symlink(self, path: str, target: str) -> None:
        self._add(Entry(path, stat.S_IFLNK | 0o777, target.encode()))

    def add_chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._add(Entry(path, stat.S_IFCHR | mode, b"", major, minor))

    def paths(self) -> list[str]:
        return sorted(self._entries)

    def to_bytes(self) -> bytes:
        out = bytearray()
        for ino, path in enumerate(sorted(self._entries), start=1):
            e = self._entries[path]
            name = path.encode() + b"\0"
            nlink = 2 if stat.S_ISDIR(e.mode) else 1
            out += _header(ino, e.mode, nlink, self.mtime, len(e.data), e.rdev_major,
                           e.rdev_minor, len(name))
            out += name + _pad4(110 + len(name))
            out += e.data + _pad4(len(e.data))
        name = b"TRAILER!!!\0"
        out += _header(0, 0, 1, 0, 0, 0, 0, len(name)) + name + _pad4(110 + len(name))
        return bytes(out)

    def to_gzip(self, level: int = 9) -> bytes:
        """gzip with mtime 0 and no file name: byte-for-byte reproducible."""
        return gzip.compress(self.to_bytes(), compresslevel=level, mtime=0)


class CpioError(ValueError):
    """A newc archive is malformed (the message names the offset and what is wrong)."""


def read_entries(data: bytes) -> list[Entry]:
    """The entries of one or more concatenated newc archives (each ending with TRAILER!!!, as
    the kernel reads an initramfs: zero padding between archives is skipped), in order; a later
    entry for the same path is listed again, as the kernel would overwrite it."""
    out: list[Entry] = []
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # padding between concatenated archives
            pos += 1
            continue
        head = data[pos:pos + 110]
        if len(head) < 110 or head[:6] != _MAGIC:
            raise CpioError(f"offset {pos}: no newc header (magic {head[:6]!r})")
        try:
            f = [int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise CpioError(f"offset {pos}: header fields are not hexadecimal") from None
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        name_end = pos + 110 + namesize
        body = name_end + (-(110 + namesize) % 4)
        if namesize < 1 or body + size > len(data):
            raise CpioError(f"offset {pos}: entry runs past the end of the archive")
        name = data[pos + 110:name_end - 1].decode("utf-8", "replace")
        pos = body + size + (-size % 4)
        if name == "TRAILER!!!":
            continue
        out.append(Entry(name, mode, data[body:body + size], rmaj, rmin))
    return out
