# The UEFI variables through Linux efivarfs (root only; CPython: os, fcntl). /init mounts it at
# /sys/firmware/efi/efivars (board/*/init.sh). Documentation/filesystems/efivarfs.rst: one file
# per variable, named <Name>-<vendor GUID, lower case>; its contents are the variable's
# attributes (u32, host-endian: little-endian on both boards) followed by its data; a write of
# the same layout sets the variable (one write() call), unlink deletes it.
#
# The kernel marks variables it does not know to be safe to remove immutable (fs/efivarfs:
# efivar_variable_is_removable; Boot####, BootOrder and BootNext are in its list and are not);
# set() and delete() clear the flag (FS_IOC_SETFLAGS, what `chattr -i` does) only when it is set.

import os
import struct

from firmware.boot.efivars import BOOT_VAR_ATTRIBUTES, EFI_GLOBAL_VARIABLE, normalize_guid

EFIVARS_DIR = "/sys/firmware/efi/efivars"
# linux/fs.h: FS_IOC_GETFLAGS = _IOR('f', 1, long), FS_IOC_SETFLAGS = _IOW('f', 2, long) (the
# same numbers on x86_64 and arm64); efivarfs copies an unsigned int (fs/efivarfs/file.c).
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x00000010
ATTR_PREFIX = 4


class EfiVarFs:
    """get/set/delete/names of UEFI variables under `root` (an efivarfs mount); `guid` is the
    default vendor GUID (EFI_GLOBAL_VARIABLE)."""

    def __init__(self, root=EFIVARS_DIR, guid=EFI_GLOBAL_VARIABLE):
        self.root = root
        self.guid = guid

    def _path(self, name, guid):
        if not name or "/" in name or "-" in name:
            raise ValueError("bad variable name %r" % (name,))
        return "%s/%s-%s" % (self.root, name, normalize_guid(guid or self.guid))

    def available(self):
        """None when variables can be read here, else why not."""
        if not os.path.isdir(self.root):
            return "%s is missing (no UEFI runtime services, or efivarfs not mounted)" % self.root
        try:
            os.listdir(self.root)
        except OSError as e:
            return "%s unreadable: %s" % (self.root, e)
        return None

    def get(self, name, guid=None):
        """-> (attributes, data), or None when the variable does not exist."""
        path = self._path(name, guid)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            if e.errno == 2:  # ENOENT
                return None
            raise
        if len(raw) < ATTR_PREFIX:
            raise OSError("%s: %d bytes, shorter than the attribute prefix" % (path, len(raw)))
        return struct.unpack_from("<I", raw, 0)[0], raw[ATTR_PREFIX:]

    def set(self, name, data, attributes=BOOT_VAR_ATTRIBUTES, guid=None):
        path = self._path(name, guid)
        payload = struct.pack("<I", attributes) + bytes(data)
        if os.path.exists(path):
            _clear_immutable(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            n = os.write(fd, payload)
        finally:
            os.close(fd)
        if n != len(payload):
            raise OSError("%s: short write (%d of %d bytes)" % (path, n, len(payload)))

    def delete(self, name, guid=None):
        """Delete the variable; False when it did not exist."""
        path = self._path(name, guid)
        if not os.path.exists(path):
            return False
        _clear_immutable(path)
        os.unlink(path)
        return True

    def names(self, guid=None):
        """The names of the variables of vendor `guid` (default: this store's)."""
        suffix = "-" + normalize_guid(guid or self.guid)
        out = []
        for entry in os.listdir(self.root):
            if entry.lower().endswith(suffix) and len(entry) > len(suffix):
                out.append(entry[:-len(suffix)])
        return sorted(out)


def _clear_immutable(path):
    import fcntl
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(4)
        try:
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
        except OSError as e:
            if e.errno in (22, 25, 95):  # EINVAL, ENOTTY, EOPNOTSUPP: no flags, none set
                return
            raise
        flags = struct.unpack("=I", bytes(buf))[0]
        if flags & FS_IMMUTABLE_FL:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("=I", flags & ~FS_IMMUTABLE_FL))
    finally:
        os.close(fd)
