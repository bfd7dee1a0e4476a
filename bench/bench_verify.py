"""Verifier benchmarks (docs/BENCHMARKS.md, section "Verifier").

(a) Full verifications per second in one process (one core): parse + replay + compare with the
    reference, of the real OVMF log (tests/data/ovmf-sha256: a provisioned swtpm with the sha256
    bank; and tests/data/ovmf: all four banks) plus a 20-component phone log from our writer.
(b) A fleet of 1,000 devices (a copy of the real firmware log and a phone log each, every tenth
    device running a different component build) checked by ONE `python -m host_tools.verify
    --fleet` run, against `tpm2_eventlog` run once per log on the same files; ratio of wall times.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, cast

from firmware.eventlog import parser as _parser
from firmware.eventlog import replayer as _replayer
from firmware.eventlog import writer as _writer
from host_tools.verify.core import verify_bytes
from host_tools.verify.reference import parse_pcr_values, parse_reference

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
IMA_PCR = 10  # extended by the kernel's IMA, not by the firmware log: left out of pcrs.json
DEVICES = 1000
PhoneLog = cast(Callable[..., Any], _writer.PhoneLog)
parse_log = cast(Callable[[bytes], Any], _parser.parse_log)
replay = cast(Callable[[Any], dict[str, dict[int, bytes]]], _replayer.replay)


def components(variant: int = 0) -> list[tuple[str, str, bytes]]:
    comps = [("component-%02d" % i, "1.%d.0" % i, b"component %d build" % i) for i in range(20)]
    if variant:
        comps[variant % 20] = ("component-%02d" % (variant % 20), "1.%d.%d" % (variant % 20, variant),
                               b"other build %d" % variant)
    return comps


def phone_log(comps: list[tuple[str, str, bytes]], banks: tuple[str, ...]) -> bytes:
    log = PhoneLog(banks)
    for name, version, data in comps:
        log.add_component(name, version, data)
    log.close()
    return bytes(log.to_bytes())


def device_pcrs(base: Path, phone: bytes) -> dict[str, dict[str, str]]:
    """The captured PCRs of `base`, with PCR 14 as the TPM would hold it after the phone's extends."""
    pcrs: dict[str, dict[str, str]] = json.loads((base / "pcrs.json").read_text())
    for bank, replayed in replay(parse_log(phone)).items():
        pcrs[bank]["14"] = replayed[14].hex()
    for values in pcrs.values():
        values.pop(str(IMA_PCR), None)
    return pcrs


def reference(comps: list[tuple[str, str, bytes]], pcrs: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {"schema_version": 1, "board": "qemu-x86_64", "image_version": "bench",
            "components": [{"name": n, "version": v, "sha256": hashlib.sha256(d).hexdigest(),
                            "pcr": 14} for n, v, d in comps],
            "pcrs": {"sha256": {k: pcrs["sha256"][k] for k in ("0", "4", "7", "14")}}}


def in_process(base: Path, seconds: float = 3.0, only_bank: str | None = None
               ) -> tuple[float, int]:
    """Best rate of verify_bytes() on one core; `only_bank` compares that bank alone, as
    `--banks` does (the logs still carry every bank and are parsed whole)."""
    banks = tuple(json.loads((base / "pcrs.json").read_text()))
    comps = components()
    phone = phone_log(comps, banks)
    pcrs = device_pcrs(base, phone)
    ref = parse_reference(reference(comps, pcrs), "reference")
    actual = parse_pcr_values(pcrs, "pcrs")
    if only_bank is not None:
        actual = {only_bank: actual[only_bank]}
    logs = [("binary_bios_measurements", (base / "binary_bios_measurements").read_bytes()),
            ("phone.log", phone)]
    report = verify_bytes(logs, actual, ref)
    if not report.ok:
        raise SystemExit("bench set-up error: the untampered device does not verify")
    n_events = sum(len(parse_log(d).events) for _, d in logs)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:  # best of several 0.3 s rounds: least disturbed by others
        count = 0
        start = time.perf_counter()
        while time.perf_counter() - start < 0.3:
            for _ in range(100):
                verify_bytes(logs, actual, ref)
            count += 100
        best = max(best, count / (time.perf_counter() - start))
    return best, n_events


def make_fleet(root: Path, base: Path, devices: int) -> Path:
    banks = tuple(json.loads((base / "pcrs.json").read_text()))
    firmware = (base / "binary_bios_measurements").read_bytes()
    good = components()
    for i in range(devices):
        variant = i if i % 10 == 9 else 0
        phone = phone_log(components(variant), banks)
        d = root / ("device-%04d" % i)
        d.mkdir()
        (d / "binary_bios_measurements").write_bytes(firmware)
        (d / "phone.log").write_bytes(phone)
        (d / "pcrs.json").write_text(json.dumps(device_pcrs(base, phone)))
    ref = root.parent / "reference.json"
    ref.write_text(json.dumps(reference(good, device_pcrs(base, phone_log(good, banks)))))
    return ref


def fleet(base: Path, devices: int = DEVICES) -> dict[str, float]:
    tool = shutil.which("tpm2_eventlog")
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp) / "fleet"
        root.mkdir()
        ref = make_fleet(root, base, devices)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        cmd = [sys.executable, "-m", "host_tools.verify", "--fleet", str(root), "--reference",
               str(ref)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        ours = time.perf_counter() - start
        lines = proc.stdout.splitlines()
        summary = lines[-1] if lines else proc.stderr.strip()
        expected = "summary: %d devices, %d ok, %d mismatch, 0 error" % (
            devices, devices - devices // 10, devices // 10)
        if proc.returncode != 1 or summary != expected:
            raise SystemExit("bench fleet: unexpected verifier result %d %r" % (
                proc.returncode, summary))
        result = {"devices": devices, "verifier_s": ours}
        if tool is None:
            print("  tpm2_eventlog not installed: no ratio")
            return result
        logs = sorted(root.glob("*/binary_bios_measurements")) + sorted(root.glob("*/phone.log"))
        start = time.perf_counter()
        for path in logs:
            subprocess.run([tool, str(path)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True, timeout=60)
        theirs = time.perf_counter() - start
        result.update({"tpm2_eventlog_s": theirs, "tpm2_eventlog_runs": len(logs),
                       "ratio": theirs / ours})
        return result


def main() -> int:
    for name, only_bank in (("ovmf-sha256", None), ("ovmf", None), ("ovmf", "sha256")):
        base = DATA / name
        rate, n_events = in_process(base, only_bank=only_bank)
        what = "%s log%s" % (name, "" if only_bank is None else " (--banks %s)" % only_bank)
        print("  in-process full verification, %s + 20-component phone log (%d events): "
              "%.0f verifications/s on one core (%.1f us each)" % (what, n_events, rate,
                                                                  1e6 / rate))
    r = fleet(DATA / "ovmf-sha256")
    line = "  fleet of %d devices (ovmf-sha256 + phone log each): verifier --fleet %.2f s" % (
        r["devices"], r["verifier_s"])
    if "ratio" in r:
        line += "; tpm2_eventlog x%d runs %.2f s; ratio %.1fx" % (
            r["tpm2_eventlog_runs"], r["tpm2_eventlog_s"], r["ratio"])
    print(line)
    return 0
