"""host_tools.update.bundle_ref: after an SMP update the device runs the installed UKI with the new
bundle, so the reference to sign a PCR policy for keeps every register but the component one from
the installed image and takes that one (events and predicted value) from the new build."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from host_tools.update.bundle_ref import BundleRefError, bundle_update_reference


def _ref(version: str, counter: int, tag: str) -> dict[str, Any]:
    return {"schema_version": 1, "board": "qemu-x86_64", "pcr_policy": [4, 11, 14],
            "image_version": version, "bundle_version": version, "anti_rollback_counter": counter,
            "bundle": {"pcr": 14, "bundle_version": version, "anti_rollback_counter": counter},
            "components": [{"name": "phone-app", "version": version}],
            "events": [{"pcr": 4, "digest": tag + "4"}, {"pcr": 11, "digest": tag + "11"},
                       {"pcr": 14, "digest": tag + "14"}],
            "pcrs": {"sha256": {"4": tag + "P4", "11": tag + "P11", "14": tag + "P14"}}}


def test_keeps_the_installed_uki_and_takes_the_new_bundle() -> None:
    old, new = _ref("0.1.0", 1, "old"), _ref("0.2.0", 2, "new")
    out = bundle_update_reference(old, new)
    assert [e["digest"] for e in out["events"]] == ["old4", "old11", "new14"]
    assert out["pcrs"]["sha256"] == {"4": "oldP4", "11": "oldP11", "14": "newP14"}
    assert (out["image_version"], out["anti_rollback_counter"]) == ("0.2.0", 2)
    assert out["components"] == new["components"] and out["bundle"] == new["bundle"]
    assert old == _ref("0.1.0", 1, "old")  # inputs untouched


@pytest.mark.parametrize("field,value,why", [
    ("board", "qemu-aarch64", "board differs"),
    ("pcr_policy", [4, 14], "pcr_policy differs"),
])
def test_refuses_another_board_or_policy(field: str, value: Any, why: str) -> None:
    new = copy.deepcopy(_ref("0.2.0", 2, "new"))
    new[field] = value
    with pytest.raises(BundleRefError, match=why):
        bundle_update_reference(_ref("0.1.0", 1, "old"), new)
