# Installing an upload the phone staged (the root broker's side of an SMP upload on the device).
# The phone (uid 1000) cannot write the banks: it receives the upload into a staging file, with
# the same checks (upload.py) as it goes, then asks the broker to install it. The broker reads the
# staged bytes ONCE into memory (what it checks is what it writes, whatever the phone does to the
# file meanwhile) and runs them through the same Upload session into the inactive bank, through
# the same LocalBackend as a directory of banks: signature, board and anti-rollback counter (the
# TPM's floor, read now) before a byte reaches the bank; every component and the announced
# SHA-256 after, read back from the bank. Only then is the bank marked bootable.

from firmware.update.upload import IMG_INVALID_LENGTH, UploadRefused

CHUNK = 64 * 1024


def read_staged(path, length, capacity):
    """The staged file's bytes; UploadRefused unless it holds exactly `length` bytes."""
    if length <= 0 or length > capacity:
        raise UploadRefused(IMG_INVALID_LENGTH, "staged image of %d bytes does not fit the %d-byte "
                            "bank" % (length, capacity))
    # The staging directory is the phone's: never follow a link it planted there (root would read
    # a file for it), and take a regular file only (not a FIFO or device node).
    import os
    import stat
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise UploadRefused(IMG_INVALID_LENGTH, "no staged image: %s" % e.__class__.__name__)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UploadRefused(IMG_INVALID_LENGTH, "no staged image: not a regular file")
        chunks, got = [], 0
        while got < length + 1:
            chunk = os.read(fd, min(CHUNK, length + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) != length:
        raise UploadRefused(IMG_INVALID_LENGTH, "the staged image has %s bytes, %d were announced"
                            % ("more than %d" % length if len(data) > length else len(data), length))
    return data


def install(backend, data, sha, new_upload):
    """Write `data` into the inactive bank through `backend` (firmware.update.local.LocalBackend)
    with the checks of `new_upload(sink, length, sha) -> Upload`; -> the signed manifest."""
    up = new_upload(backend.begin_upload(), len(data), sha)
    off = 0
    while off < len(data):
        off = up.write(off, data[off:off + CHUNK])
    backend.finish_upload(up)
    return up.manifest
