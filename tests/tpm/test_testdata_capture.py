"""The committed OVMF + swtpm measured-boot vectors are self-consistent.

tests/data/ovmf/         all four PCR banks (empty swtpm state)
tests/data/ovmf-sha256/  sha256 bank only (swtpm_setup, like a provisioned device)

Regenerate with ``python3 -m host_tools.testdata --out tests/data/ovmf``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from host_tools.testdata import (  # noqa: E402
    KERNEL_APPEND,
    EventSummary,
    check_replay,
    run_tpm2_eventlog,
)

DATA = ROOT / "tests" / "data"
VARIANTS = {"ovmf": ["sha1", "sha256", "sha384", "sha512"], "ovmf-sha256": ["sha256"]}
DIGEST_SIZE = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
ALG_ID = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}
# PCRs that OVMF + the Linux EFI stub extend (and log) on a direct kernel boot.
LOGGED_PCRS = {0, 1, 2, 3, 4, 5, 6, 7, 9}
# PCR 10: the kernel's IMA extends boot_aggregate, which is not in the firmware log.
UNLOGGED_BUT_EXTENDED = {10}


def _pcrs(variant: str) -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads((DATA / variant / "pcrs.json").read_text())
    return data


def _log(variant: str) -> Path:
    return DATA / variant / "binary_bios_measurements"


def _spec_id_banks(log: bytes) -> list[str]:
    """Banks listed in the TCG_EfiSpecIDEvent that starts a crypto-agile log."""
    pcr, etype = struct.unpack_from("<II", log, 0)
    assert (pcr, etype) == (0, 3), "first event must be EV_NO_ACTION in PCR 0"
    (size,) = struct.unpack_from("<I", log, 28)
    ev = log[32:32 + size]
    assert ev[:16] == b"Spec ID Event03\0"
    (n,) = struct.unpack_from("<I", ev, 24)
    banks = []
    for i in range(n):
        alg, dsize = struct.unpack_from("<HH", ev, 28 + 4 * i)
        banks.append(ALG_ID[alg])
        assert DIGEST_SIZE[ALG_ID[alg]] == dsize
    return banks


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_files_present_and_small(variant: str) -> None:
    d = DATA / variant
    for name in ("binary_bios_measurements", "pcrs.json", "README.md"):
        assert (d / name).is_file(), f"{d / name} missing"
    assert 1000 < _log(variant).stat().st_size < 64 * 1024


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pcrs_json_shape(variant: str) -> None:
    pcrs = _pcrs(variant)
    assert sorted(pcrs) == sorted(VARIANTS[variant])
    for bank, vals in pcrs.items():
        assert sorted(vals, key=int) == [str(i) for i in range(24)]
        for v in vals.values():
            assert len(v) == 2 * DIGEST_SIZE[bank] and v == v.lower()
            bytes.fromhex(v)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_spec_id_header_lists_the_active_banks(variant: str) -> None:
    assert sorted(_spec_id_banks(_log(variant).read_bytes())) == sorted(VARIANTS[variant])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_tpm2_eventlog_replay_equals_captured_pcrs(variant: str) -> None:
    report = run_tpm2_eventlog(_log(variant))
    pcrs = _pcrs(variant)
    assert check_replay(report, pcrs, "sha256") == []
    # every bank was replayed, and it covered the PCRs the firmware logs
    assert sorted(report.pcrs) == sorted(pcrs)
    for bank in pcrs:
        assert set(report.pcrs[bank]) == LOGGED_PCRS
        assert len(report.pcrs[bank]) > 0


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pcrs_outside_the_log_hold_reset_values(variant: str) -> None:
    for bank, vals in _pcrs(variant).items():
        size = DIGEST_SIZE[bank]
        for i in range(24):
            if i in LOGGED_PCRS or i in UNLOGGED_BUT_EXTENDED:
                continue
            reset = "ff" * size if 17 <= i <= 22 else "00" * size
            assert vals[str(i)] == reset, f"{bank} PCR {i}"
        assert vals["10"] != "00" * size  # IMA boot_aggregate


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_readme_describes_this_log(variant: str) -> None:
    readme = (DATA / variant / "README.md").read_text()
    assert hashlib.sha256(_log(variant).read_bytes()).hexdigest() in readme
    assert "python3 -m host_tools.testdata" in readme
    assert "qemu-system-x86_64" in readme


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pcr9_is_load_options_then_initrd(variant: str) -> None:
    """The Linux EFI stub's PCR 9 events: the load options OVMF passed, then the initrd."""
    readme = (DATA / variant / "README.md").read_text()
    m = re.search(r"Initramfs:.*?sha256 `([0-9a-f]{64})`", readme, re.S)
    assert m, "README does not record the initramfs digest"
    options = KERNEL_APPEND + " initrd=initrd"  # OVMF appends initrd=initrd to -append
    want = [hashlib.sha256((options + "\0").encode("utf-16-le")).hexdigest(), m.group(1)]
    assert run_tpm2_eventlog(_log(variant)).event_digests(9, "sha256") == want


def test_sha256_only_variant_has_same_sha256_measurements() -> None:
    """Activating fewer banks changes the log's encoding, not what is measured."""
    full = run_tpm2_eventlog(_log("ovmf"))
    small = run_tpm2_eventlog(_log("ovmf-sha256"))
    assert full.events == small.events
    assert full.pcrs["sha256"] == small.pcrs["sha256"]
    assert _pcrs("ovmf")["sha256"] == _pcrs("ovmf-sha256")["sha256"]


def _structure(events: list[EventSummary]) -> list[tuple[int, str]]:
    return [(e.pcr, e.event_type) for e in events]


@pytest.mark.slow
def test_fresh_capture_has_the_committed_structure(tmp_path: Path) -> None:
    """Boot OVMF + swtpm again (about 2 x 7-8 s under TCG) and compare with the vectors.

    The event structure (types and PCR indices, in order) must be the same.
    Digests and PCR values only change when OVMF, the kernel, QEMU or the
    initramfs change; with the same packages the capture is byte-identical,
    which is reported (not asserted) so a package update alone does not fail.
    """
    out = tmp_path / "ovmf"
    proc = subprocess.run(
        [sys.executable, "-m", "host_tools.testdata", "--out", str(out),
         "--cache", str(ROOT / "build" / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    for variant in VARIANTS:
        fresh = tmp_path / variant
        committed = run_tpm2_eventlog(_log(variant))
        new = run_tpm2_eventlog(fresh / "binary_bios_measurements")
        assert _structure(new.events) == _structure(committed.events)
        assert sorted(json.loads((fresh / "pcrs.json").read_text())) == VARIANTS[variant]
        same = (fresh / "binary_bios_measurements").read_bytes() == _log(variant).read_bytes()
        print(f"{variant}: fresh log byte-identical to committed: {same}")
