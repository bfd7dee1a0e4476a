# UEFI boot variables, sans-I/O: load options (Boot####), the device paths in them, BootOrder,
# BootNext and BootCurrent (UEFI 2.10 §3.1 "Firmware Boot Manager", §10 "Device Path Protocol").
# The UKI banks (uki_banks.py) build and read these; efivarfs.py moves the bytes.
#
# Every read of bytes from outside is bounds-checked: a malformed variable raises ParseError
# naming the field, never IndexError or struct.error.

import struct

from firmware.errors import ParseError

# UEFI 2.10 §3.3 Globally Defined Variables: the vendor GUID of Boot####, BootOrder, BootNext,
# BootCurrent.
EFI_GLOBAL_VARIABLE = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

# UEFI 2.10 §8.2.1 GetVariable(): variable attributes.
EFI_VARIABLE_NON_VOLATILE = 0x00000001
EFI_VARIABLE_BOOTSERVICE_ACCESS = 0x00000002
EFI_VARIABLE_RUNTIME_ACCESS = 0x00000004
BOOT_VAR_ATTRIBUTES = (EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS
                       | EFI_VARIABLE_RUNTIME_ACCESS)

# UEFI 2.10 §3.1.3 Load Options: EFI_LOAD_OPTION.Attributes.
LOAD_OPTION_ACTIVE = 0x00000001
LOAD_OPTION_FORCE_RECONNECT = 0x00000002
LOAD_OPTION_HIDDEN = 0x00000008
LOAD_OPTION_CATEGORY = 0x00001F00
LOAD_OPTION_CATEGORY_BOOT = 0x00000000
LOAD_OPTION_CATEGORY_APP = 0x00000100

# UEFI 2.10 §10.2 EFI Device Path Protocol: node Type values; §10.3.1 End of Hardware Device Path
# sub-types; §10.3.5 Media Device Path sub-types.
TYPE_MEDIA = 0x04
TYPE_END = 0x7F
SUBTYPE_END_ENTIRE = 0xFF
SUBTYPE_END_INSTANCE = 0x01
SUBTYPE_HARD_DRIVE = 0x01
SUBTYPE_FILE_PATH = 0x04
NODE_HEADER = 4  # Type (1), Sub-Type (1), Length (2, little-endian, including the header)
HD_NODE_LENGTH = 42  # §10.3.5.1 Table 10-49: 4 + 4 + 8 + 8 + 16 + 1 + 1
MBR_TYPE_GPT = 0x02  # §10.3.5.1 Partition Format: GUID Partition Table
SIGNATURE_TYPE_GUID = 0x02  # §10.3.5.1 Signature Type: GUID signature


# --- GUIDs (UEFI 2.10 Appendix A: EFI_GUID; the first three fields little-endian) --------------

_HEX = "0123456789abcdef"


def _hexval(text, field):
    try:
        return int(text, 16)
    except ValueError:
        raise ParseError("not a hexadecimal GUID field: %r" % text, field=field)


def guid_to_bytes(text):
    """'8be4df61-93ca-11d2-aa0d-00e098032b8c' -> its 16 bytes in EFI_GUID order: Data1 (u32),
    Data2 (u16), Data3 (u16) little-endian, Data4 (8 bytes) as written."""
    parts = text.split("-")
    if [len(p) for p in parts] != [8, 4, 4, 4, 12]:
        raise ParseError("GUID not in 8-4-4-4-12 form: %r" % text, field="guid")
    for p in parts:
        for ch in p.lower():
            if ch not in _HEX:
                raise ParseError("GUID has a non-hex character: %r" % text, field="guid")
    d1 = _hexval(parts[0], "guid")
    d2 = _hexval(parts[1], "guid")
    d3 = _hexval(parts[2], "guid")
    tail = parts[3] + parts[4]
    d4 = bytes(int(tail[i:i + 2], 16) for i in range(0, 16, 2))
    return struct.pack("<IHH", d1, d2, d3) + d4


def guid_from_bytes(data, offset=0):
    """The lower-case text form of the EFI_GUID at `offset` of `data`."""
    if offset < 0 or len(data) < offset + 16:
        raise ParseError("GUID needs 16 bytes, %d left" % max(0, len(data) - offset),
                         offset=offset, field="guid")
    d1, d2, d3 = struct.unpack_from("<IHH", data, offset)
    d4 = bytes(data[offset + 8:offset + 16])
    h = "".join("%02x" % b for b in d4)
    return "%08x-%04x-%04x-%s-%s" % (d1, d2, d3, h[:4], h[4:])


def normalize_guid(text):
    """Lower-case canonical text of a GUID given in any case (checked)."""
    return guid_from_bytes(guid_to_bytes(text))


# --- UCS-2 strings (CHAR16, UEFI 2.10 §2.3.1: UCS-2, little-endian) ---------------------------
# MicroPython has no utf-16 codec: these are written out. Only the Basic Multilingual Plane
# (no surrogates) is representable in UCS-2.

