"""Secure Boot cost (docs/BENCHMARKS.md, "Secure Boot"), QEMU TCG only: seconds from QEMU start
to the phone console's first prompt for the built image, with Secure Boot on (the board's
default: OVMF_CODE_4M.secboot.fd, SMM, the vendor's keys enrolled, signed UKI) and off (plain
OVMF_CODE_4M.fd, no keys; the same disk). Runs alternate on, off, on, off, ... (RUNS each) so load
from other jobs hits both alike; medians are compared. Fresh throwaway devices under a temp dir.
The unprovisioned phone does not unseal in either mode, so the two do the same work after the
firmware."""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.bench_boot import BOARD, REPO, booted_phone, ensure_image

RUNS = 3


def time_to_prompt(name: str, build_dir: Path, devices: Path, secure_boot: bool) -> tuple[float, float]:
    """(seconds from QEMU start to the prompt, guest uptime at the prompt)."""
    with booted_phone(name, build_dir, devices, secure_boot) as (elapsed, con):
        up = float(con.json_command("mem")["uptime_s"])
    return elapsed, up


def main() -> dict[str, Any]:
    build_dir = REPO / "build" / BOARD
    ensure_image(build_dir)
    res: dict[str, list[float]] = {"on": [], "off": [], "on_uptime": [], "off_uptime": []}
    with tempfile.TemporaryDirectory(prefix="bench-sb-") as tmp:
        devices = Path(tmp) / "devices"
        for i in range(RUNS):
            for mode in ("on", "off"):
                t, up = time_to_prompt("sb-%s%d" % (mode, i), build_dir, devices, mode == "on")
                res[mode].append(t)
                res[mode + "_uptime"].append(up)
                print("Secure Boot %-3s run %d: prompt after %.2f s (guest uptime %.2f s: %.2f s "
                      "before the kernel)" % (mode, i + 1, t, up, t - up), flush=True)
    on, off = statistics.median(res["on"]), statistics.median(res["off"])
    print("median to prompt: Secure Boot on %.2f s, off %.2f s, difference %+.2f s (%.2fx)"
          % (on, off, on - off, on / off), flush=True)
    result: dict[str, Any] = dict(res, on_median_s=on, off_median_s=off)
    print(json.dumps(result, sort_keys=True))
    return result
