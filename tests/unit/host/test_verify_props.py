"""Property tests over the verifier's input handling: any JSON for reference.json or pcrs.json and
any bytes as a log give InputError (exit 2 with one line) or a verdict, never another exception."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host_tools.verify.core import parse_named, verify
from host_tools.verify.reference import InputError, parse_pcr_values, parse_reference
from tests.unit.host.test_verify_support import actual_pcrs, components, phone_log, reference

SETTINGS = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
COMPS = components(3)
PHONE = phone_log(COMPS)
GOOD_PCRS = actual_pcrs(PHONE)
GOOD_REF = reference(COMPS, GOOD_PCRS)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 300) | st.text(max_size=70) |
    st.sampled_from(["00" * 32, "sha256", "14", "0x" + "ab" * 32]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["schema_version", "board", "image_version", "components", "pcrs",
                         "name", "version", "sha256", "pcr", "sha1", "0", "14", "24", "x",
                         "\u00b3", "\u0663", "-1", " 1"]),
        inner, max_size=6),
    max_leaves=25)


@SETTINGS
@given(json_values)
def test_reference_any_json(obj: Any) -> None:
    try:
        parse_reference(obj, "ref.json")
    except InputError as e:
        assert str(e).startswith("ref.json") and "\n" not in str(e)


@SETTINGS
@given(json_values)
def test_pcrs_any_json(obj: Any) -> None:
    try:
        parse_pcr_values(obj, "pcrs.json")
    except InputError as e:
        assert str(e).startswith("pcrs.json")


@SETTINGS
@given(st.sampled_from(["components", "pcrs"]), st.data())
def test_mutated_reference(key: str, data: st.DataObject) -> None:
    ref = json.loads(json.dumps(GOOD_REF))
    ref[key] = data.draw(json_values)
    try:
        parsed = parse_reference(ref, "ref.json")
    except InputError:
        return
    actual = parse_pcr_values(GOOD_PCRS, "pcrs.json")
    verify([parse_named("phone.log", PHONE)], actual, parsed, {14})


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_as_log(data: bytes) -> None:
    actual = parse_pcr_values(GOOD_PCRS, "pcrs.json")
    ref = parse_reference(GOOD_REF, "ref.json")
    try:
        report = verify([parse_named("x.log", data)], actual, ref)
    except InputError as e:
        assert str(e).startswith("x.log")
        return
    assert not report.ok  # random bytes never explain the real PCRs


def test_good_inputs_verify(tmp_path: Path) -> None:
    actual = parse_pcr_values(GOOD_PCRS, "pcrs.json")
    report = verify([parse_named("phone.log", PHONE)], actual, parse_reference(GOOD_REF, "r"),
                    {14})
    assert report.ok


def test_reference_with_empty_bank() -> None:
    # found by test_mutated_reference: a bank with no PCRs must not crash the comparison
    ref = json.loads(json.dumps(GOOD_REF))
    ref["pcrs"] = {"sha1": {}}
    actual = parse_pcr_values(GOOD_PCRS, "pcrs.json")
    report = verify([parse_named("phone.log", PHONE)], actual, parse_reference(ref, "r"), {14})
    assert report.ok
