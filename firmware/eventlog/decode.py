# Human descriptions of the few payloads worth describing. Display only: verification never reads
# these, because a payload is whatever the (untrusted) log says; digests are what replay checks.

import struct

from firmware.errors import ParseError
from firmware.eventlog import types as T
from firmware.eventlog.component import bundle_or_none, decode_component, is_component

_VARIABLE_TYPES = (T.EV_EFI_VARIABLE_DRIVER_CONFIG, T.EV_EFI_VARIABLE_BOOT,
                   T.EV_EFI_VARIABLE_BOOT2, T.EV_EFI_VARIABLE_AUTHORITY)
_IMAGE_TYPES = (T.EV_EFI_BOOT_SERVICES_APPLICATION, T.EV_EFI_BOOT_SERVICES_DRIVER,
                T.EV_EFI_RUNTIME_SERVICES_DRIVER)
_STRING_TYPES = (T.EV_EFI_ACTION, T.EV_IPL, T.EV_ACTION, T.EV_POST_CODE, T.EV_S_CRTM_VERSION)


def guid_str(raw):
    """An EFI_GUID (mixed endian: u32, u16, u16 little-endian, then 8 bytes) as text."""
    a, b, c = struct.unpack_from("<IHH", raw, 0)
    d = raw[8:16].hex()
    return "%08x-%04x-%04x-%s-%s" % (a, b, c, d[:4], d[4:])


def efi_variable(data):
    """UEFI_VARIABLE_DATA (the PFP's event data for EV_EFI_VARIABLE_*): GUID, u64 name length
    (UTF-16 code units), u64 data length, UTF-16LE name, data. Returns (guid, name, data);
    ParseError if the lengths do not fit."""
    if len(data) < 32:
        raise ParseError("UEFI_VARIABLE_DATA shorter than 32 bytes", offset=0,
                         field="UEFI_VARIABLE_DATA")
    nchars, dlen = struct.unpack_from("<QQ", data, 16)
    if nchars > len(data) or 32 + 2 * nchars + dlen > len(data):
        raise ParseError("name/data lengths exceed the event", offset=16,
                         field="UEFI_VARIABLE_DATA.UnicodeNameLength")
    name_raw = data[32:32 + 2 * nchars]
    name = "".join(chr(struct.unpack_from("<H", name_raw, i)[0]) for i in range(0, len(name_raw), 2))
    value = data[32 + 2 * nchars:32 + 2 * nchars + dlen]
    return guid_str(data[0:16]), name, value


def firmware_blob(data):
    """UEFI_PLATFORM_FIRMWARE_BLOB (EV_EFI_PLATFORM_FIRMWARE_BLOB): (BlobBase, BlobLength)."""
    if len(data) != 16:
        raise ParseError("UEFI_PLATFORM_FIRMWARE_BLOB must be 16 bytes, got %d" % len(data),
                         offset=0, field="UEFI_PLATFORM_FIRMWARE_BLOB")
    return struct.unpack_from("<QQ", data, 0)


def image_load(data):
    """UEFI_IMAGE_LOAD_EVENT (EV_EFI_BOOT_SERVICES_*/RUNTIME_SERVICES_DRIVER): (location, length,
    link-time address, device path bytes)."""
    if len(data) < 32:
        raise ParseError("UEFI_IMAGE_LOAD_EVENT shorter than 32 bytes", offset=0,
                         field="UEFI_IMAGE_LOAD_EVENT")
    location, length, link, path_len = struct.unpack_from("<QQQQ", data, 0)
    if path_len != len(data) - 32:
        raise ParseError("LengthOfDevicePath %d but %d bytes follow" % (path_len, len(data) - 32),
                         offset=24, field="UEFI_IMAGE_LOAD_EVENT.LengthOfDevicePath")
    return location, length, link, data[32:]


def _printable(raw):
    out = []
    for b in raw:
        if b == 0:
            continue
        out.append(chr(b) if 32 <= b < 127 else "\\x%02x" % b)
    return "".join(out)


def describe(event_type, data):
    """One line describing an event's payload."""
    try:
        if event_type == T.EV_SEPARATOR:
            if data == b"\x00\x00\x00\x00":
                return "separator"
            if data == b"\x01\x00\x00\x00":
                return "separator (error)"
            return "separator " + data.hex()
        if event_type in _VARIABLE_TYPES:
            guid, name, value = efi_variable(data)
            return "variable %s %s (%d bytes)" % (guid, name, len(value))
        if event_type == T.EV_EFI_PLATFORM_FIRMWARE_BLOB:
            base, length = firmware_blob(data)
            return "firmware blob at 0x%x, 0x%x bytes" % (base, length)
        if event_type in _IMAGE_TYPES:
            location, length, _link, path = image_load(data)
            return "image at 0x%x, %d bytes, device path %d bytes" % (location, length, len(path))
        if event_type == T.EV_EVENT_TAG and is_component(data):
            name, version = decode_component(data)
            return "component %s %s" % (name, version)
        if event_type == T.EV_EVENT_TAG:
            b = bundle_or_none(data)
            if b is not None:
                return "bundle %s %s anti-rollback counter %d" % b
        if event_type in _STRING_TYPES:
            return repr(_printable(data))
    except ParseError as e:
        return "undecodable payload: %s" % e
    return "%d bytes" % len(data)
