# The phone's component event payload: which component (name, version) a PCR 14 measurement is.
#
# Event type EV_EVENT_TAG (PFP §10.4.1, 0x6) carrying a TCG_PCClientTaggedEvent (the PFP's event
# data for EV_EVENT_TAG: taggedEventID u32, taggedEventDataSize u32, taggedEventData[], little-endian;
# the Linux EFI stub uses the same structure for its PCR 9 events). tpm2_eventlog 5.4 accepts it and
# prints the bytes. Our taggedEventID is PHONE_COMPONENT_TAG; its data is
#   "phone-component\0"  (16 bytes: lets a human spot it in a hex dump, and rejects foreign tags)
#   u16 len + name (UTF-8, 1..255 bytes)
#   u16 len + version (UTF-8, 1..255 bytes)
# all lengths little-endian like the rest of the log. The event digest is the hash of the component
# itself (not of this payload), as EV_IPL/EV_EFI_BOOT_SERVICES_APPLICATION digests are of code.

import struct

from firmware.errors import ParseError

PHONE_COMPONENT_TAG = 0x4D4F4350  # b"PCOM" read as a little-endian u32
_TAG_BYTES = struct.pack("<I", PHONE_COMPONENT_TAG)
COMPONENT_MAGIC = b"phone-component\x00"
MAX_NAME = 255


def encode_component(name, version):
    """The EV_EVENT_TAG payload naming a component and its version."""
    parts = []
    for label, text in (("name", name), ("version", version)):
        raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        if not raw or len(raw) > MAX_NAME:
            raise ValueError("component %s must be 1..%d UTF-8 bytes" % (label, MAX_NAME))
        parts.append(struct.pack("<H", len(raw)) + raw)
    body = COMPONENT_MAGIC + parts[0] + parts[1]
    return struct.pack("<II", PHONE_COMPONENT_TAG, len(body)) + body


def is_component(data):
    return len(data) >= 24 and data[8:24] == COMPONENT_MAGIC and \
        struct.unpack_from("<I", data, 0)[0] == PHONE_COMPONENT_TAG


def component_or_none(data, base=0):
    """(name, version) if `data` is a phone component payload, None if it is some other tagged
    event (e.g. the Linux EFI stub's); ParseError if it claims to be ours but is malformed."""
    if len(data) < 8 or data[0:4] != _TAG_BYTES:
        return None
    return decode_component(data, base)


def decode_component(data, base=0):
    """(name, version) from a payload made by encode_component; ParseError names offset and field.
    `base` is the payload's offset in the log, so offsets in errors are log offsets."""
    # Fast path for well-formed payloads (one struct call); anything off goes to the careful path,
    # which finds and names the problem.
    n = len(data)
    if n >= 30:
        tag, size, magic, ln = struct.unpack_from("<II16sH", data, 0)
        end = 26 + ln
        if (tag == PHONE_COMPONENT_TAG and size == n - 8 and magic == COMPONENT_MAGIC
                and 0 < ln <= MAX_NAME and end + 2 < n):
            vl = struct.unpack_from("<H", data, end)[0]
            if vl <= MAX_NAME and end + 2 + vl == n:
                try:
                    return data[26:end].decode("utf-8"), data[end + 2:n].decode("utf-8")
                except UnicodeError:
                    pass
    return _decode_careful(data, base)



def _check_tagged(data, base, tag_id, magic, kind):
    """TCG_PCClientTaggedEvent header (see the top of this file) + our 16-byte magic; returns the offset after
    them. `kind` is "component" or "bundle", for the error text and field names."""
    n = len(data)
    if n < 8:
        raise ParseError("truncated tagged event", offset=base, field="TaggedEvent")
    tag, size = struct.unpack_from("<II", data, 0)
    if tag != tag_id:
        raise ParseError("taggedEventID 0x%08x is not a phone %s" % (tag, kind), offset=base,
                         field="TaggedEvent.taggedEventID")
    if size != n - 8:
        raise ParseError("taggedEventDataSize %d but %d bytes follow" % (size, n - 8),
                         offset=base + 4, field="TaggedEvent.taggedEventDataSize")
    if data[8:24] != magic:
        raise ParseError("missing phone-%s magic" % kind, offset=base + 8, field=kind + ".magic")
    return 24

