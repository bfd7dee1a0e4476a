"""Cross-checks of firmware.eventlog and the verifier against tpm2-tools 5.4 and a real swtpm.

`tpm2_eventlog` prints YAML-like text that is not valid YAML (e.g. "14 : 0x..."), so the few lines we
need are read with regular expressions."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, cast

import pytest

from firmware.eventlog import parser as _parser
from firmware.eventlog import replayer as _replayer
from firmware.eventlog import types as _types
from firmware.eventlog import writer as _writer
from host_tools.verify.cli import main

REPO = Path(__file__).resolve().parents[2]
parse_log = cast(Callable[[bytes], Any], _parser.parse_log)
replay = cast(Callable[[Any], dict[str, dict[int, bytes]]], _replayer.replay)
PhoneLog = cast(Callable[..., Any], _writer.PhoneLog)
event_type_name = cast(Callable[[int], str], _types.event_type_name)

pytestmark = pytest.mark.skipif(shutil.which("tpm2_eventlog") is None,
                                reason="tpm2-tools not installed (make deps)")

_EVENT = re.compile(r"^- EventNum: (\d+)$", re.M)
_FIELD = re.compile(r"^  (PCRIndex|EventType|EventSize): (\S+)$", re.M)
_DIGEST = re.compile(r'^  - AlgorithmId: (\w+)\n    Digest: "([0-9a-f]+)"$', re.M)
_BANK = re.compile(r"^  (\w+):$")
_PCR = re.compile(r"^    (\d+)\s*: 0x([0-9a-fA-F]+)$")


def tpm2_eventlog(path: Path) -> tuple[list[dict[str, Any]], dict[str, dict[int, bytes]]]:
    out = subprocess.run(["tpm2_eventlog", str(path)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    body, _, pcr_text = out.partition("\npcrs:\n")
    starts = [m.start() for m in _EVENT.finditer(body)] + [len(body)]
    events = []
    for a, b in zip(starts, starts[1:]):
        chunk = body[a:b]
        num = _EVENT.match(chunk)
        assert num is not None
        fields = dict(_FIELD.findall(chunk))
        events.append({"number": int(num.group(1)), "pcr": int(fields["PCRIndex"]),
                       "type": fields["EventType"], "size": int(fields["EventSize"]),
                       "digests": {alg: bytes.fromhex(d) for alg, d in _DIGEST.findall(chunk)}})
    pcrs: dict[str, dict[int, bytes]] = {}
    bank = None
    for line in pcr_text.splitlines():
        m = _BANK.match(line)
        if m:
            bank = m.group(1)
            pcrs[bank] = {}
            continue
        m = _PCR.match(line)
        if m and bank is not None:
            pcrs[bank][int(m.group(1))] = bytes.fromhex(m.group(2))
    return events, pcrs


def check_same_as_tpm2_tools(path: Path) -> int:
    theirs, their_pcrs = tpm2_eventlog(path)
    log = parse_log(path.read_bytes())
    assert theirs[0]["number"] == 0 and theirs[0]["type"] == "EV_NO_ACTION"  # Spec ID header
    assert len(theirs) == len(log.events) + 1
    for t, ev in zip(theirs[1:], log.events):
        assert (t["number"], t["pcr"], t["type"], t["size"]) == (
            ev.number, ev.pcr, event_type_name(ev.type), len(ev.data))
        assert t["digests"] == ev.digests
    mine = replay(log)
    assert set(their_pcrs) == set(log.header.banks)
    for bank, values in their_pcrs.items():
        assert values, bank
        for index, value in values.items():
            assert mine[bank][index] == value, (bank, index)
    return len(theirs)


def phone_log_bytes(banks: tuple[str, ...], n: int = 20) -> tuple[bytes, list[dict[str, Any]]]:
    log = PhoneLog(banks)
    extends = []
    for i in range(n):
        extends.append(log.add_component("component-%02d" % i, "1.%d" % i, b"blob %d" % i))
    extends.append(log.close())
    return bytes(log.to_bytes()), extends


@pytest.mark.parametrize("banks", [("sha256",), ("sha1", "sha256", "sha384", "sha512")])
def test_phone_log_same_in_tpm2_eventlog(tmp_path: Path, banks: tuple[str, ...]) -> None:
    data, _ = phone_log_bytes(banks)
    path = tmp_path / "phone.log"
    path.write_bytes(data)
    assert check_same_as_tpm2_tools(path) == 22
    theirs, _ = tpm2_eventlog(path)
    assert [e["type"] for e in theirs[1:]] == ["EV_EVENT_TAG"] * 20 + ["EV_SEPARATOR"]
    assert {e["pcr"] for e in theirs[1:]} == {14}


@pytest.mark.parametrize("name", ["ovmf", "ovmf-sha256"])
def test_ovmf_log_same_in_tpm2_eventlog(name: str) -> None:
    # captured from OVMF 2022.11 + swtpm 0.7.1 (tests/data/<name>/README.md)
    path = REPO / "tests/data" / name / "binary_bios_measurements"
    assert check_same_as_tpm2_tools(path) == 25


def test_verifier_reads_real_swtpm(fresh_swtpm: Any, tmp_path: Path) -> None:
    """The stage loader's flow on a real TPM: extend each component's digests into PCR 14 while
    writing the log; the verifier then reads the PCRs itself (--tpm) and replays the log."""
    from firmware.tpm.client import Tpm
    from firmware.tpm.transport import open_uri

    transport = open_uri(fresh_swtpm.uri)  # type: ignore[no-untyped-call]
    try:
        tpm = Tpm(transport)  # type: ignore[no-untyped-call]
        allocated = tpm.pcr_banks()  # type: ignore[no-untyped-call]
        banks = tuple(b for b in ("sha1", "sha256", "sha384", "sha512") if b in allocated)
        data, extends = phone_log_bytes(banks)
        for digests in extends:
            tpm.pcr_extend(14, digests)  # type: ignore[no-untyped-call]
    finally:
        transport.close()
    path = tmp_path / "phone.log"
    path.write_bytes(data)
    # tpm2_pcrread sees what our replay computes
    pcrread = subprocess.run(["tpm2_pcrread", "-T", fresh_swtpm.tcti, "sha256:14"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    m = re.search(r"14\s*: 0x([0-9A-Fa-f]+)", pcrread)
    assert m is not None
    assert bytes.fromhex(m.group(1)) == replay(parse_log(data))["sha256"][14]
    assert main(["--log", str(path), "--tpm", fresh_swtpm.uri]) == 0
    # one more extend the log does not record: the replay no longer explains PCR 14
    transport = open_uri(fresh_swtpm.uri)  # type: ignore[no-untyped-call]
    try:
        tpm = Tpm(transport)  # type: ignore[no-untyped-call]
        tpm.pcr_extend(14, {"sha256": b"\x01" * 32})  # type: ignore[no-untyped-call]
    finally:
        transport.close()
    out = tmp_path / "out.json"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["--log", str(path), "--tpm", fresh_swtpm.uri, "--json"])
    out.write_text(buf.getvalue())
    report = json.loads(out.read_text())
    assert rc == 1 and report["replay_failed_pcrs"] == [14]
