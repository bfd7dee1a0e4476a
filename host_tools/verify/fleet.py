"""Fleet mode: verify many devices in one process (--fleet DIR).

Each subdirectory of DIR is one device and holds `pcrs.json`, its event logs (the firmware's
`binary_bios_measurements` first, then every `*.log` in name order). The reference is the one
given with --reference, for every device: a `reference.json` inside a device's directory sits next
to what the device sent and never replaces it (it is used only when no --reference is given, as
that directory's operator-made reference). One result line per device (OK / MISMATCH / UNVERIFIED
/ ERROR), then a summary whose "mismatch" counts every device with exit status 1. A bad device's
input is reported on its line (ERROR) and does not stop the others.
"""

from __future__ import annotations

import json
from pathlib import Path

from host_tools.verify.core import verify
from host_tools.verify.inputs import read_log, select_banks
from host_tools.verify.reference import InputError, Reference, load_pcrs, load_reference
from host_tools.verify.report import summary_line

FIRMWARE_LOG = "binary_bios_measurements"


def device_logs(device: Path) -> list[Path]:
    logs = []
    if (device / FIRMWARE_LOG).is_file():
        logs.append(device / FIRMWARE_LOG)
    logs.extend(sorted(p for p in device.glob("*.log") if p.is_file()))
    return logs


def verify_device(device: Path, reference: Reference | None, only: set[int] | None,
                  banks: set[str] | None = None) -> tuple[int, str, dict[str, object]]:
    try:
        paths = device_logs(device)
        if not paths:
            raise InputError("%s: no event logs" % device)
        logs = [read_log(p) for p in paths]
        actual = select_banks(load_pcrs(device / "pcrs.json"), banks, str(device / "pcrs.json"))
        ref = reference
        if ref is None and (device / "reference.json").is_file():
            ref = load_reference(device / "reference.json")
        report = verify(logs, actual, ref, only, banks)
    except InputError as e:
        return 2, "ERROR " + str(e), {"device": device.name, "result": "error", "error": str(e)}
    line = summary_line(report)
    obj = report.to_json()
    obj["device"] = device.name
    return (0 if report.ok else 1), line, obj


def verify_fleet(root: Path, reference: Reference | None, only: set[int] | None,
                 as_json: bool, banks: set[str] | None = None) -> tuple[int, str]:
    if not root.is_dir():
        raise InputError("%s: not a directory" % root)
    devices = sorted(p for p in root.iterdir() if p.is_dir())
    if not devices:
        raise InputError("%s: no device subdirectories" % root)
    out: list[str] = []
    counts = {0: 0, 1: 0, 2: 0}
    for device in devices:
        status, line, obj = verify_device(device, reference, only, banks)
        counts[status] += 1
        if as_json:
            out.append(json.dumps(obj, sort_keys=True))
        else:
            out.append("%s: %s" % (device.name, line))
    summary = {"devices": len(devices), "ok": counts[0], "mismatch": counts[1], "error": counts[2]}
    if as_json:
        out.append(json.dumps({"summary": summary}, sort_keys=True))
    else:
        out.append("summary: %(devices)d devices, %(ok)d ok, %(mismatch)d mismatch, "
                   "%(error)d error" % summary)
    return max(s for s in counts if counts[s]), "\n".join(out)