def ucs2_encode(text):
    """`text` as CHAR16s plus the terminating NUL."""
    out = bytearray()
    for ch in text:
        c = ord(ch)
        if c == 0 or c > 0xFFFF or 0xD800 <= c <= 0xDFFF:
            raise ParseError("character U+%04X cannot be a CHAR16 in a string" % c, field="ucs2")
        out.append(c & 0xFF)
        out.append(c >> 8)
    out.append(0)
    out.append(0)
    return bytes(out)


def ucs2_decode(data, offset, end, field):
    """-> (text, offset after the NUL) of the NUL-terminated CHAR16 string at `offset`, which
    must end before `end`."""
    chars = []
    pos = offset
    while True:
        if pos + 2 > end:
            raise ParseError("CHAR16 string has no terminating NUL", offset=offset, field=field)
        c = data[pos] | (data[pos + 1] << 8)
        pos += 2
        if c == 0:
            return "".join(chars), pos
        if 0xD800 <= c <= 0xDFFF:
            raise ParseError("surrogate U+%04X in a UCS-2 string" % c, offset=pos - 2, field=field)
        chars.append(chr(c))


# --- device path nodes (UEFI 2.10 §10.2, §10.3) ------------------------------------------------

def node(type_, subtype, body=b""):
    """One device path node: the 4-byte header (§10.2 Table 10-1) and `body`."""
    length = NODE_HEADER + len(body)
    if length > 0xFFFF:
        raise ParseError("device path node of %d bytes exceeds the u16 Length" % length,
                         field="node")
    return struct.pack("<BBH", type_, subtype, length) + bytes(body)


def end_node():
    """§10.3.1 End of Hardware Device Path, End Entire Device Path (0x7F, 0xFF, length 4)."""
    return node(TYPE_END, SUBTYPE_END_ENTIRE)


def hd_node(partition_number, start_lba, size_lba, partition_guid):
    """§10.3.5.1 Hard Drive Media Device Path of a GPT partition: PartitionNumber (u32, 1-based
    entry index), PartitionStart and PartitionSize (u64, in logical blocks), PartitionSignature
    (the partition's unique GUID), PartitionFormat 0x02 (GPT), SignatureType 0x02 (GUID)."""
    if not 1 <= partition_number <= 0xFFFFFFFF:
        raise ParseError("GPT partition number %r out of range" % (partition_number,),
                         field="PartitionNumber")
    body = struct.pack("<IQQ", partition_number, start_lba, size_lba)
    body += guid_to_bytes(partition_guid) + bytes((MBR_TYPE_GPT, SIGNATURE_TYPE_GUID))
    return node(TYPE_MEDIA, SUBTYPE_HARD_DRIVE, body)


def efi_path(path):
    """A FAT path ('EFI/BOOT/BOOTX64.EFI' or '\\EFI\\BOOT\\BOOTX64.EFI') in the form a File
    Path node holds: backslash-separated, from the root (§10.3.5.4; §13.3 file names)."""
    p = path.replace("/", "\\")
    if not p.startswith("\\"):
        p = "\\" + p
    return p


def file_node(path):
    """§10.3.5.4 File Path Media Device Path: PathName, a NUL-terminated CHAR16 string."""
    return node(TYPE_MEDIA, SUBTYPE_FILE_PATH, ucs2_encode(efi_path(path)))


def parse_device_path(data):
    """The nodes of the first device path in `data` (a FilePathList may pack several, each
    ended by an End Entire node, §3.1.3) as [(type, subtype, body)], End This Instance nodes
    included, the End Entire node not. A node running past the data, shorter than its header
    or a path without its End Entire node raises ParseError."""
    nodes = []
    pos = 0
    while True:
        if pos + NODE_HEADER > len(data):
            raise ParseError("device path ends without an End Entire Device Path node",
                             offset=pos, field="device path")
        type_, subtype, length = struct.unpack_from("<BBH", data, pos)
        if length < NODE_HEADER:
            raise ParseError("device path node Length %d is shorter than its header" % length,
                             offset=pos + 2, field="Length")
        if pos + length > len(data):
            raise ParseError("device path node of %d bytes runs past the end (%d left)"
                             % (length, len(data) - pos), offset=pos + 2, field="Length")
        if type_ == TYPE_END and subtype == SUBTYPE_END_ENTIRE:
            return nodes
        nodes.append((type_, subtype, bytes(data[pos + NODE_HEADER:pos + length])))
        pos += length


def parse_hd_node(body):
    """A Hard Drive node's body -> dict(partition_number, start_lba, size_lba, signature,
    partition_format, signature_type); signature is the GUID text for GUID signatures."""
    if len(body) != HD_NODE_LENGTH - NODE_HEADER:
        raise ParseError("Hard Drive node body is %d bytes, not %d"
                         % (len(body), HD_NODE_LENGTH - NODE_HEADER), field="Hard Drive")
    number, start, size = struct.unpack_from("<IQQ", body, 0)
    fmt, sig_type = body[36], body[37]
    sig = guid_from_bytes(body, 20) if sig_type == SIGNATURE_TYPE_GUID else bytes(body[20:36])
    return {"partition_number": number, "start_lba": start, "size_lba": size,
            "signature": sig, "partition_format": fmt, "signature_type": sig_type}


