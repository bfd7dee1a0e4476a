"""PE/COFF reading for the UKI: section table, header fix-ups, Authenticode digest.

Only what the image builder needs: the offsets named here come from the Microsoft PE/COFF
specification ("PE Format", sections 3-4) and the Authenticode digest from "Windows
Authenticode Portable Executable Signature Format" 1.0, section "Calculating the PE Image
Hash".  OVMF (EDK2 ``DxeTpm2MeasureBootLib``, ``Tcg2MeasurePeImage``) extends exactly this
digest into PCR 4 for every EFI application it starts, so the prediction must match it bit
for bit.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

_PE_POINTER_OFFSET = 0x3C  # e_lfanew in the DOS header
_COFF_SIZE = 20
_OPT_MAGIC_PE32 = 0x10B
_OPT_MAGIC_PE32_PLUS = 0x20B
_CHECKSUM_OFFSET = 64  # within the optional header, same for PE32 and PE32+
_SECURITY_DIR_INDEX = 4  # IMAGE_DIRECTORY_ENTRY_SECURITY (the certificate table)
_SECTION_HEADER_SIZE = 40


class PeError(ValueError):
    """The file is not a PE image this module can handle; names the field and offset."""


@dataclass(frozen=True)
class Section:
    name: str
    virtual_address: int
    virtual_size: int
    raw_offset: int
    raw_size: int
    header_offset: int  # file offset of this section's 40-byte header


@dataclass(frozen=True)
class PeImage:
    """Parsed headers of a PE32/PE32+ image (data is kept for hashing)."""

    data: bytes
    pe_offset: int
    opt_offset: int
    magic: int
    timestamp_offset: int
    checksum_offset: int
    image_base: int
    section_alignment: int
    file_alignment: int
    size_of_headers: int
    number_of_rva: int
    data_dir_offset: int
    sections: tuple[Section, ...]

    @property
    def cert_table(self) -> tuple[int, int]:
        """(file offset, size) of the certificate table, (0, 0) when absent."""
        if self.number_of_rva <= _SECURITY_DIR_INDEX:
            return (0, 0)
        off = self.data_dir_offset + 8 * _SECURITY_DIR_INDEX
        va, size = struct.unpack_from("<II", self.data, off)
        return (va, size)

    def section(self, name: str) -> Section:
        for s in self.sections:
            if s.name == name:
                return s
        raise KeyError(name)

    def section_data(self, name: str) -> bytes:
        """The section's contents as loaded: VirtualSize bytes (raw data is padded)."""
        s = self.section(name)
        return self.data[s.raw_offset:s.raw_offset + min(s.virtual_size, s.raw_size)]

    def end_of_image_rva(self) -> int:
        return max((s.virtual_address + max(s.virtual_size, s.raw_size) for s in self.sections),
                   default=self.size_of_headers)


def _need(data: bytes, offset: int, size: int, field: str) -> None:
    if offset < 0 or offset + size > len(data):
        raise PeError(f"PE truncated reading {field} at offset {offset} "
                      f"(need {size} bytes, file has {len(data)})")


def parse(data: bytes) -> PeImage:
    """Parse the headers of a PE image; raise PeError naming the bad field."""
    _need(data, 0, 0x40, "DOS header")
    if data[:2] != b"MZ":
        raise PeError("not a PE image: DOS magic at offset 0 is not 'MZ'")
    (pe_off,) = struct.unpack_from("<I", data, _PE_POINTER_OFFSET)
    _need(data, pe_off, 4 + _COFF_SIZE, "COFF header")
    if data[pe_off:pe_off + 4] != b"PE\0\0":
        raise PeError(f"PE signature missing at offset {pe_off}")
    coff = pe_off + 4
    _machine, nsections, _ts, _symptr, _nsyms, opt_size, _chars = struct.unpack_from(
        "<HHIIIHH", data, coff)
    opt = coff + _COFF_SIZE
    _need(data, opt, opt_size, "optional header")
    (magic,) = struct.unpack_from("<H", data, opt)
    if magic == _OPT_MAGIC_PE32_PLUS:
        (image_base,) = struct.unpack_from("<Q", data, opt + 24)
        rva_off, dirs = opt + 108, opt + 112
    elif magic == _OPT_MAGIC_PE32:
        (image_base,) = struct.unpack_from("<I", data, opt + 28)
        rva_off, dirs = opt + 92, opt + 96
    else:
        raise PeError(f"unknown optional header magic {magic:#x} at offset {opt}")
    sect_align, file_align = struct.unpack_from("<II", data, opt + 32)
    (size_of_headers,) = struct.unpack_from("<I", data, opt + 60)
    (nrva,) = struct.unpack_from("<I", data, rva_off)
    if dirs + 8 * nrva > opt + opt_size:
        raise PeError(f"NumberOfRvaAndSizes {nrva} at offset {rva_off} overruns the optional header")
    sect_table = opt + opt_size
    _need(data, sect_table, nsections * _SECTION_HEADER_SIZE, "section table")
    if size_of_headers > len(data):
        raise PeError(f"SizeOfHeaders {size_of_headers} at offset {opt + 60} exceeds the file")
    sections = []
    for i in range(nsections):
        h = sect_table + i * _SECTION_HEADER_SIZE
        raw_name, vsize, va, rsize, roff = struct.unpack_from("<8sIIII", data, h)
        name = raw_name.rstrip(b"\0").decode("ascii", "replace")
        if rsize and roff + rsize > len(data):
            raise PeError(f"section {name!r} raw data ({roff}+{rsize}) runs past the end of the file")
        sections.append(Section(name, va, vsize, roff, rsize, h))
    return PeImage(data, pe_off, opt, magic, coff + 4, opt + _CHECKSUM_OFFSET, image_base,
                   sect_align, file_align, size_of_headers, nrva, dirs, tuple(sections))


def zero_timestamp_and_checksum(data: bytes) -> bytes:
    """Return *data* with COFF TimeDateStamp and optional-header CheckSum set to 0.

    objcopy stamps the build time into TimeDateStamp, which lies inside the Authenticode hash
    (so it would move PCR 4 on every build); UEFI loaders ignore both fields.
    """
    img = parse(data)
    out = bytearray(data)
    struct.pack_into("<I", out, img.timestamp_offset, 0)
    struct.pack_into("<I", out, img.checksum_offset, 0)
    return bytes(out)


def authenticode_digest(data: bytes, algorithm: str = "sha256") -> bytes:
    """Authenticode PE image hash, as EDK2's Tcg2MeasurePeImage computes it.

    Hashes the headers minus the CheckSum field and the certificate-table directory entry,
    then each section's raw data in file-offset order, then any data after the last
    section that is not the certificate table itself.
    """
    img = parse(data)
    h = hashlib.new(algorithm)
    h.update(data[:img.checksum_offset])
    if img.number_of_rva > _SECURITY_DIR_INDEX:
        cert_dir = img.data_dir_offset + 8 * _SECURITY_DIR_INDEX
        h.update(data[img.checksum_offset + 4:cert_dir])
        h.update(data[cert_dir + 8:img.size_of_headers])
    else:
        h.update(data[img.checksum_offset + 4:img.size_of_headers])
    hashed = img.size_of_headers
    for s in sorted(img.sections, key=lambda s: s.raw_offset):
        if s.raw_size == 0:
            continue
        h.update(data[s.raw_offset:s.raw_offset + s.raw_size])
        hashed += s.raw_size
    _cert_off, cert_size = img.cert_table
    if len(data) > hashed + cert_size:
        h.update(data[hashed:len(data) - cert_size])
    return h.digest()
