"""Issue 10 §6 on a real swtpm: a board whose component register is another free PCR (13 or 15,
board.json ``component_pcr``) predicts, measures, verifies and seals consistently.

For each register the vendor's bundle is built as host_tools/image/build.py builds it (manifest
entries, prediction, reference.json from the register), the real stage loader
(firmware.boot.stage + the loader's tpm_guard) measures it into that register of one swtpm, and
then: tpm2_pcrread (independent reader) == the predicted value == the replay of the phone log,
tpm2_eventlog (independent parser) places every event in that register, `python -m
host_tools.verify --tpm` answers OK, the default sealing set of provisioning includes the register,
and the TPM's own PolicyPCR digest over the booted PCRs equals the one sealing computes offline from
the prediction. PCR 14 stays untouched (zero) on this TPM: nothing hard-codes it on the way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.boot import stage as _stage
from firmware.boot.__main__ import SUPPORTED_BANKS
from firmware.boot import tpm_guard as _tpm_guard
from firmware.eventlog import parser as _parser
from firmware.eventlog import replayer as _replayer
from firmware.eventlog import writer as _writer
from firmware.secrets import flows as _flows
from firmware.tpm import constants as C
from firmware.tpm import policy as _policy
from firmware.tpm.client import Tpm
from firmware.tpm.transport import open_uri
from host_tools.image import bundle, predict
from host_tools.provision import reference as prov_reference
from tests.tpm.test_eventlog_tpm2tools import tpm2_eventlog

REPO = Path(__file__).resolve().parents[2]
BOARD = "qemu-x86_64"
VERSION = "0.4.0"
COUNTER = 4
BOOT_PCRS = [4, 7, 11, 12]
parse_log = cast(Callable[[bytes], Any], _parser.parse_log)
replay = cast(Callable[..., dict[str, dict[int, bytes]]], _replayer.replay)
measure_and_verify = cast(Callable[..., Any], _stage.measure_and_verify)
measure_closed = cast(Callable[..., Any], _tpm_guard.measure_closed)
Pcr14 = cast(Callable[..., Any], _tpm_guard.Pcr14)
separator_event = cast(Callable[..., Any], _writer.separator_event)
object_policy = cast(Callable[..., bytes], _flows.object_policy)
pcr_selection = cast(Callable[..., Any], _policy.pcr_selection)

COMPONENTS = [bundle.Component("phone-app", VERSION, b"phone app, board with another register\n"),
              bundle.Component("device-config", VERSION, b'{"account":"1001"}'),
              bundle.Component("ca-bundle", VERSION, b"-----BEGIN CERTIFICATE-----\n")]


def _pcrread(tcti: str, pcr: int) -> bytes:
    out = subprocess.run(["tpm2_pcrread", "-T", tcti, f"sha256:{pcr}"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    m = re.search(rf"^\s*{pcr}\s*: 0x([0-9A-Fa-f]+)", out, re.M)
    assert m is not None, out
    return bytes.fromhex(m.group(1))


def _reference(pcr: int, boot_values: dict[int, bytes]) -> dict[str, Any]:
    """reference.json as host_tools/image/build.py writes it for a board with this register
    (`pcrs` holds the predicted register; the boot PCRs of this bare swtpm, which no firmware
    extended, as read from it)."""
    events = predict.pcr14_events([(c.name, c.sha256) for c in COMPONENTS],
                                  (BOARD, VERSION, COUNTER), pcr)
    values = {str(k): v.hex() for k, v in boot_values.items()}
    values.update({str(k): v.hex() for k, v in predict.pcr_values(events).items() if k == pcr})
    return {"schema_version": 1, "board": BOARD, "image_version": VERSION,
            "bundle_version": VERSION, "anti_rollback_counter": COUNTER,
            "bundle": {"board": BOARD, "bundle_version": VERSION,
                       "anti_rollback_counter": COUNTER, "pcr": pcr,
                       "sha256": predict.sha256(
                           predict.bundle_event_data(BOARD, VERSION, COUNTER)).hex()},
            "components": [{"name": c.name, "version": c.version, "size": len(c.data),
                            "sha256": c.sha256.hex(), "pcr": pcr} for c in COMPONENTS],
            "pcrs": {"sha256": values},
            "events": [e.to_json() for e in events]}


def verify_cli(*args: str | Path) -> tuple[int, str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "host_tools.verify", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("pcr", [13, 15])
def test_board_with_another_register_predicts_and_verifies(fresh_swtpm: Any, tmp_path: Path,
                                                           pcr: int) -> None:
    for tool in ("tpm2_pcrread", "tpm2_eventlog"):
        if shutil.which(tool) is None:
            pytest.fail(f"tpm2-tools missing (make deps): {tool} is the independent reader")
    key = Ed25519PrivateKey.generate()
    manifest = bundle.manifest(BOARD, VERSION, COUNTER, COMPONENTS, pcr)
    assert {c["pcr"] for c in json.loads(manifest)["components"]} == {pcr}
    image = bundle.pack(manifest, bundle.sign(key, manifest), COMPONENTS)

    def vendor_signature(man: bytes, sig: bytes) -> bool:
        bundle.verify(key.public_key(), man, sig)  # raises BundleError if bad
        return True

    transport = open_uri(fresh_swtpm.uri)  # type: ignore[no-untyped-call]
    try:
        tpm = Tpm(transport)  # type: ignore[no-untyped-call]
        assert tpm.pcr_read_all("sha256", [pcr])[pcr] == b"\0" * 32  # type: ignore
        # the loader's own path (firmware/boot/__main__.py measure): the guard on the board's
        # register, the stage measuring into it, every bank the TPM has active
        active = tpm.pcr_banks()  # type: ignore[no-untyped-call]
        banks = tuple(b for b in SUPPORTED_BANKS if b in active)
        assert "sha256" in banks, active
        guard = Pcr14(tpm, pcr, separator_event(banks, pcr)[0])
        out = measure_closed(guard, lambda: measure_and_verify(
            image, guard.extend, vendor_signature, banks=banks, board=BOARD, pcr=pcr))
        assert out.state == "verified", out.reason
        assert guard.closed and guard.extends == len(COMPONENTS) + 2
        boot = tpm.pcr_read_all("sha256", BOOT_PCRS + [14])  # type: ignore[no-untyped-call]
        assert boot[14] == b"\0" * 32  # nothing measured into the qemu board's register
        # the TPM's PolicyPCR over the booted PCRs (trial session: the TPM computes the digest
        # from its current values) == the sealing policy provisioning computes offline
        ref_doc = _reference(pcr, {p: boot[p] for p in BOOT_PCRS})
        ref = prov_reference.parse(ref_doc)
        assert ref.pcrs == BOOT_PCRS + [pcr]  # the default sealing set takes the register
        s = tpm.start_auth_session(C.TPM_SE_TRIAL)  # type: ignore[no-untyped-call]
        tpm.policy_pcr(s, pcr_selection("sha256", ref.pcrs))  # type: ignore[no-untyped-call]
        assert (tpm.policy_get_digest(s)  # type: ignore[no-untyped-call]
                == object_policy("pcr", False, expected=ref.expected))
        tpm.flush_context(s.handle)  # type: ignore[no-untyped-call]
    finally:
        transport.close()

    log = bytes(out.log.to_bytes())
    predicted = bytes.fromhex(ref_doc["pcrs"]["sha256"][str(pcr)])
    assert replay(parse_log(log))["sha256"][pcr] == predicted == _pcrread(fresh_swtpm.tcti, pcr)
    log_path = tmp_path / "phone.log"
    log_path.write_bytes(log)
    theirs, their_pcrs = tpm2_eventlog(log_path)
    assert [e["pcr"] for e in theirs if e["type"] != "EV_NO_ACTION"] == [pcr] * (len(COMPONENTS) + 2)
    assert their_pcrs["sha256"][pcr] == predicted
    ref_path = tmp_path / "reference.json"
    ref_path.write_text(json.dumps(ref_doc))
    rc, stdout, err = verify_cli("--log", log_path, "--tpm", fresh_swtpm.uri,
                                 "--reference", ref_path, "--json")
    assert (rc, err) == (0, ""), stdout + err
    report = json.loads(stdout)
    assert report["result"] == "ok", report
    named = {e["name"]: e for e in report["events"] if e.get("name")}
    for c in COMPONENTS:
        assert named[c.name]["status"] == "ok" and named[c.name]["pcr"] == pcr, named[c.name]
    assert {(p["pcr"], p["status"]) for p in report["pcrs"] if p["bank"] == "sha256"} >= {
        (pcr, "ok")}
