# mypy: disable-error-code="no-untyped-call"
"""The boot hook (firmware.secrets.hook) as the phone calls it: the store copied from the data
partition by the stage loader, the measured components from its state.json, release, the
console's status fields, anti-rollback commit after an authorized release, and wiping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from firmware.secrets import hook, rollback, store
from firmware.tpm.client import Tpm
from host_tools.update import policy_key
from tests.tpm import test_secrets_support as S
from tests.tpm.helpers import connect

GOLDEN = S.make_reference(rollback=3)


@pytest.fixture
def phone(fresh_swtpm, tmp_path: Path) -> Iterator[tuple[Tpm, Path]]:  # type: ignore[no-untyped-def]
    tpm = connect(fresh_swtpm.uri)
    key = policy_key.load_or_create(tmp_path / "vendor.pem")
    meta = S.provision(tpm, GOLDEN, mode="authorized", key=key)
    part = tmp_path / "phone-data.img"
    part.write_bytes(store.pack(meta) + b"\x00" * 4096)  # the raw partition
    run = tmp_path / "run"
    run.mkdir()
    assert hook.copy_store(str(part), str(run)) == len(store.pack(meta))
    yield tpm, run
    hook.forget()
    tpm.transport.close()


def _state(run: Path, doc: dict[str, Any]) -> None:
    (run / "state.json").write_text(json.dumps({"state": "running", "components": S.measured(doc)}))


def test_release_at_boot_unseals_commits_and_merges(phone) -> None:  # type: ignore[no-untyped-def]
    tpm, run = phone
    S.boot(tpm, GOLDEN)
    _state(run, GOLDEN)
    st = hook.release_at_boot(tpm, str(run), paths=[str(run / hook.STORE_COPY)])
    assert st["unsealed"] is True and st["secrets"] == [S.SIP] and st["rollback_committed"] == 3
    assert rollback.revoked(tpm) == 0b111
    assert S.SIP_PASSWORD not in json.dumps(st)
    console = {"state": "running", "unsealed": False, "unsealed_reason": "not yet"}
    merged = hook.merge_status(console)
    assert merged["unsealed"] is True and "unsealed_reason" not in merged
    assert merged["credentials_state"] == "unsealed" and merged["state"] == "running"
    creds = hook.credentials()
    assert creds is not None and json.loads(bytes(creds.get(S.SIP)))["password"] == S.SIP_PASSWORD
    buf = creds.get(S.SIP)
    hook.forget()
    assert buf == bytearray(len(buf)) and hook.credentials() is None
    rel, st2 = hook.unlock(tpm, S.PIN, run_dir=str(run), paths=[str(run / hook.STORE_COPY)])
    assert rel is not None and bytes(rel.get(S.USER)) == S.USER_SECRET and st2["unsealed"] is True
    rel.wipe()


def test_tampered_boot_gives_integrity_failed(phone) -> None:  # type: ignore[no-untyped-def]
    tpm, run = phone
    bad = S.tampered(GOLDEN, "sip-media", "patched media stack")
    S.boot(tpm, bad)
    _state(run, bad)
    st = hook.release_at_boot(tpm, str(run), paths=[str(run / hook.STORE_COPY)])
    assert st["unsealed"] is False and st["state"] == "integrity-failed"
    merged = hook.merge_status({"state": "running", "unsealed": False})
    assert merged["state"] == "integrity-failed" and merged["unsealed"] is False
    assert "PCR 14 differs" in merged["reason"] and "component sip-media differs" in merged["reason"]
    assert merged["unsealed_reason"] == merged["reason"]
    assert [d["pcr"] for d in merged["pcrs_differ"]] == [14]
    assert rollback.revoked(tpm) == 0  # nothing committed
    # a stage-loader refusal keeps its own state and reason
    refused = hook.merge_status({"state": "refused", "reason": "bad signature"})
    assert refused["state"] == "refused" and refused["reason"] == "bad signature"


def test_no_store_is_no_credentials(phone, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tpm, run = phone
    blank = tmp_path / "blank.img"
    blank.write_bytes(b"\x00" * 4096)
    st = hook.release_at_boot(tpm, str(run), paths=[str(blank), str(tmp_path / "missing")])
    assert st["unsealed"] is False and st["state"] == "no-credentials"
    assert "blank" in st["reason"] and "missing" in st["reason"]
    with pytest.raises(ValueError, match="blank"):
        hook.copy_store(str(blank), str(run))
