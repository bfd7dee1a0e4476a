# One upload of a firmware bundle into the inactive slot, sans-I/O but for the `sink` it writes to.
#
# The bundle (docs/image-format.md) starts with manifest.json and manifest.sig, so the vendor
# signature, the board and the anti-rollback counter are checked on the first few kilobytes,
# before a single byte reaches the slot: until then the bytes stay in a bounded buffer. After the
# last byte the session reads back what was written and checks all of it again (every component's
# size and SHA-256 against the signed manifest; firmware.boot.stage.check_bundle), and the whole
# file's SHA-256 against the `sha` the client announced. Only then is the slot marked bootable
# (slots.py); until then it is "being written" and never booted: nothing is half-installed.
#
# Offsets follow MCUmgr's image upload (SMP image management, command 1): each chunk carries
# `off`; the answer is the next offset wanted. A chunk at another offset than the one expected is
# answered with the expected offset (the client resends from there); a new upload whose `len` and
# `sha` equal the interrupted one's resumes where it stopped.
#
# A UKI package (firmware/update/uki_package.py UkiUpload) is uploaded by the same session: it
# overrides the member names and the two checks (_check_signed on the prefix, _check_written at
# the end); signed_prefix() finds the leading manifest and signature for both.

from firmware import compat
from firmware.boot import manifest as manifest_mod
from firmware.boot import stage, ustar
from firmware.errors import ParseError

# MCUmgr image-management error codes (IMG_MGMT_ERR, Zephyr img_mgmt.h) the session uses.
IMG_UNKNOWN = 1
IMG_NO_FREE_SLOT = 9
IMG_FLASH_WRITE_FAILED = 12
IMG_INVALID_OFFSET = 20
IMG_INVALID_LENGTH = 21
IMG_INVALID_IMAGE_HEADER = 22
IMG_INVALID_HASH = 24
IMG_CURRENT_VERSION_IS_NEWER = 27
IMG_INVALID_IMAGE_TOO_LARGE = 30
IMG_INVALID_IMAGE_DATA_OVERRUN = 31

MAX_PREFIX = manifest_mod.MAX_MANIFEST + 3 * ustar.BLOCK + 1024  # manifest + signature + headers


def leading_member(buf, off, want):
    """(start, size, next) once the member named `want` at `off` is complete in `buf`, None while
    more bytes are needed; ParseError when another member (or the end) is there, or it is larger
    than a manifest may be."""
    head = ustar.header_at(buf, off) if len(buf) >= off + ustar.BLOCK else None
    if head is None:
        if len(buf) >= off + ustar.BLOCK:
            raise ParseError("archive ends before %s" % want, offset=off, field="name")
        return None
    name, size = head
    if name != want:
        raise ParseError("member %r where %s must be" % (name, want), offset=off, field="name")
    start = off + ustar.BLOCK
    if size > manifest_mod.MAX_MANIFEST:
        raise ParseError("%s of %d bytes" % (want, size), offset=off, field="size")
    if len(buf) < start + size:
        return None
    return start, size, start + (size + ustar.BLOCK - 1) // ustar.BLOCK * ustar.BLOCK


def signed_prefix(buf, manifest_name, signature_name):
    """(manifest bytes, signature bytes) once the archive's first two members, named
    `manifest_name` and `signature_name`, are complete in `buf`; None while more bytes are
    needed; ParseError when the archive does not start with them."""
    man = leading_member(buf, 0, manifest_name)
    if man is None:
        return None
    sig = leading_member(buf, man[2], signature_name)
    if sig is None:
        return None
    return buf[man[0]:man[0] + man[1]], buf[sig[0]:sig[0] + sig[1]]


class UploadRefused(Exception):
    """The device will not take this image. `rc` is the IMG_MGMT_ERR code for the SMP answer;
    the message is the one line the console and `status` show (never any image bytes)."""

    def __init__(self, rc, reason):
        super().__init__(reason)
        self.rc = rc
        self.reason = reason


