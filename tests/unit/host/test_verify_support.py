"""Builders shared by the verifier tests: a real OVMF firmware log plus a phone log made by our
writer, the matching PCR values and reference.json (host-only helpers, no pytest here)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from firmware.eventlog.parser import parse_log
from firmware.eventlog.replayer import replay
from firmware.eventlog.writer import PhoneLog

REPO = Path(__file__).resolve().parents[3]
OVMF_SHA256 = REPO / "tests/data/ovmf-sha256"
OVMF_ALL = REPO / "tests/data/ovmf"
IMA_PCR = 10  # extended by the kernel's IMA, not by anything in the firmware log

Component = tuple[str, str, bytes]


def components(n: int = 20) -> list[Component]:
    return [("component-%02d" % i, "1.%d.0" % i, b"component %d contents" % i) for i in range(n)]


def phone_log(comps: Sequence[Component], banks: Sequence[str] = ("sha256",),
              close: bool = True) -> bytes:
    log = PhoneLog(tuple(banks))  # type: ignore[no-untyped-call]
    for name, version, data in comps:
        log.add_component(name, version, data)  # type: ignore[no-untyped-call]
    if close:
        log.close()  # type: ignore[no-untyped-call]
    return bytes(log.to_bytes())  # type: ignore[no-untyped-call]


def pcr14(phone: bytes) -> dict[str, bytes]:
    r: dict[str, dict[int, bytes]] = replay(parse_log(phone))  # type: ignore[no-untyped-call]
    return {bank: values[14] for bank, values in r.items()}


def actual_pcrs(phone: bytes, base: Path = OVMF_SHA256) -> dict[str, dict[str, str]]:
    """The real captured PCRs with PCR 14 as the phone log makes it, minus IMA's PCR 10."""
    pcrs: dict[str, dict[str, str]] = json.loads((base / "pcrs.json").read_text())
    for bank, value in pcr14(phone).items():
        if bank in pcrs:  # a TPM without this bank simply has no such PCRs
            pcrs[bank]["14"] = value.hex()
    for values in pcrs.values():
        values.pop(str(IMA_PCR), None)
    return pcrs


def reference(comps: Sequence[Component], pcrs: dict[str, dict[str, str]] | None = None,
              pcr_set: Sequence[int] = (4, 7, 14)) -> dict[str, Any]:
    ref: dict[str, Any] = {
        "schema_version": 1, "board": "qemu-x86_64", "image_version": "2026.11.0",
        "components": [{"name": n, "version": v, "sha256": hashlib.sha256(d).hexdigest(),
                        "pcr": 14} for n, v, d in comps],
        "pcrs": {},
    }
    if pcrs is not None:
        ref["pcrs"] = {"sha256": {str(i): pcrs["sha256"][str(i)] for i in pcr_set}}
    return ref


def write_device(directory: Path, phone: bytes, pcrs: dict[str, Any], ref: dict[str, Any] | None,
                 firmware: bytes | None = None) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"firmware": directory / "binary_bios_measurements",
             "phone": directory / "phone.log", "pcrs": directory / "pcrs.json",
             "reference": directory / "reference.json"}
    paths["firmware"].write_bytes(firmware if firmware is not None else
                                  (OVMF_SHA256 / "binary_bios_measurements").read_bytes())
    paths["phone"].write_bytes(phone)
    paths["pcrs"].write_text(json.dumps(pcrs))
    if ref is not None:
        paths["reference"].write_text(json.dumps(ref))
    return paths
