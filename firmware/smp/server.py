# The phone's SMP server, sans-I/O: `handle(frame)` takes one SMP frame and returns the answer
# frame (or None when there is nothing to answer), plus `events` the console reads (one line per
# outcome, for the log and `status`). Groups and commands (MCUmgr SMP specification):
#   OS management (0):    echo (0), reset (5), MCUmgr parameters (6)
#   Image management (1): state read/write (0), upload (1), erase (5)
#   File management (8):  file upload (0, write), only a signed PCR policy to /policy/<v>.json
#                         (firmware/update/policy_upload.py; `files`, None: not supported)
# Errors: a group's own error (image management's IMG_MGMT_ERR) goes to an SMP v2 request as
# {"err": {"group", "rc"}}; generic errors (MGMT_ERR: not supported, bad request) and every error
# to an SMP v1 request as {"rc": MGMT_ERR, "rsn": reason}, as Zephyr's smp.c answers them. The reason text also goes to `events`: the SMP v2 answer has no
# room for it, and the person flashing should see why.

from firmware.smp import cbor, header as H
from firmware.smp.errors import SmpError
from firmware.update import slots as S
from firmware.update.policy_upload import FileRefused
from firmware.update.upload import IMG_INVALID_OFFSET, Upload, UploadRefused

# MGMT_ERR (SMP v1 and the generic codes)
EUNKNOWN, ENOMEM, EINVAL, ENOENT, EBADSTATE, EMSGSIZE, ENOTSUP = 1, 2, 3, 5, 6, 7, 8

BUF_SIZE = 2048   # largest frame the device takes (reported by MCUmgr parameters)
BUF_COUNT = 2


