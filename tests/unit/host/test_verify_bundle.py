"""The PCR 14 bundle event in the verifier: reference.json's "bundle" object is compared like a
component named "bundle" measured first, and a rollback (older bundle, byte-identical components)
is named as the bundle event differing with "version X, reference Y"."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from firmware.eventlog.writer import PhoneLog
from host_tools.image import predict
from host_tools.verify.reference import InputError, parse_reference
from tests.unit.host.test_verify import run, run_json, statuses
from tests.unit.host.test_verify_support import (actual_pcrs, components, reference,
                                                 write_device)

COMPS = components(4)
BOARD = "qemu-x86_64"


def bundle_phone_log(version: str, counter: int) -> bytes:
    log = PhoneLog(("sha256",))  # type: ignore[no-untyped-call]
    log.add_bundle(BOARD, version, counter)  # type: ignore[no-untyped-call]
    for name, ver, data in COMPS:
        log.add_component(name, ver, data)  # type: ignore[no-untyped-call]
    log.close()  # type: ignore[no-untyped-call]
    return bytes(log.to_bytes())  # type: ignore[no-untyped-call]


def bundle_reference(pcrs: dict[str, dict[str, str]], version: str, counter: int
                     ) -> dict[str, Any]:
    ref = reference(COMPS, pcrs)
    ref["bundle"] = {"board": BOARD, "bundle_version": version, "anti_rollback_counter": counter,
                     "pcr": 14, "sha256": hashlib.sha256(
                         predict.bundle_event_data(BOARD, version, counter)).hexdigest()}
    return ref


def test_bundle_event_matches_reference(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    phone = bundle_phone_log("0.2.0", 2)
    pcrs = actual_pcrs(phone)
    paths = write_device(tmp_path / "dev", phone, pcrs, bundle_reference(pcrs, "0.2.0", 2))
    rc, report = run_json(capsys, paths)
    assert rc == 0, report
    assert report["events"][0]["name"] == "bundle"
    assert report["events"][0]["version"] == "0.2.0 (anti-rollback counter 2, board qemu-x86_64)"


def test_rollback_names_the_bundle_event(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    # The device booted bundle 0.1.0 (counter 1) with the same component bytes as 0.2.0: the PCR
    # 14 replay is consistent, its value is not the reference's, and only the bundle event differs.
    phone = bundle_phone_log("0.1.0", 1)
    pcrs = actual_pcrs(phone)
    want = actual_pcrs(bundle_phone_log("0.2.0", 2))
    paths = write_device(tmp_path / "dev", phone, pcrs, bundle_reference(want, "0.2.0", 2))
    rc, report = run_json(capsys, paths)
    assert rc == 1
    assert [p["status"] for p in report["pcrs"] if p["pcr"] == 14] == ["unexpected"]
    st = statuses(report)
    assert st.pop("bundle") == "differs"
    assert set(st.values()) == {"ok"}
    ev = report["events"][0]
    assert ev["trusted"] is True
    assert ev["problems"][0] == ("version 0.1.0 (anti-rollback counter 1, board qemu-x86_64), "
                                 "reference 0.2.0 (anti-rollback counter 2, board qemu-x86_64)")
    rc, out, _ = run(capsys, paths)
    assert rc == 1 and "version 0.1.0 (anti-rollback counter 1" in out


def test_log_without_bundle_event_reports_it_missing(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    from tests.unit.host.test_verify_support import phone_log
    phone = phone_log(COMPS)
    pcrs = actual_pcrs(phone)
    paths = write_device(tmp_path / "dev", phone, pcrs, bundle_reference(pcrs, "0.2.0", 2))
    rc, report = run_json(capsys, paths)
    assert rc == 1 and statuses(report)["bundle"] == "missing"


def test_reference_bundle_object_is_checked() -> None:
    good = bundle_reference(actual_pcrs(bundle_phone_log("0.2.0", 2)), "0.2.0", 2)
    assert parse_reference(good, "ref").components[0].name == "bundle"
    for key, value, msg in (("anti_rollback_counter", -1, "'anti_rollback_counter' must be"),
                            ("anti_rollback_counter", True, "'anti_rollback_counter' must be"),
                            ("pcr", 24, "'pcr' must be"), ("board", "", "'board' must be"),
                            ("sha256", "00", "bundle.sha256 must be 32 bytes")):
        bad = json.loads(json.dumps(good))
        bad["bundle"][key] = value
        with pytest.raises(InputError, match=msg):
            parse_reference(bad, "ref")
    bad = json.loads(json.dumps(good))
    bad["components"][0]["name"] = "bundle"
    with pytest.raises(InputError, match="a component is named 'bundle' too"):
        parse_reference(bad, "ref")
