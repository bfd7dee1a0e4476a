# The release a UKI file belongs to, from its `.osrel` section (os-release(5) lines; the image
# builder writes IMAGE_VERSION, host_tools/image/build.py osrel): how the broker names the
# factory UKI in bank a, which no package described. PE/COFF (Microsoft PE format, "COFF File
# Header", "Section Table"): e_lfanew at 0x3C, "PE\0\0", the COFF header (NumberOfSections at
# +2, SizeOfOptionalHeader at +16), then 40-byte section headers after the optional header.
# Sans-I/O; None for anything that is not a PE file with an .osrel section.

import struct


def section(data, want):
    """The raw bytes of section `want` (e.g. b".osrel"), VirtualSize long, or None."""
    try:
        (pe,) = struct.unpack_from("<I", data, 0x3C)
        if bytes(data[pe:pe + 4]) != b"PE\0\0":
            return None
        count, = struct.unpack_from("<H", data, pe + 6)
        opt_size, = struct.unpack_from("<H", data, pe + 20)
        table = pe + 24 + opt_size
        for i in range(min(count, 96)):
            off = table + 40 * i
            name = bytes(data[off:off + 8]).rstrip(b"\0")
            vsize, _, raw_size, raw_ptr = struct.unpack_from("<IIII", data, off + 8)
            if name == want:
                n = min(vsize, raw_size)
                if raw_ptr + n > len(data):
                    return None
                return bytes(data[raw_ptr:raw_ptr + n])
    except (struct.error, ValueError, IndexError):
        return None
    return None


def image_version(data):
    """IMAGE_VERSION (else VERSION_ID) of the UKI's .osrel, or None."""
    text = section(data, b".osrel")
    if text is None:
        return None
    found = {}
    for line in text.decode("utf-8", "replace").split("\n"):
        if "=" in line:
            k, v = line.split("=", 1)
            found[k.strip()] = v.strip().strip('"')
    return found.get("IMAGE_VERSION") or found.get("VERSION_ID")
