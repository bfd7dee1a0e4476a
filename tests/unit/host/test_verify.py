"""python -m host_tools.verify on a real OVMF log (tests/data/ovmf-sha256, captured from OVMF
2022.11 + swtpm 0.7.1) plus a 20-component phone log written by firmware.eventlog.writer, and every
tampering we could think of: each must be caught and named."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from host_tools.verify.cli import main
from tests.unit.host.test_verify_support import (IMA_PCR, OVMF_SHA256, REPO, actual_pcrs,
                                                 components, phone_log, reference, write_device)

COMPS = components(20)


@pytest.fixture
def device(tmp_path: Path) -> dict[str, Path]:
    phone = phone_log(COMPS)
    pcrs = actual_pcrs(phone)
    return write_device(tmp_path / "dev", phone, pcrs, reference(COMPS, pcrs))


def run(capsys: pytest.CaptureFixture[str], paths: dict[str, Path], *extra: str,
        logs: tuple[str, ...] = ("firmware", "phone"), ref: bool = True) -> tuple[int, str, str]:
    argv: list[str] = []
    for name in logs:
        argv += ["--log", str(paths[name])]
    argv += ["--pcrs", str(paths["pcrs"])]
    if ref:
        argv += ["--reference", str(paths["reference"])]
    rc = main(argv + list(extra))
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys: pytest.CaptureFixture[str], paths: dict[str, Path]) -> tuple[int, Any]:
    rc, out, err = run(capsys, paths, "--json")
    assert err == ""
    return rc, json.loads(out)


def statuses(report: Any) -> dict[str, str]:
    return {e["name"]: e["status"] for e in report["events"]}


def test_untampered_device_passes(capsys: pytest.CaptureFixture[str],
                                  device: dict[str, Path]) -> None:
    rc, out, err = run(capsys, device)
    assert (rc, err) == (0, "")
    assert out.startswith("measured-boot verification: OK")
    assert "ok           component-19 1.19.0 [" in out
    rc, report = run_json(capsys, device)
    assert rc == 0 and report["result"] == "ok"
    assert set(statuses(report).values()) == {"ok"} and len(report["events"]) == 20
    p14 = [p for p in report["pcrs"] if p["pcr"] == 14][0]
    assert p14["replayed"] == p14["actual"] == p14["expected"]


def test_changed_digest_in_log_is_replay_mismatch(capsys: pytest.CaptureFixture[str],
                                                  device: dict[str, Path]) -> None:
    # The log claims a different component 3 than the one the TPM measured.
    forged = list(COMPS)
    forged[3] = ("component-03", "1.3.0", b"evil")
    device["phone"].write_bytes(phone_log(forged))
    rc, out, _ = run(capsys, device)
    assert rc == 1
    assert "replay does not match the TPM for PCRs: sha256:14" in out
    assert "REPLAY MISMATCH" in out and "UNVERIFIED" in out
    rc, report = run_json(capsys, device)
    assert report["replay_failed_pcrs"] == [14]
    ev = [e for e in report["events"] if e["name"] == "component-03"][0]
    assert ev["status"] == "differs" and ev["trusted"] is False


def test_different_component_booted_differs(capsys: pytest.CaptureFixture[str],
                                            device: dict[str, Path]) -> None:
    # Log and TPM agree (the device really ran another build of component 5): replay passes, the
    # reference comparison names the component, and PCR 14 differs from the expected value.
    booted = list(COMPS)
    booted[5] = ("component-05", "1.5.1", b"patched")
    phone = phone_log(booted)
    device["phone"].write_bytes(phone)
    device["pcrs"].write_text(json.dumps(actual_pcrs(phone)))
    rc, out, _ = run(capsys, device)
    assert rc == 1
    assert "differs      component-05 1.5.1" in out
    assert "version 1.5.1, reference 1.5.0" in out and "sha256 " in out
    assert "UNEXPECTED" in out and "REPLAY" not in out
    rc, report = run_json(capsys, device)
    assert statuses(report)["component-05"] == "differs"
    assert [p["pcr"] for p in report["pcrs"] if p["status"] == "unexpected"] == [14]


def test_dropped_event(capsys: pytest.CaptureFixture[str], device: dict[str, Path]) -> None:
    device["phone"].write_bytes(phone_log(COMPS[:7] + COMPS[8:]))
    rc, report = run_json(capsys, device)
    assert rc == 1 and report["replay_failed_pcrs"] == [14]
    assert statuses(report)["component-07"] == "missing"
    # consistent with the TPM (the component was really skipped): still missing, named
    phone = phone_log(COMPS[:7] + COMPS[8:])
    device["pcrs"].write_text(json.dumps(actual_pcrs(phone)))
    rc, out, _ = run(capsys, device)
    assert rc == 1 and "missing      component-07 1.7.0" in out and "not in any log" in out


def test_inserted_event(capsys: pytest.CaptureFixture[str], device: dict[str, Path]) -> None:
    phone = phone_log(COMPS[:4] + [("backdoor", "6.6.6", b"x")] + COMPS[4:])
    device["phone"].write_bytes(phone)
    device["pcrs"].write_text(json.dumps(actual_pcrs(phone)))
    rc, out, _ = run(capsys, device)
    assert rc == 1 and "extra        backdoor 6.6.6" in out and "not in the reference" in out
    rc, report = run_json(capsys, device)
    assert statuses(report)["backdoor"] == "extra"
    assert sum(1 for s in statuses(report).values() if s != "ok") == 1


def test_reordered_events(capsys: pytest.CaptureFixture[str], device: dict[str, Path]) -> None:
    swapped = list(COMPS)
    swapped[2], swapped[9] = swapped[9], swapped[2]
    device["phone"].write_bytes(phone_log(swapped))
    rc, report = run_json(capsys, device)
    assert rc == 1 and report["replay_failed_pcrs"] == [14]  # PCR order matters
    phone = phone_log(swapped)
    device["pcrs"].write_text(json.dumps(actual_pcrs(phone)))
    rc, report = run_json(capsys, device)
    assert rc == 1 and report["replay_failed_pcrs"] == []
    bad = {n: s for n, s in statuses(report).items() if s != "ok"}
    assert set(bad.values()) == {"out-of-order"}
    assert "component-02" in bad or "component-09" in bad


def test_measured_after_separator_and_unclosed(capsys: pytest.CaptureFixture[str],
                                              device: dict[str, Path]) -> None:
    phone = phone_log(COMPS)
    from firmware.eventlog.writer import measure_component

    _, late = measure_component("late", "1", b"late", ("sha256",))  # type: ignore[no-untyped-call]
    device["phone"].write_bytes(phone + late)
    device["pcrs"].write_text(json.dumps(actual_pcrs(phone + late)))
    rc, out, _ = run(capsys, device)
    assert rc == 1 and "measured after the separator in PCR 14" in out
    open_log = phone_log(COMPS, close=False)
    device["phone"].write_bytes(open_log)
    device["pcrs"].write_text(json.dumps(actual_pcrs(open_log)))
    rc, out, _ = run(capsys, device)
    assert rc == 1 and "PCR 14 not closed by EV_SEPARATOR" in out


def test_pcrs_not_matching_firmware_log(capsys: pytest.CaptureFixture[str],
                                        device: dict[str, Path]) -> None:
    pcrs = json.loads(device["pcrs"].read_text())
    pcrs["sha256"]["7"] = "11" * 32
    device["pcrs"].write_text(json.dumps(pcrs))
    rc, out, _ = run(capsys, device)
    assert rc == 1 and "sha256  7: REPLAY MISMATCH" in out
    assert "replay does not match the TPM for PCRs: sha256:7" in out


def test_changed_digest_in_firmware_log(capsys: pytest.CaptureFixture[str],
                                        device: dict[str, Path]) -> None:
    data = bytearray(device["firmware"].read_bytes())
    # the SecureBoot variable event (PCR 7): flip one byte of its sha256 digest
    from firmware.eventlog.parser import parse_log

    ev = parse_log(bytes(data)).events[3]  # type: ignore[no-untyped-call]
    pos = ev.offset + 12 + 2
    data[pos] ^= 1
    device["firmware"].write_bytes(bytes(data))
    rc, report = run_json(capsys, device)
    assert rc == 1 and report["replay_failed_pcrs"] == [7]
    claims = report["claimed_events"]["7"]
    assert [c["event"] for c in claims] == [4, 5, 6, 7, 8, 9]
    assert claims[0]["type"] == "EV_EFI_VARIABLE_DRIVER_CONFIG"
    rc, out, _ = run(capsys, device)
    assert "PCR 7: the logs claim 6 event(s), not supported by the TPM's value:" in out
    assert "event 4 EV_EFI_VARIABLE_DRIVER_CONFIG: variable 8be4df61-93ca-11d2-aa0d-00e098032b8c " \
        "SecureBoot (1 bytes)" in out


def test_unexplained_pcr(capsys: pytest.CaptureFixture[str], device: dict[str, Path]) -> None:
    # The real PCR 10 (IMA) is extended by nothing in these logs: reported, unless excluded.
    pcrs = json.loads(device["pcrs"].read_text())
    real = json.loads((OVMF_SHA256 / "pcrs.json").read_text())
    pcrs["sha256"][str(IMA_PCR)] = real["sha256"][str(IMA_PCR)]
    device["pcrs"].write_text(json.dumps(pcrs))
    rc, out, _ = run(capsys, device)
    assert rc == 1 and "sha256 10: UNEXPLAINED" in out
    only = ",".join(str(i) for i in range(24) if i != IMA_PCR)
    rc, out, _ = run(capsys, device, "--pcr-list", only)
    assert rc == 0


def test_phone_log_alone_leaves_firmware_pcrs_unexplained(capsys: pytest.CaptureFixture[str],
                                                          device: dict[str, Path]) -> None:
    rc, out, _ = run(capsys, device, logs=("phone",))
    assert rc == 1 and "sha256  4: UNEXPLAINED" in out
    rc, out, _ = run(capsys, device, "--pcr-list", "14", logs=("phone",))
    assert rc == 0, out


def _bad(capsys: pytest.CaptureFixture[str], paths: dict[str, Path], *extra: str) -> str:
    rc, out, err = run(capsys, paths, *extra)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("verify: error: ") and "Traceback" not in err
    return err


def test_wrong_bank_sha1_in_sha256_field(capsys: pytest.CaptureFixture[str],
                                         device: dict[str, Path]) -> None:
    # An event whose TPMT_HA says sha1 in a sha256-only log: the header did not declare it.
    data = bytearray(device["phone"].read_bytes())
    from firmware.eventlog.parser import parse_log

    ev = parse_log(bytes(data)).events[0]  # type: ignore[no-untyped-call]
    struct.pack_into("<H", data, ev.offset + 12, 0x0004)
    device["phone"].write_bytes(bytes(data))
    err = _bad(capsys, device)
    assert str(device["phone"]) in err and "not declared in the Spec ID header" in err
    assert "event[1].digests[0].hashAlg at offset %d" % (ev.offset + 12) in err


def test_wrong_bank_event_lists_bank_header_lacks(capsys: pytest.CaptureFixture[str],
                                                  device: dict[str, Path]) -> None:
    two = phone_log(COMPS, banks=("sha1", "sha256"))
    hdr_only = phone_log([], banks=("sha256",), close=False)
    from firmware.eventlog.parser import parse_log

    first = parse_log(two).events[0].offset  # type: ignore[no-untyped-call]
    device["phone"].write_bytes(hdr_only + two[first:])
    err = _bad(capsys, device)
    assert "event lists 2 digests but the Spec ID header declares 1 banks" in err


def test_forged_header(capsys: pytest.CaptureFixture[str], device: dict[str, Path]) -> None:
    data = bytearray(device["phone"].read_bytes())
    # Spec ID digestSizes[0] = {sha256, 32} -> claim 20 bytes
    struct.pack_into("<H", data, 32 + 24 + 4 + 2, 20)
    device["phone"].write_bytes(bytes(data))
    err = _bad(capsys, device)
    assert "digest size 20 contradicts sha256" in err and "SpecID.digestSizes[0]" in err


def test_truncated_log(capsys: pytest.CaptureFixture[str], device: dict[str, Path]) -> None:
    data = device["firmware"].read_bytes()
    device["firmware"].write_bytes(data[:-7])
    err = _bad(capsys, device)
    assert str(device["firmware"]) in err and "truncated" in err and "at offset" in err


def test_garbage_and_bad_files(capsys: pytest.CaptureFixture[str], device: dict[str, Path],
                               tmp_path: Path) -> None:
    device["phone"].write_bytes(b"\x89PNG\r\n" + b"\x00" * 100)
    assert "header.pcrIndex" in _bad(capsys, device)
    device["phone"].write_bytes(phone_log(COMPS))
    device["pcrs"].write_text("{not json")
    assert "not valid JSON" in _bad(capsys, device)
    device["pcrs"].write_text(json.dumps({"sha256": {"0": "zz"}}))
    assert "is not hex" in _bad(capsys, device)
    device["pcrs"].write_text(json.dumps({"sha256": {"0": "00" * 20}}))
    assert "must be 32 bytes" in _bad(capsys, device)
    device["pcrs"].write_text(json.dumps({"md5": {"0": "00" * 16}}))
    assert "unknown PCR bank" in _bad(capsys, device)
    device["pcrs"].write_text(json.dumps(actual_pcrs(phone_log(COMPS))))
    ref = json.loads(device["reference"].read_text())
    ref["schema_version"] = 99
    device["reference"].write_text(json.dumps(ref))
    assert "schema_version 99 not supported" in _bad(capsys, device)
    ref["schema_version"] = 1
    ref["components"][0]["sha256"] = "00"
    device["reference"].write_text(json.dumps(ref))
    assert "components[0].sha256 must be 32 bytes" in _bad(capsys, device)
    device["reference"].write_text(json.dumps(reference(COMPS)))
    device["phone"].unlink()
    assert "cannot read" in _bad(capsys, device)


def test_usage_errors(capsys: pytest.CaptureFixture[str], device: dict[str, Path]) -> None:
    assert main(["--pcrs", str(device["pcrs"])]) == 2
    assert "--log" in capsys.readouterr().err
    assert main(["--log", str(device["phone"])]) == 2
    assert "--pcrs FILE or --tpm URI" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage error" in err


def test_tpm_uri_without_server_is_input_error(capsys: pytest.CaptureFixture[str],
                                               device: dict[str, Path]) -> None:
    rc = main(["--log", str(device["phone"]), "--tpm", "swtpm:127.0.0.1:1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("verify: error: --tpm swtpm:127.0.0.1:1")


def test_module_entry_point(device: dict[str, Path]) -> None:
    cmd = [sys.executable, "-m", "host_tools.verify", "--log", str(device["firmware"]), "--log",
           str(device["phone"]), "--pcrs", str(device["pcrs"]), "--reference",
           str(device["reference"])]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    device["phone"].write_bytes(b"junk")
    bad = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and bad.stdout == "" and "Traceback" not in bad.stderr


def test_fleet_mode(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    phone = phone_log(COMPS)
    pcrs = actual_pcrs(phone)
    ref = reference(COMPS, pcrs)
    root = tmp_path / "fleet"
    write_device(root / "a-good", phone, pcrs, None)
    booted = list(COMPS)
    booted[1] = ("component-01", "9", b"other")
    other = phone_log(booted)
    write_device(root / "b-differs", other, actual_pcrs(other), None)
    write_device(root / "c-broken", b"garbage", pcrs, None)
    ref_path = tmp_path / "reference.json"
    ref_path.write_text(json.dumps(ref))
    rc = main(["--fleet", str(root), "--reference", str(ref_path)])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 2
    assert lines[0] == "a-good: OK"
    assert lines[1].startswith("b-differs: MISMATCH ") and "differs component-01 9" in lines[1]
    assert lines[2].startswith("c-broken: ERROR ") and "phone.log" in lines[2]
    assert lines[3] == "summary: 3 devices, 1 ok, 1 mismatch, 1 error"
    rc = main(["--fleet", str(root), "--reference", str(ref_path), "--json"])
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o.get("result") for o in objs[:3]] == ["ok", "mismatch", "error"]
    assert objs[3] == {"summary": {"devices": 3, "ok": 1, "mismatch": 1, "error": 1}}


def test_all_banks_and_bank_selection(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # tests/data/ovmf: swtpm with all four banks; a phone log with all four. A sha1 digest changed
    # in the firmware log is caught in the sha1 bank only; --banks sha256 compares sha256 alone.
    from tests.unit.host.test_verify_support import OVMF_ALL

    banks = ("sha1", "sha256", "sha384", "sha512")
    phone = phone_log(COMPS, banks)
    pcrs = actual_pcrs(phone, OVMF_ALL)
    firmware = bytearray((OVMF_ALL / "binary_bios_measurements").read_bytes())
    paths = write_device(tmp_path / "dev", phone, pcrs, reference(COMPS, pcrs), bytes(firmware))
    rc, report = run_json(capsys, paths)
    assert rc == 0 and {p["bank"] for p in report["pcrs"]} == set(banks)
    from firmware.eventlog.parser import parse_log

    ev = parse_log(bytes(firmware)).events[3]  # type: ignore[no-untyped-call]
    firmware[ev.offset + 12 + 2] ^= 0xFF  # first digest: sha1
    paths["firmware"].write_bytes(bytes(firmware))
    rc, out, _ = run(capsys, paths)
    assert rc == 1 and "replay does not match the TPM for PCRs: sha1:7 " in out
    rc, out, _ = run(capsys, paths, "--banks", "sha256")
    assert rc == 0, out
    # expected values of other banks in the reference are not compared under --banks either
    ref = json.loads(paths["reference"].read_text())
    ref["pcrs"]["sha1"] = {"7": "00" * 20}
    paths["reference"].write_text(json.dumps(ref))
    rc, out, _ = run(capsys, paths, "--banks", "sha256")
    assert rc == 0, out
    rc, out, err = run(capsys, paths, "--banks", "md5")
    assert rc == 2 and "--banks 'md5'" in err


def test_wrong_bank_sha1_value_in_sha256_slot(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    # A two-bank phone log where one event's sha256 slot holds the sha1 digest (zero-padded): it
    # parses (sizes come from the header) but cannot replay to the TPM's sha256 PCR 14.
    import hashlib

    from firmware.eventlog.parser import parse_log

    banks = ("sha1", "sha256")
    phone = phone_log(COMPS, banks)
    pcrs = actual_pcrs(phone)  # the sha256-only TPM: compares the sha256 bank
    paths = write_device(tmp_path / "dev", phone, pcrs, reference(COMPS, pcrs))
    ev = parse_log(phone).events[0]  # type: ignore[no-untyped-call]
    slot = ev.offset + 12 + 2 + 20 + 2
    data = bytearray(phone)
    assert bytes(data[slot:slot + 32]) == hashlib.sha256(COMPS[0][2]).digest()
    data[slot:slot + 32] = hashlib.sha1(COMPS[0][2]).digest() + b"\x00" * 12
    paths["phone"].write_bytes(bytes(data))
    rc, out, _ = run(capsys, paths)
    assert rc == 1 and "replay does not match the TPM for PCRs: sha256:14" in out
    assert "differs      component-00 1.0.0" in out and "UNVERIFIED" in out
    # the two TPMT_HA algorithm IDs swapped: sizes no longer line up with the header -> bad input
    data = bytearray(phone)
    struct.pack_into("<H", data, ev.offset + 12, 0x000B)
    struct.pack_into("<H", data, ev.offset + 12 + 2 + 20, 0x0004)
    paths["phone"].write_bytes(bytes(data))
    rc, out, err = run(capsys, paths)
    assert rc == 2 and str(paths["phone"]) in err and "at offset" in err


def test_reference_digest_in_unverified_bank(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    # Issue 9.3 in miniature (the attack on a real swtpm: tests/tpm/test_verify_bank_confusion.py):
    # the evil component-04's sha1 digest stays in the log, its sha256 digest is the reference's.
    # The sha1 replay equals the TPM's; the reference's sha256 digest is evidence of nothing.
    import hashlib

    from firmware.eventlog.parser import parse_log
    from tests.unit.host.test_verify_support import OVMF_ALL

    banks = ("sha1", "sha256", "sha384", "sha512")
    booted = list(COMPS)
    booted[4] = ("component-04", "1.4.0", b"evil")
    evil = phone_log(booted, banks)
    pcrs = actual_pcrs(evil, OVMF_ALL)
    ev = parse_log(evil).events[4]  # type: ignore[no-untyped-call]
    slot = ev.offset + 12 + 2 + 20 + 2  # the sha256 digest after the sha1 TPMT_HA
    forged = bytearray(evil)
    forged[slot:slot + 32] = hashlib.sha256(COMPS[4][2]).digest()
    good_pcrs = actual_pcrs(phone_log(COMPS, banks), OVMF_ALL)
    paths = write_device(tmp_path / "dev", bytes(forged), pcrs, reference(COMPS, good_pcrs),
                         (OVMF_ALL / "binary_bios_measurements").read_bytes())
    rc, out, _ = run(capsys, paths, "--banks", "sha1")
    assert rc == 1 and out.startswith("measured-boot verification: UNVERIFIED"), out
    assert "unverified   component-04 1.4.0" in out
    assert ("sha256 bank of PCR 14 not verified: --banks sha1 leaves it out" in out)
    # the reference's sha256 PCRs 4, 7, 14 are pinned by no compared bank: unverified, not dropped
    assert "sha256  4: UNVERIFIED" in out and "sha256 14: UNVERIFIED" in out
    rc, out, _ = run(capsys, paths, "--banks", "sha1", "--json")
    report = json.loads(out)
    assert rc == 1 and report["result"] == "unverified"
    assert [(p["bank"], p["pcr"]) for p in report["pcrs"] if p["status"] == "unverified"] == [
        ("sha256", 4), ("sha256", 7), ("sha256", 14)]
    assert set(statuses(report).values()) == {"unverified"}
    # a sha1-only PCR file (no --banks): the reference bank was not read
    only_sha1 = tmp_path / "sha1.json"
    only_sha1.write_text(json.dumps({"sha1": pcrs["sha1"]}))
    rc = main(["--log", str(paths["firmware"]), "--log", str(paths["phone"]), "--pcrs",
               str(only_sha1), "--reference", str(paths["reference"]), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 1 and statuses(report)["component-04"] == "unverified"
    assert ("sha256 bank of PCR 14 not verified: the PCR values have no sha256 bank (read: sha1)"
            in report["events"][4]["problems"][0])
    # every bank: the sha256 replay of PCR 14 fails; never ok
    rc, report = run_json(capsys, paths)
    assert rc == 1 and report["result"] == "mismatch" and report["replay_failed_pcrs"] == [14]
    ev4 = report["events"][4]
    assert (ev4["status"], ev4["trusted"]) == ("unverified", False)
    assert ev4["problems"][0].startswith("PCR 14 replay does not match the TPM (sha256:14 "
                                         "replay-mismatch")


def test_pcr_left_out_by_pcr_list_is_unverified(capsys: pytest.CaptureFixture[str],
                                                device: dict[str, Path]) -> None:
    rc, out, _ = run(capsys, device, "--pcr-list", "0,1,2,3,4,5,6,7")
    assert rc == 1 and out.startswith("measured-boot verification: UNVERIFIED"), out
    assert "unverified   component-00 1.0.0" in out
    assert "PCR 14 not checked against TPM values (not in --pcr-list)" in out


def test_fleet_device_reference_never_replaces_reference(capsys: pytest.CaptureFixture[str],
                                                         tmp_path: Path) -> None:
    # A device ran another component-01 and its directory carries a reference.json saying so.
    booted = list(COMPS)
    booted[1] = ("component-01", "9", b"other")
    other = phone_log(booted)
    root = tmp_path / "fleet"
    write_device(root / "dev", other, actual_pcrs(other), reference(booted))
    ref_path = tmp_path / "reference.json"
    ref_path.write_text(json.dumps(reference(COMPS)))
    rc = main(["--fleet", str(root), "--reference", str(ref_path)])
    out = capsys.readouterr().out
    assert rc == 1 and out.startswith("dev: MISMATCH ") and "differs component-01 9" in out
    # without --reference, the directory's reference.json is the reference (documented)
    rc = main(["--fleet", str(root)])
    assert rc == 0 and capsys.readouterr().out.startswith("dev: OK")