def file_path_of(device_path):
    """The file path of the first device path in `device_path` (bytes, or nodes from
    parse_device_path): consecutive File Path nodes joined (§10.3.5.4 allows a path split
    over several), or None without any."""
    nodes = parse_device_path(device_path) if isinstance(device_path, (bytes, bytearray)) \
        else device_path
    parts = []
    for type_, subtype, body in nodes:
        if type_ == TYPE_END:
            break  # End This Instance: only the first instance
        if type_ == TYPE_MEDIA and subtype == SUBTYPE_FILE_PATH:
            text, used = ucs2_decode(body, 0, len(body), "PathName")
            parts.append(text)
    if not parts:
        return None
    path = parts[0]
    for p in parts[1:]:
        if not path.endswith("\\") and not p.startswith("\\"):
            path += "\\"
        path += p
    return path


def hd_guid_of(device_path):
    """The partition GUID of the first Hard Drive node with a GUID signature, or None."""
    nodes = parse_device_path(device_path) if isinstance(device_path, (bytes, bytearray)) \
        else device_path
    for type_, subtype, body in nodes:
        if type_ == TYPE_END:
            break
        if type_ == TYPE_MEDIA and subtype == SUBTYPE_HARD_DRIVE:
            hd = parse_hd_node(body)
            if hd["signature_type"] == SIGNATURE_TYPE_GUID:
                return hd["signature"]
    return None


# --- load options (UEFI 2.10 §3.1.3 EFI_LOAD_OPTION) -------------------------------------------

def encode_load_option(description, device_path, attributes=LOAD_OPTION_ACTIVE, optional=b""):
    """EFI_LOAD_OPTION: Attributes (u32), FilePathListLength (u16), Description (CHAR16, NUL),
    FilePathList (`device_path`: nodes ending with an End Entire node), OptionalData."""
    device_path = bytes(device_path)
    parse_device_path(device_path)  # a malformed path is never written
    if len(device_path) > 0xFFFF:
        raise ParseError("FilePathList of %d bytes exceeds the u16 FilePathListLength"
                         % len(device_path), field="FilePathListLength")
    return (struct.pack("<IH", attributes, len(device_path)) + ucs2_encode(description)
            + device_path + bytes(optional))


def parse_load_option(data):
    """-> dict(attributes, description, device_path (bytes of FilePathList), optional)."""
    if len(data) < 6:
        raise ParseError("EFI_LOAD_OPTION of %d bytes is shorter than its 6-byte header"
                         % len(data), offset=0, field="Attributes")
    attributes, path_len = struct.unpack_from("<IH", data, 0)
    description, pos = ucs2_decode(data, 6, len(data), "Description")
    if pos + path_len > len(data):
        raise ParseError("FilePathListLength %d runs past the end (%d bytes left)"
                         % (path_len, len(data) - pos), offset=4, field="FilePathListLength")
    device_path = bytes(data[pos:pos + path_len])
    parse_device_path(device_path)
    return {"attributes": attributes, "description": description, "device_path": device_path,
            "optional": bytes(data[pos + path_len:])}


# --- BootOrder, BootNext, BootCurrent (UEFI 2.10 §3.3) -----------------------------------------

def boot_var_name(number):
    """'Boot%04X' (§3.1.1: four upper-case hexadecimal digits)."""
    if not 0 <= number <= 0xFFFF:
        raise ParseError("boot option number %r out of range" % (number,), field="Boot####")
    return "Boot%04X" % number


def parse_boot_var_name(name):
    """'Boot000A' -> 10; None for any other name (BootOrder, Boot00ag, ...)."""
    if len(name) != 8 or not name.startswith("Boot"):
        return None
    for ch in name[4:]:
        if ch not in "0123456789ABCDEF":
            return None
    return int(name[4:], 16)


def encode_boot_order(numbers):
    """BootOrder: an array of UINT16, little-endian."""
    return b"".join(struct.pack("<H", n) for n in numbers)


def parse_boot_order(data):
    if len(data) % 2:
        raise ParseError("BootOrder of %d bytes is not an array of UINT16" % len(data),
                         field="BootOrder")
    return [struct.unpack_from("<H", data, i)[0] for i in range(0, len(data), 2)]


def encode_u16(number):
    """BootNext / BootCurrent: one UINT16."""
    if not 0 <= number <= 0xFFFF:
        raise ParseError("boot option number %r out of range" % (number,), field="UINT16")
    return struct.pack("<H", number)


def parse_u16(data, field="BootNext"):
    if len(data) != 2:
        raise ParseError("%s is %d bytes, not one UINT16" % (field, len(data)), field=field)
    return struct.unpack_from("<H", data, 0)[0]
