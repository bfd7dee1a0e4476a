# The phone's SMP file management (group 8, MCUmgr SMP spec "File management": file
# download/upload, command 0) for one kind of file: a vendor-signed PCR policy, uploaded to
# /policy/<name>.json (docs/flashing.md "Signed PCR policy"). The phone has no file system to
# offer: the upload is staged in its own tmpfs directory and, once complete, handed to the root
# broker (`policy_install`, firmware/boot/broker_policy.py), which checks it against the sealed
# store and adds it. The upload's answer waits for that: success means the entry is in the store.
#
# Request (spec): {"off", "data", "name", "len" (required with off 0)}; answer {"off"}. Chunks must
# arrive in order (a resent chunk at the last offset is accepted again); off 0 starts over.

from firmware import compat
from firmware.boot.broker import BrokerError

PREFIX = "/policy/"
SUFFIX = ".json"
MAX_FILE = 16 * 1024  # firmware/secrets/policy_entry.py MAX_FILE (the broker checks again)
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

# FS_MGMT_ERR (Zephyr fs_mgmt.h, the SMP spec's file management error codes)
FS_UNKNOWN, FS_INVALID_NAME, FS_WRITE_FAILED, FS_OFFSET_NOT_VALID = 1, 2, 10, 11


class FileRefused(ValueError):
    def __init__(self, rc, reason):
        super().__init__(reason)
        self.rc = rc
        self.reason = reason


def check_name(name):
    stem = name[len(PREFIX):-len(SUFFIX)] if name.startswith(PREFIX) and name.endswith(SUFFIX) else ""
    if not 0 < len(stem) <= 64 or any(c not in NAME_CHARS for c in stem) or stem.startswith("."):
        raise FileRefused(FS_INVALID_NAME, "file %r: this phone takes only %s<version>%s (a signed "
                          "PCR policy)" % (name[:80], PREFIX, SUFFIX))


class PolicyFiles:
    """`sink`() -> a staging file (firmware.update.flash_dir.FileSink); `install(length, sha
    hex)` -> the broker's answer, BrokerError on refusal."""

    def __init__(self, sink, install):
        self.sink = sink
        self.install = install
        self.cur = None  # [name, length, sink, offset]

    def write(self, name, off, data, length):
        """One upload request; -> the offset to answer, and the broker's answer when complete."""
        check_name(name)
        if off == 0:
            if length is None or not 0 < length <= MAX_FILE:
                raise FileRefused(FS_WRITE_FAILED, "policy file length must be 1..%d" % MAX_FILE)
            s = self.sink()
            s.truncate(0)
            self.cur = [name, length, s, 0]
        elif self.cur is None or self.cur[0] != name or off != self.cur[3]:
            raise FileRefused(FS_OFFSET_NOT_VALID, "chunk at offset %d of %s is not the next one"
                              % (off, name))
        name, length, s, got = self.cur
        if got + len(data) > length:
            self.cur = None
            raise FileRefused(FS_WRITE_FAILED, "more data than the announced %d bytes" % length)
        s.write(got, data)
        got += len(data)
        self.cur[3] = got
        if got < length:
            return got, None
        self.cur = None
        raw = s.read(0, length)
        try:
            ans = self.install(length, compat.sha256(raw).hex())
        except BrokerError as e:
            raise FileRefused(FS_UNKNOWN, getattr(e, "reason", None) or str(e))
        return got, ans