class Upload:
    """`verify_signature(manifest, sig) -> bool`, `board`, `floor` (anti-rollback counter floor,
    None when unreadable: refused), `capacity` (slot size), `pcr` (the board's component register,
    firmware/pcr_registry.py). `sink` has write(off, data) and read(off, n) and truncate(n)."""

    def __init__(self, sink, length, sha, verify_signature, board, floor, capacity,
                 pcr=stage.PHONE_PCR):
        if length <= 0:
            raise UploadRefused(IMG_INVALID_LENGTH, "image length %d" % length)
        if length > capacity:
            raise UploadRefused(IMG_INVALID_IMAGE_TOO_LARGE,
                                "image of %d bytes does not fit the %d-byte slot" % (length, capacity))
        if sha is not None and len(sha) not in (32,):
            raise UploadRefused(IMG_INVALID_HASH, "sha of %d bytes is not a SHA-256" % len(sha))
        self.sink = sink
        self.length = length
        self.sha = sha
        self.verify_signature = verify_signature
        self.board = board
        self.floor = floor
        self.pcr = pcr
        self.offset = 0
        self.manifest = None     # the signed manifest once checked
        self._prefix = bytearray()
        self._hash = compat.new_hash("sha256")
        self.done = False

    def same(self, length, sha):
        """Whether a new first chunk (off 0) continues this upload (MCUmgr resume)."""
        return (not self.done and sha is not None and self.sha is not None
                and length == self.length and compat.constant_time_equal(sha, self.sha))

    def write(self, off, data):
        """Take one chunk; the next offset wanted. Raises UploadRefused."""
        if self.done:
            raise UploadRefused(IMG_INVALID_OFFSET, "upload already complete")
        if off != self.offset:
            return self.offset
        if off + len(data) > self.length:
            raise UploadRefused(IMG_INVALID_IMAGE_DATA_OVERRUN,
                                "chunk at %d of %d bytes runs past the announced length %d"
                                % (off, len(data), self.length))
        self._hash.update(data)
        if self.manifest is None:
            self._prefix += data
            self.offset += len(data)
            self._check_prefix()
        else:
            self._put(off, data)
            self.offset += len(data)
        if self.offset == self.length:
            if self.manifest is None:
                raise UploadRefused(IMG_INVALID_IMAGE_HEADER,
                                    "image ended before its manifest and signature")
            self._finish()
        return self.offset

    def _put(self, off, data):
        try:
            self.sink.write(off, data)
        except OSError as e:
            raise UploadRefused(IMG_FLASH_WRITE_FAILED, "writing the slot failed: %s" % e)

    # What the session checks; a session for another signed format (firmware/update/
    # uki_package.py UkiUpload) overrides these.
    WHAT = "bundle"
    MANIFEST_NAME = stage.MANIFEST_NAME
    SIGNATURE_NAME = stage.SIGNATURE_NAME

    def _check_signed(self, man_bytes, sig_bytes):
        """(manifest, None) when the leading manifest and signature pass, else (None, reason)."""
        manifest = err = None
        try:
            manifest = manifest_mod.parse(man_bytes)
        except ParseError as e:
            err = e
        floor_error = None if self.floor is not None else "the TPM did not give the floor"
        reason = stage.check_manifest(man_bytes, sig_bytes, manifest, err, self.verify_signature,
                                      self.board, self.floor or 0, floor_error)
        return (None, reason) if reason is not None else (manifest, None)

    def _check_written(self, written):
        """None when the bytes read back from the sink are an image this device may take."""
        return stage.check_bundle(written, self.verify_signature, self.board, self.floor or 0,
                                  self.pcr)

    def _check_prefix(self):
        buf = bytes(self._prefix)
        try:
            found = signed_prefix(buf, self.MANIFEST_NAME, self.SIGNATURE_NAME)
        except ParseError as e:
            raise UploadRefused(IMG_INVALID_IMAGE_HEADER, "not a %s: %s" % (self.WHAT, e))
        if found is None:
            return self._bound(buf)
        manifest, reason = self._check_signed(found[0], found[1])
        if reason is not None:
            rc = IMG_CURRENT_VERSION_IS_NEWER if reason.startswith("anti-rollback") else \
                IMG_INVALID_IMAGE_HEADER
            raise UploadRefused(rc, reason)
        self.manifest = manifest
        self._put(0, buf)
        self._prefix = None

    def _bound(self, buf):
        if len(buf) > MAX_PREFIX or len(buf) >= self.length:
            raise UploadRefused(IMG_INVALID_IMAGE_HEADER,
                                "no signed manifest in the first %d bytes" % len(buf))

    def _finish(self):
        digest = self._hash.digest()
        if self.sha is not None and not compat.constant_time_equal(digest, self.sha):
            raise UploadRefused(IMG_INVALID_HASH, "the image's SHA-256 differs from the announced sha")
        try:
            written = self.sink.read(0, self.length)
        except OSError as e:
            raise UploadRefused(IMG_FLASH_WRITE_FAILED, "reading the slot back failed: %s" % e)
        if not compat.constant_time_equal(compat.sha256(written), digest):
            raise UploadRefused(IMG_FLASH_WRITE_FAILED, "the slot does not hold what was sent")
        reason = self._check_written(written)
        if reason is not None:
            raise UploadRefused(IMG_INVALID_IMAGE_HEADER, reason)
        self.digest = digest
        self.done = True
