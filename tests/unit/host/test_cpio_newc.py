"""host_tools.cpio_newc: reading back the archives it writes (and the kernel's concatenation)."""

from __future__ import annotations

import stat

import pytest

from host_tools.cpio_newc import CpioArchive, CpioError, read_entries


def test_read_entries_round_trips_concatenated_archives() -> None:
    a = CpioArchive()
    a.add_file("bin/x", b"first", mode=0o755)
    a.add_symlink("bin/sh", "x")
    a.add_chardev("dev/console", 5, 1)
    b = CpioArchive()
    b.add_file("bin/x", b"second")
    raw = a.to_bytes() + b"\0" * 3 + b.to_bytes()
    got = [(e.path, stat.S_IFMT(e.mode), e.data, e.rdev_major, e.rdev_minor)
           for e in read_entries(raw)]
    assert got == [("bin", stat.S_IFDIR, b"", 0, 0), ("bin/sh", stat.S_IFLNK, b"x", 0, 0),
                   ("bin/x", stat.S_IFREG, b"first", 0, 0), ("dev", stat.S_IFDIR, b"", 0, 0),
                   ("dev/console", stat.S_IFCHR, b"", 5, 1),
                   ("bin", stat.S_IFDIR, b"", 0, 0), ("bin/x", stat.S_IFREG, b"second", 0, 0)]


def test_read_entries_names_what_is_wrong() -> None:
    raw = CpioArchive().to_bytes()
    with pytest.raises(CpioError, match="offset 0: no newc header"):
        read_entries(b"070702" + raw[6:])
    a = CpioArchive()
    a.add_file("f", b"0123456789")
    with pytest.raises(CpioError, match="runs past the end"):
        read_entries(a.to_bytes()[:118])
