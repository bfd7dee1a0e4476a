# mypy: disable-error-code="no-untyped-call"
"""The signed PCR policy file (host_tools/update/policy_file.py) and the device's checks of it
(firmware/secrets/policy_entry.py), with the real ECDSA verification (cryptography) standing where
the broker asks the TPM (tests/tpm/test_broker_policy.py runs the TPM's); the store rewrite
through its journal copy (firmware/secrets/store_write.py, the broker's: CPython), including a
crash in the middle of each of its two writes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.secrets import policy_entry as PE
from firmware.secrets import store, store_write
from host_tools.provision import _fw, reference
from host_tools.provision.core import POLICY_REF, signed_entry
from host_tools.update import policy_file, policy_key
from tests.tpm import test_secrets_support as S

KEY = ec.generate_private_key(ec.SECP256R1())
V1 = reference.parse(S.make_reference())
V2 = reference.parse(S.make_reference("2.0.0", 2, app="phone-app code v2"))


def _meta() -> dict[str, Any]:
    """A store as provisioning writes it in authorized mode (objects: shape only, no TPM here)."""
    nv_name = _fw.rollback_written_name(_fw.ROLLBACK_INDEX)
    first = policy_file.build(V1, KEY)["entry"]
    return _fw.validate({
        "format": 1, "board": V1.board, "created": S.CREATED, "image_version": V1.image_version,
        "pcr_bank": V1.bank, "pcrs": V1.pcrs, "expected": first["expected"],
        "components": first["components"], "policy": _fw.POLICY_AUTHORIZED,
        "authorized": {"key": policy_key.tpm_public(KEY).hex(), "policy_ref": POLICY_REF.hex(),
                       "nv_index": _fw.ROLLBACK_INDEX, "nv_name": nv_name.hex(), "signed": [first]},
        "objects": [{"name": "sip-account", "pin": False, "public": "0008", "private": "00"}]})


def _verify(key_public: bytes, approved: bytes, ref: bytes, r: bytes, s: bytes) -> bool:
    assert key_public == policy_key.tpm_public(KEY)  # the store's key, as the broker loads it
    return policy_key.verify(KEY.public_key(), approved, ref, r, s)


def test_the_file_is_what_the_store_path_would_sign_for_any_device() -> None:
    doc = policy_file.build(V2, KEY)
    # the same signed entry host_tools.update makes from a device's store (make_entry signs with
    # the store's nv_name): only the NV index's Name enters it, the same on every device
    meta = _meta()
    want = signed_entry(KEY, V2, bytes.fromhex(meta["authorized"]["nv_name"]))
    assert {k: v for k, v in doc["entry"].items() if k not in ("r", "s")} == \
        {k: v for k, v in want.items() if k not in ("r", "s")}
    assert policy_file.device_name(doc) == "/policy/2.0.0.json"
    new = PE.check(meta, PE.parse(policy_file.dumps(doc)), _verify)
    assert [s["anti_rollback"] for s in new["authorized"]["signed"]] == [1, 2]
    assert new["image_version"] == "2.0.0" and new["expected"] == doc["entry"]["expected"]
    assert new["objects"] == meta["objects"] and new["authorized"]["key"] == meta["authorized"]["key"]


def test_the_same_version_again_replaces_its_entry() -> None:
    meta = PE.check(_meta(), policy_file.build(V2, KEY), _verify)
    again = PE.check(meta, policy_file.build(V2, KEY), _verify)
    assert [s["anti_rollback"] for s in again["authorized"]["signed"]] == [1, 2]


@pytest.mark.parametrize("change,why", [
    (lambda d, m: m.update(policy="pcr"), "sealed with policy 'pcr'"),
    (lambda d, m: d.update(pcrs=[4, 7, 11, 14]), "policy seals PCRs [4, 7, 11, 14] (sha256)"),
    (lambda d, m: d.update(policy_ref="00"), "another policyRef"),
    (lambda d, m: d.update(key=policy_key.tpm_public(ec.generate_private_key(ec.SECP256R1())).hex()),
     "signed for another policy key"),
    (lambda d, m: d["entry"].update(anti_rollback=1), "approved digest does not match"),
    (lambda d, m: d["entry"].update(expected={"4": "00"}), "policy entry: "),
    (lambda d, m: m["authorized"]["signed"][0].update(anti_rollback=3),
     "policy version 2 is older than this device's newest signed policy (3)"),
    (lambda d, m: d["entry"].update(r="00" * 32), "policy signature does not verify"),
])
def test_refusals_name_what_is_wrong(change: Callable[[dict[str, Any], dict[str, Any]], None], why: str) -> None:
    meta, doc = _meta(), policy_file.build(V2, KEY)
    change(doc, meta)
    with pytest.raises(PE.PolicyRefused) as e:
        PE.check(meta, doc, _verify)
    assert why in e.value.reason


@pytest.mark.parametrize("data,why", [
    (b"\xff", "not UTF-8 JSON"), (b"[]", "not a JSON object"),
    (b'{"format": 1}', "missing field type"), (b"x" * (PE.MAX_FILE + 1), "at most 16384"),
])
def test_parse_refuses_what_is_not_a_policy_file(data: bytes, why: str) -> None:
    with pytest.raises(PE.PolicyRefused, match=why):
        PE.parse(data)
    extra = dict(policy_file.build(V2, KEY), more=1)
    with pytest.raises(PE.PolicyRefused, match="unexpected field more"):
        PE.parse(json.dumps(extra).encode())


def _partition(tmp_path: Path, meta: dict[str, Any]) -> Path:
    p = tmp_path / "data"
    p.write_bytes(store.pack(meta) + bytes((2 << 20) - len(store.pack(meta))))
    return p


class Crash(Exception):
    pass


def _crash_in_write(monkeypatch: pytest.MonkeyPatch, which: int) -> None:
    """The `which`th copy (0: journal, 1: offset 0) is cut 64 bytes into the store's body: a
    power cut (the new header over the old body: torn)."""
    real = store_write._write_at
    calls = []

    def cut(path: str, offset: int, data: bytes) -> None:
        calls.append(offset)
        if len(calls) - 1 == which:
            real(path, offset, data[:store.HEADER_SIZE + 64])
            raise Crash()
        real(path, offset, data)
    monkeypatch.setattr(store_write, "_write_at", cut)


@pytest.mark.parametrize("which,survivor", [(0, "old"), (1, "new")])
def test_a_crash_in_either_write_leaves_a_whole_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      which: int, survivor: str) -> None:
    old = _meta()
    new = PE.check(old, policy_file.build(V2, KEY), _verify)
    p = _partition(tmp_path, old)
    _crash_in_write(monkeypatch, which)
    with pytest.raises(Crash):
        store_write.write(str(p), new)
    torn = p.read_bytes()[:store.SPAN]
    if which == 1:  # offset 0 really is torn: only the journal holds a whole store
        with pytest.raises(store.ParseError, match="torn or corrupt"):
            store.unpack(torn)
    assert store.read_file(str(p)) == (old if survivor == "old" else new)


def test_write_keeps_the_slot_record_area_and_a_shorter_store_leaves_no_old_bytes(tmp_path: Path) -> None:
    big = _meta()
    big["objects"].append({"name": "pad", "pin": False, "public": "00" * 1000, "private": "00"})
    p = _partition(tmp_path, big)
    with p.open("r+b") as f:
        f.seek(1 << 20)
        f.write(b"slot record")
    small = PE.check(_meta(), policy_file.build(V2, KEY), _verify)
    store_write.write(str(p), small)
    raw = p.read_bytes()
    n = len(store.pack(small))
    assert store.read_file(str(p)) == small and raw[n:store.SPAN] == bytes(store.SPAN - n)
    assert raw[1 << 20:(1 << 20) + 11] == b"slot record"
    assert store.JOURNAL_OFFSET + store.SPAN <= 1 << 20  # the slot record (partition_flash) is past both


def test_bad_metadata_is_never_written(tmp_path: Path) -> None:
    p = _partition(tmp_path, _meta())
    before = p.read_bytes()
    bad = copy.deepcopy(_meta())
    bad["pcrs"] = "all"
    with pytest.raises(ValueError):
        store_write.write(str(p), bad)
    assert p.read_bytes() == before
