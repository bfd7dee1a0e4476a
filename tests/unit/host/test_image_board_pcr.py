"""The board description's component register (board.json ``component_pcr``, issue 10 §6): the
image builder refuses a board whose register collides with one its boot chain uses, naming the PCR
and its owner, before it builds anything; the manifest, the prediction and the reference carry the
register from the board description."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from host_tools.image import build, bundle, predict

REPO = Path(__file__).resolve().parents[3]
BOARD = "qemu-x86_64"
DESC: dict[str, Any] = json.loads((REPO / "board" / BOARD / "board.json").read_text())


def _desc(**changes: object) -> dict[str, Any]:
    d = copy.deepcopy(DESC)
    d.update(changes)
    return d


def test_qemu_board_keeps_14_and_seals_to_it() -> None:
    assert DESC["component_pcr"] == 14
    assert build.component_pcr(DESC) == 14
    assert 14 in DESC["pcr_policy"]


@pytest.mark.parametrize("pcr,owner", [
    (0, "OVMF: firmware code"), (4, "OVMF: boot manager code"), (7, "OVMF: Secure Boot policy"),
    (9, "Linux EFI stub"), (10, "Linux IMA"), (11, "systemd-stub: UKI sections"),
    (12, "systemd-stub: command-line overrides"), (16, "debug: resettable"),
    (17, "DRTM"), (23, "application support: resettable")])
def test_colliding_register_is_refused_naming_pcr_and_owner(pcr: int, owner: str) -> None:
    policy = sorted(set(DESC["pcr_policy"]) | {pcr})
    with pytest.raises(build.BuildError) as e:
        build.component_pcr(_desc(component_pcr=pcr, pcr_policy=policy))
    msg = str(e.value)
    assert msg.startswith("board.json: 'component_pcr': "), msg
    assert f"component register PCR {pcr} collides with the boot chain" in msg, msg
    assert f"PCR {pcr} belongs to {owner}" in msg, msg


@pytest.mark.parametrize("value", [24, -1, "14", True, None])
def test_register_that_is_no_pcr_is_refused(value: object) -> None:
    with pytest.raises(build.BuildError, match="component_pcr"):
        build.component_pcr(_desc(component_pcr=value))


def test_register_left_out_of_the_sealing_policy_is_refused() -> None:
    with pytest.raises(build.BuildError) as e:
        build.component_pcr(_desc(component_pcr=15))
    assert str(e.value) == ("board.json: 'pcr_policy' [4, 7, 11, 12, 14] leaves out the component "
                            "register PCR 15: sealed credentials would not depend on the phone "
                            "software")
    assert build.component_pcr(_desc(component_pcr=15, pcr_policy=[4, 7, 11, 12, 15])) == 15


def test_build_refuses_a_colliding_board_before_building_anything(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "board" / BOARD, repo / "board" / BOARD)
    (repo / "board" / BOARD / "board.json").write_text(json.dumps(
        _desc(component_pcr=11, pcr_policy=[4, 7, 11, 12])))
    out = tmp_path / "out"
    with pytest.raises(build.BuildError, match=r"PCR 11 belongs to systemd-stub: UKI sections"):
        build.build(build.BuildOptions(board=BOARD, out=out, repo=repo, keys=tmp_path / "keys"))
    assert not out.exists() and not (tmp_path / "keys").exists()


def test_manifest_and_prediction_use_the_given_register() -> None:
    comps = [bundle.Component("phone-app", "1.0", b"app"), bundle.Component("ca", "1.0", b"ca")]
    man = json.loads(bundle.manifest(BOARD, "1.0", 2, comps, 15))
    assert [c["pcr"] for c in man["components"]] == [15, 15]
    with pytest.raises(ValueError, match="PCR 9 belongs to Linux EFI stub"):
        bundle.manifest(BOARD, "1.0", 2, comps, 9)
    events = predict.pcr14_events([(c.name, c.sha256) for c in comps], (BOARD, "1.0", 2), 15)
    assert {e.pcr for e in events} == {15}
    values = predict.pcr_values(events)
    assert 14 not in values
    want = b"\0" * 32
    for e in events:
        want = hashlib.sha256(want + e.digest).digest()
    assert values[15] == want