def _decode_careful(data, base):
    n = len(data)
    off = _check_tagged(data, base, PHONE_COMPONENT_TAG, COMPONENT_MAGIC, "component")
    out = []
    for label in ("name", "version"):
        if off + 2 > n:
            raise ParseError("truncated", offset=base + off, field="component.%s.size" % label)
        ln = struct.unpack_from("<H", data, off)[0]
        if ln == 0 or ln > MAX_NAME or off + 2 + ln > n:
            raise ParseError("%s length %d invalid (%d bytes left)" % (label, ln, n - off - 2),
                             offset=base + off, field="component.%s.size" % label)
        raw = data[off + 2:off + 2 + ln]
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeError:
            raise ParseError("%s is not UTF-8" % label, offset=base + off + 2,
                             field="component." + label)
        off += 2 + ln
    if off != n:
        raise ParseError("%d trailing bytes" % (n - off), offset=base + off, field="component")
    return out[0], out[1]


# The bundle event: which signed bundle (board, bundle version, anti-rollback counter) the stage
# loader found. It is the first PCR 14 event, also EV_EVENT_TAG, with its own taggedEventID:
#   "phone-bundle\0\0\0\0"  (16 bytes)
#   u16 len + board (UTF-8, 1..255 bytes)
#   u16 len + bundle version (UTF-8, 1..255 bytes)
#   u64 anti-rollback counter
# Unlike a component event, its digest is the hash of this whole event data (as for EV_SEPARATOR
# or EV_EFI_ACTION): the labels are what is measured, so a verifier that finds the predicted
# digest in a replayed PCR 14 knows the TPM vouches for the version and counter. An older bundle
# with byte-identical components therefore still changes PCR 14 (docs/eventlog.md).
PHONE_BUNDLE_TAG = 0x4E554250  # b"PBUN" read as a little-endian u32
_BUNDLE_TAG_BYTES = struct.pack("<I", PHONE_BUNDLE_TAG)
BUNDLE_MAGIC = b"phone-bundle\x00\x00\x00\x00"
BUNDLE_EVENT_NAME = "bundle"  # the name verifiers and reference.json give this event
MAX_COUNTER = 0xFFFFFFFFFFFFFFFF


def encode_bundle(board, bundle_version, counter):
    """The EV_EVENT_TAG payload (and measured bytes) of the bundle event."""
    body = BUNDLE_MAGIC
    for label, text in (("board", board), ("bundle version", bundle_version)):
        raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        if not raw or len(raw) > MAX_NAME:
            raise ValueError("%s must be 1..%d UTF-8 bytes" % (label, MAX_NAME))
        body += struct.pack("<H", len(raw)) + raw
    if not isinstance(counter, int) or counter < 0 or counter > MAX_COUNTER:
        raise ValueError("anti-rollback counter must be 0..2**64-1")
    body += struct.pack("<Q", counter)
    return struct.pack("<II", PHONE_BUNDLE_TAG, len(body)) + body


def bundle_label(bundle_version, counter, board):
    """How verifiers show a bundle event's identity (its 'version' column)."""
    return "%s (anti-rollback counter %d, board %s)" % (bundle_version, counter, board)


def bundle_or_none(data, base=0):
    """(board, bundle version, counter) if `data` is a bundle event payload, None if it is some
    other tagged event; ParseError if it claims to be one but is malformed."""
    if len(data) < 8 or data[0:4] != _BUNDLE_TAG_BYTES:
        return None
    return decode_bundle(data, base)


def decode_bundle(data, base=0):
    n = len(data)
    off = _check_tagged(data, base, PHONE_BUNDLE_TAG, BUNDLE_MAGIC, "bundle")
    out = []
    for label in ("board", "version"):
        if off + 2 > n:
            raise ParseError("truncated", offset=base + off, field="bundle.%s.size" % label)
        ln = struct.unpack_from("<H", data, off)[0]
        if ln == 0 or ln > MAX_NAME or off + 2 + ln > n:
            raise ParseError("%s length %d invalid (%d bytes left)" % (label, ln, n - off - 2),
                             offset=base + off, field="bundle.%s.size" % label)
        try:
            out.append(bytes(data[off + 2:off + 2 + ln]).decode("utf-8"))
        except UnicodeError:
            raise ParseError("%s is not UTF-8" % label, offset=base + off + 2,
                             field="bundle." + label)
        off += 2 + ln
    if off + 8 != n:
        raise ParseError("anti-rollback counter must be the last 8 bytes (%d left)" % (n - off),
                         offset=base + off, field="bundle.anti_rollback_counter")
    counter = struct.unpack_from("<Q", data, off)[0]
    return out[0], out[1], counter