class SmpServer:
    """`backend` holds the slots (firmware.update.local.LocalBackend on a directory, or the
    stage loader's broker on the phone): images(), set_state(hash, confirm) -> counter or None,
    erase(slot), begin_upload() -> sink, finish_upload(upload). `new_upload(sink, length, sha)
    -> Upload`. `on_confirm(counter)` runs after a trial image is confirmed. `reset_requested`
    tells the caller to reboot once the answer is sent."""

    def __init__(self, backend, new_upload, on_confirm=None, files=None, new_uki_upload=None):
        self.slots = backend
        self.files = files
        self.new_upload = new_upload
        # image 1, the UKI (firmware/update/uki_package.py UkiUpload): None on a device whose UKI
        # has no banks
        self.new_uki_upload = new_uki_upload
        self.upload_image = 0
        self.on_confirm = on_confirm
        self.upload = None
        self.reset_requested = False
        self.events = []

    def handle(self, frame):
        try:
            hdr, payload = H.parse(frame)
        except SmpError as e:
            self.events.append("smp: dropped a frame: %s" % e)
            return None
        if hdr.op not in (H.OP_READ, H.OP_WRITE):
            return None  # a response sent to us: nothing to answer
        try:
            req = cbor.decode(payload) if payload else {}
            if not isinstance(req, dict):
                raise SmpError("payload is not a CBOR map", field="payload")
            body = self._dispatch(hdr, req)
        except SmpError as e:
            body = self._error(hdr, EINVAL, None, "bad request: %s" % e)
        except UploadRefused as e:
            self._abort_upload()
            body = self._error(hdr, EBADSTATE if e.rc == S.IMG_NO_FREE_SLOT else EINVAL, e.rc,
                               "update refused: %s" % e.reason)
        except S.SlotError as e:
            body = self._error(hdr, EBADSTATE, e.rc, "update refused: %s" % e.reason)
        except FileRefused as e:
            body = self._error(hdr, EINVAL, e.rc, "policy refused: %s" % e.reason)
        out = cbor.encode(body)
        return hdr.response(len(out)).pack() + out

    def _error(self, hdr, v1_rc, group_rc, reason):
        self.events.append(reason)
        if hdr.version >= H.V2 and group_rc is not None:
            return {"err": {"group": hdr.group, "rc": group_rc}}
        return {"rc": v1_rc, "rsn": reason}

    def _dispatch(self, hdr, req):
        g, c, w = hdr.group, hdr.command, hdr.op == H.OP_WRITE
        if g == H.GROUP_OS:
            if c == H.OS_ECHO and w:
                return {"r": _field(req, "d", "text")}
            if c == H.OS_RESET and w:
                self.reset_requested = True
                self.events.append("smp: reset requested")
                return {}
            if c == H.OS_MCUMGR_PARAMS and not w:
                return {"buf_size": BUF_SIZE, "buf_count": BUF_COUNT}
        elif g == H.GROUP_IMAGE:
            if c == H.IMG_STATE:
                if w:
                    digest = _field(req, "hash", "bytes", True)
                    counter = self.slots.set_state(digest, bool(req.get("confirm", False)))
                    if counter is not None:
                        self._confirmed(counter)
                    elif digest is not None:
                        self.events.append("update: image %s set for %s" % (
                            digest.hex()[:16], "boot (permanent)" if req.get("confirm") else "test"))
                return {"images": self.slots.images(), "splitStatus": 0}
            if c == H.IMG_UPLOAD and w:
                return self._upload(req)
            if c == H.IMG_ERASE and w:
                self._abort_upload()
                slot = req.get("slot")
                if slot is not None and not isinstance(slot, int):
                    raise SmpError("slot is not an integer", field="slot")
                self.slots.erase(slot)
                self.events.append("update: slot %d erased" % (1 if slot is None else slot))
                return {}
        elif g == H.GROUP_FS and c == H.FS_FILE and w and self.files is not None:
            return self._file_upload(req)
        return self._error(hdr, ENOTSUP, None,
                           "smp: group %d command %d (%s) is not supported" % (g, c, "write" if w else "read"))

    def _confirmed(self, counter):
        self.events.append("update: running image confirmed (anti-rollback counter %d)" % counter)
        if self.on_confirm is not None:
            self.on_confirm(counter)

    def _abort_upload(self):
        self.upload = None

    def _upload(self, req):
        off = _field(req, "off", "uint")
        data = _field(req, "data", "bytes")
        image = req.get("image", 0)
        if image is None:
            image = 0
        if image not in (0, 1) or (image == 1 and self.new_uki_upload is None):
            raise UploadRefused(S.IMG_INVALID_SLOT, "image %r: this device has %s" % (
                image, "images 0 (bundle) and 1 (UKI)" if self.new_uki_upload else "one image (0)"))
        if off == 0:
            length = _field(req, "len", "uint")
            sha = _field(req, "sha", "bytes", True)
            if self.upload is not None and self.upload_image == image and self.upload.same(length, sha):
                if self.upload.offset > 0:
                    self.events.append("update: resuming at byte %d" % self.upload.offset)
                    return {"off": self.upload.offset}
            else:
                self.upload = None
                make = self.new_uki_upload if image == 1 else self.new_upload
                self.upload = make(self.slots.begin_upload(), length, sha)
                self.upload_image = image
                self.events.append("update: receiving %d bytes into image %d slot 1" % (length, image))
        elif self.upload is None:
            raise UploadRefused(IMG_INVALID_OFFSET, "chunk at offset %d without an upload in progress" % off)
        nxt = self.upload.write(off, data)
        if self.upload.done:
            up = self.upload
            self._abort_upload()
            self.slots.finish_upload(up)
            self.events.append("update: image %d slot 1 holds version %s, checked (signature, "
                               "board, counter, %s)" % (self.upload_image, S.version_of(up.manifest),
                                                        "the UKI's hash" if self.upload_image else
                                                        "every component"))
            return {"off": nxt, "match": True}
        return {"off": nxt}


    def _file_upload(self, req):
        off = _field(req, "off", "uint")
        got, ans = self.files.write(_field(req, "name", "text"), off, _field(req, "data", "bytes"),
                                    _field(req, "len", "uint", off != 0))
        if ans is not None:
            self.events.append("policy: signed PCR policy for version %s (anti-rollback %s) added "
                               "to the sealed store" % (ans.get("image_version"), ans.get("anti_rollback")))
        return {"off": got}


def _field(req, key, kind, optional=False):
    """req[key] when it is a `kind` ("uint", "bytes", "text"), None when absent and `optional`."""
    v = req.get(key)
    if v is None and optional:
        return None
    if kind == "uint":
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
    else:
        ok = isinstance(v, bytes if kind == "bytes" else str)
    if not ok:
        raise SmpError("%s must be %s" % (key, {"uint": "a non-negative integer", "bytes": "a byte string",
                                                 "text": "a text string"}[kind]), field=key)
    return v
