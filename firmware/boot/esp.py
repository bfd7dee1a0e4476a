# The EFI System Partition on the device (root only; CPython I/O): where it is on its disk (the
# GPT entry a boot entry's Hard Drive node names, gpt.py) and its files, mounted vfat read-write
# on a root-only directory for as long as a `with Esp(...)` block runs, unmounted on every path.
#
# /init exports the partition's node as PHONE_ESP_DEV (GPT partition name "esp",
# docs/image-format.md). The kernel needs vfat + fat and the code page / character set the FAT
# driver loads by default (nls_cp437, nls_ascii; board.json platform.modules).

import os

from firmware.boot import gpt
from firmware.boot.partitions import partition_device, read_file, run

ESP_PARTITION = ("esp", "PHONE_ESP_DEV")
MOUNT_DIR = "/run/esp"  # mode 0700: only root reaches the files while mounted
# nosuid,nodev,noexec: nothing on the ESP runs on the device; umask: files root-only too
MOUNT_OPTIONS = "rw,nosuid,nodev,noexec,umask=0077"
SYS_BLOCK = "/sys/class/block"


class EspError(OSError):
    """The ESP is missing, its GPT entry unreadable, or a mount/file step failed."""


def esp_device():
    dev = partition_device(*ESP_PARTITION)
    if dev is None:
        raise EspError("no partition named %r (GPT name)" % ESP_PARTITION[0])
    return dev


def _disk_of(part_dev, sys_block=SYS_BLOCK):
    """(/dev/<disk>, logical block size) of the disk holding partition node `part_dev`:
    sysfs puts a partition's directory inside its disk's."""
    node = part_dev.rsplit("/", 1)[-1]
    real = os.path.realpath("%s/%s" % (sys_block, node))
    disk = os.path.basename(os.path.dirname(real))
    try:
        bs = int(read_file("%s/%s/queue/logical_block_size" % (sys_block, disk)).strip())
    except (OSError, ValueError) as e:
        raise EspError("logical block size of %s: %s" % (disk, e))
    return "/dev/" + disk, bs


def geometry(part_dev=None, name=ESP_PARTITION[0], sys_block=SYS_BLOCK):
    """The ESP's GPT entry, what a Hard Drive device path node holds (UEFI 2.10 §10.3.5.1):
    dict(partition_number, start_lba, size_lba, partition_guid), LBAs in the disk's logical
    blocks; read from the disk's primary GPT (checked: gpt.py)."""
    part_dev = part_dev or esp_device()
    disk, bs = _disk_of(part_dev, sys_block)
    try:
        with open(disk, "rb") as f:
            f.seek(bs)
            hdr = gpt.parse_header(f.read(bs), bs)
            f.seek(hdr["entries_lba"] * bs)
            table = f.read(hdr["count"] * hdr["entry_size"])
        e = gpt.find_entry(gpt.parse_entries(hdr, table), name)
    except (OSError, ValueError) as e:
        raise EspError("GPT of %s: %s" % (disk, e))
    return {"partition_number": e["number"], "start_lba": e["start_lba"],
            "size_lba": e["size_lba"], "partition_guid": e["partition_guid"]}


def _safe(path):
    """A path relative to the ESP's root: no '..', no empty parts."""
    parts = path.replace("\\", "/").strip("/").split("/")
    for p in parts:
        if p in ("", ".", ".."):
            raise EspError("bad ESP path %r" % (path,))
    return "/".join(parts)


class Esp:
    """`with Esp() as esp:` mounts the ESP (vfat, MOUNT_OPTIONS) on MOUNT_DIR; read(),
    write() (atomic), exists(); the block's end unmounts it whatever happened."""

    def __init__(self, device=None, mount_dir=MOUNT_DIR, runner=run):
        self.device = device
        self.mount_dir = mount_dir
        self._run = runner
        self._mounted = False

    def __enter__(self):
        dev = self.device or esp_device()
        os.makedirs(self.mount_dir, mode=0o700, exist_ok=True)
        os.chmod(self.mount_dir, 0o700)
        self._run(["mount", "-t", "vfat", "-o", MOUNT_OPTIONS, dev, self.mount_dir])
        self._mounted = True
        return self

    def __exit__(self, *exc):
        if self._mounted:
            self._mounted = False
            try:
                os.sync()
            except AttributeError:
                pass
            self._run(["umount", self.mount_dir])
        return False

    def path(self, rel):
        return self.mount_dir + "/" + _safe(rel)

    def exists(self, rel):
        return os.path.exists(self.path(rel))

    def read(self, rel):
        return read_file(self.path(rel))

    def write(self, rel, data):
        """Replace file `rel` with `data` so that a power cut leaves the old file or the new
        one: a temporary file in the same directory, fsync, rename over, fsync the directory."""
        write_atomic(self.path(rel), data)


def write_atomic(path, data):
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    tmp = d + "/.tmp-" + os.path.basename(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
