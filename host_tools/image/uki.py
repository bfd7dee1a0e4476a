"""Unified kernel image: systemd-stub + .osrel/.cmdline/.linux/.initrd sections, via objcopy.

bookworm has no ukify; ``objcopy --add-section`` does the same job.  The added sections are
placed after the stub's last section at page-aligned virtual addresses (objcopy does not pick
addresses for PE sections itself).  objcopy writes the wall-clock time into TimeDateStamp:
that is zeroed afterwards, with the PE checksum, so the UKI (and PCR 4) depend only on inputs.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from host_tools.image import pe

DEFAULT_STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
# The order the sections are laid out in the file; systemd-stub measures in its own fixed
# order (.linux, .osrel, .cmdline, .initrd) regardless of this.
SECTION_ORDER = (".osrel", ".cmdline", ".linux", ".initrd")
_PAGE = 0x1000


class UkiError(RuntimeError):
    """objcopy failed or produced an unexpected image."""


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def build_uki(stub: Path, sections: dict[str, bytes], out: Path,
              objcopy: str = "objcopy") -> bytes:
    """Write the UKI to *out* and return its bytes.

    *sections* maps section name (one of SECTION_ORDER) to contents; *objcopy* must know the
    stub's PE format (the host's knows pei-x86-64, ``aarch64-linux-gnu-objcopy`` pei-aarch64).
    """
    unknown = set(sections) - set(SECTION_ORDER)
    if unknown:
        raise UkiError(f"unknown UKI sections {sorted(unknown)}")
    stub_img = pe.parse(stub.read_bytes())
    alignment = max(_PAGE, stub_img.section_alignment)
    vma = _align(stub_img.end_of_image_rva(), alignment)
    args = [objcopy]
    with tempfile.TemporaryDirectory(prefix="uki-") as tmp:
        for name in SECTION_ORDER:
            if name not in sections:
                continue
            path = Path(tmp) / name.lstrip(".")
            path.write_bytes(sections[name])
            args += ["--add-section", f"{name}={path}",
                     "--change-section-vma", f"{name}={stub_img.image_base + vma:#x}"]
            vma = _align(vma + len(sections[name]), alignment)
        raw = Path(tmp) / "uki.efi"
        args += [str(stub), str(raw)]
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise UkiError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
        data = pe.zero_timestamp_and_checksum(raw.read_bytes())
    img = pe.parse(data)
    for name, content in sections.items():
        if img.section_data(name) != content:
            raise UkiError(f"section {name} in the built UKI does not hold the given contents")
    out.write_bytes(data)
    return data
