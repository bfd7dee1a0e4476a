"""A UKI package whose payload is a delta against the UKI the device has (docs/image-format.md
"UKI delta"), so only what changed crosses the serial line.

    python -m host_tools.image.uki_delta --package NEW/uki.tar --base OLD/BOOTX64.EFI --out delta.tar

Matching works on 512-byte blocks at 512-aligned offsets: a PE image's sections start at
multiples of its FileAlignment (0x200 in a systemd-stub UKI, PE/COFF spec "Optional Header
Windows-Specific Fields"), so a section that moved by a multiple of 512 (a grown .initrd
shifting nothing, a grown .osrel shifting everything after it) still matches block for block.
Each target block is copied from the base where an identical base block exists (continuing the
previous copy when it can, so runs merge into one COPY), else sent as DATA (adjacent DATA blocks
merge). The manifest and signature are the full package's, unchanged: the device refuses the
rebuilt UKI unless it is exactly the signed one (firmware/update/uki_package.py rebuild).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from firmware.update import uki_delta as codec
from firmware.update import uki_package as device
from host_tools.image import uki_package

BLOCK = 512


def delta_payload(target: bytes, base: bytes) -> bytes:
    """The uki.delta bytes that rebuild *target* from *base*."""
    index: dict[bytes, int] = {}
    for off in range(0, len(base) - BLOCK + 1, BLOCK):
        index.setdefault(base[off:off + BLOCK], off)
    out = [codec.encode_header(len(base), hashlib.sha256(base).digest(), len(target))]  # type: ignore[no-untyped-call]
    copy_src = copy_len = 0
    data_start = data_len = 0
    pos = 0

    def flush_copy() -> None:
        nonlocal copy_len
        if copy_len:
            out.append(codec.encode_copy(copy_src, copy_len))  # type: ignore[no-untyped-call]
            copy_len = 0

    def flush_data() -> None:
        nonlocal data_len
        if data_len:
            out.append(codec.encode_data(target[data_start:data_start + data_len]))  # type: ignore[no-untyped-call]
            data_len = 0

    while pos < len(target):
        block = target[pos:pos + BLOCK]
        n = len(block)
        nxt = copy_src + copy_len
        if copy_len and base[nxt:nxt + n] == block and copy_len + n <= codec.MAX_LENGTH:
            copy_len += n  # the run goes on
        else:
            src = index.get(block) if n == BLOCK else (
                len(base) - n if base.endswith(block) else None)  # a short last block: the base's tail
            if src is not None:
                flush_copy()
                flush_data()
                copy_src, copy_len = src, n
            else:
                flush_copy()
                if not data_len:
                    data_start = pos
                data_len += n
        pos += n
    flush_copy()
    flush_data()
    out.append(codec.encode_end())  # type: ignore[no-untyped-call]
    return b"".join(out)


def make_delta(package: bytes, base_uki: bytes) -> bytes:
    """The delta package of a full UKI *package* (``uki.efi``) against *base_uki*: the same
    signed manifest and signature, payload ``uki.delta``. Checked by rebuilding it here."""
    man, sig, name, payload = device.split(package)  # type: ignore[no-untyped-call]
    if name != device.FULL_NAME:
        raise ValueError(f"the package carries {name}, not the full {device.FULL_NAME}")
    delta = uki_package.pack(bytes(man), bytes(sig), device.DELTA_NAME,
                             delta_payload(bytes(payload), base_uki))
    # the device's own rebuild, which refuses anything but the signed UKI's size and SHA-256
    device.rebuild(delta, lambda off, n: base_uki[off:off + n])  # type: ignore[no-untyped-call]
    return delta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.image.uki_delta",
                                 description="Write a UKI package whose payload is a delta "
                                             "against the UKI the device has installed.")
    ap.add_argument("--package", type=Path, required=True, help="the full package (uki.tar)")
    ap.add_argument("--base", type=Path, required=True,
                    help="the installed UKI (e.g. the previous build's BOOTX64.EFI)")
    ap.add_argument("--out", type=Path, required=True, help="the delta package to write")
    args = ap.parse_args(argv)
    try:
        full = args.package.read_bytes()
        delta = make_delta(full, args.base.read_bytes())
    except (OSError, ValueError, codec.UkiError) as e:
        print(f"uki_delta: error: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 1
    args.out.write_bytes(delta)
    print(f"uki_delta: {args.out}: {len(delta)} bytes ({100 * len(delta) / len(full):.1f}% of the "
          f"{len(full)}-byte full package)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
