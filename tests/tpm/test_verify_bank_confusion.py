"""Issue 9 part 3, the attack: bank confusion against `python -m host_tools.verify`.

A device measured an evil phone-app into PCR 14 of a real swtpm (all four banks), through the real
stage loader (firmware.boot.stage.measure_and_verify, which writes the phone log with
firmware.eventlog.writer and extends the same digests). The attacker then edits the log: the evil
component's SHA-1 digest stays (so the SHA-1 replay still equals the TPM's sha1 PCR 14), its SHA-256
digest becomes the vendor's reference digest. The reference only holds SHA-256 digests, so a
verifier that compares the SHA-256 digest from a log whose SHA-256 replay it never checked calls the
evil component "ok". A digest is evidence only in a bank whose replay matched the TPM: every run
below must end in exit 1 with the component "unverified" (bank not checked) or the sha256 replay
mismatch, never "OK".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.boot import stage as _stage
from firmware.eventlog import parser as _parser
from firmware.eventlog import replayer as _replayer
from firmware.tcg_alg import HASH_SIZES
from firmware.tpm.client import Tpm
from firmware.tpm.transport import open_uri
from host_tools.image import bundle, predict

REPO = Path(__file__).resolve().parents[2]
BOARD = "qemu-x86_64"
VERSION = "0.3.0"
COUNTER = 3
BANKS = ("sha1", "sha256", "sha384", "sha512")
parse_log = cast(Callable[[bytes], Any], _parser.parse_log)
replay = cast(Callable[..., dict[str, dict[int, bytes]]], _replayer.replay)
measure_and_verify = cast(Callable[..., Any], _stage.measure_and_verify)

VENDOR = [bundle.Component("phone-app", "0.3.0", b"vendor phone app\n" * 64),
          bundle.Component("sip-config", "2026.11", b'{"registrar": "sip.example.net"}\n')]
EVIL_APP = b"evil phone app: send the SIP password elsewhere\n" * 32


@dataclass
class Attack:
    tpm_uri: str
    tcti: str
    root: Path
    forged_log: Path
    evil_log: Path       # the log as the loader wrote it (nothing forged)
    pcrs_all: Path       # every bank the swtpm has, read from it
    pcrs_sha1: Path      # the sha1 bank alone
    reference: Path      # the vendor's reference.json, as host_tools.image.build writes it
    reference_no_pcrs: Path  # the same without predicted PCR values (schema: `pcrs` optional)


def _image(key: Ed25519PrivateKey, app: bytes) -> bytes:
    """The vendor's signed manifest; the components found on the flash are `app` + sip-config."""
    manifest = bundle.manifest(BOARD, VERSION, COUNTER, VENDOR)
    found = [bundle.Component("phone-app", "0.3.0", app), VENDOR[1]]
    return bundle.pack(manifest, bundle.sign(key, manifest), found)


def _digest_offset(log: bytes, number: int, bank: str) -> int:
    """Offset of `bank`'s digest in event `number` (TCG_PCR_EVENT2: pcrIndex, eventType, count,
    then TPMT_HA {hashAlg u16, digest} per bank in the Spec ID header's order; PFP §10.2.2)."""
    parsed = parse_log(log)
    ev = [e for e in parsed.events if e.number == number][0]
    pos = ev.offset + 12
    for b in parsed.header.banks:
        pos += 2
        if b == bank:
            return int(pos)
        pos += HASH_SIZES[b]
    raise AssertionError("bank %s not in the log" % bank)


def _reference(with_pcrs: bool) -> dict[str, Any]:
    """reference.json for the vendor bundle, computed as host_tools/image/build.py does."""
    events = predict.pcr14_events([(c.name, c.sha256) for c in VENDOR], (BOARD, VERSION, COUNTER))
    ref: dict[str, Any] = {
        "schema_version": 1, "board": BOARD, "image_version": VERSION,
        "bundle": {"board": BOARD, "bundle_version": VERSION, "anti_rollback_counter": COUNTER,
                   "pcr": 14, "sha256": predict.sha256(
                       predict.bundle_event_data(BOARD, VERSION, COUNTER)).hex()},
        "components": [{"name": c.name, "version": c.version, "sha256": c.sha256.hex(),
                        "pcr": 14} for c in VENDOR]}
    if with_pcrs:
        ref["pcrs"] = {"sha256": {str(k): v.hex() for k, v in predict.pcr_values(events).items()}}
    return ref


def _tpm2_pcrread(tcti: str, sel: str) -> bytes:
    """An independent reader of the swtpm's PCR (tpm2-tools)."""
    out = subprocess.run(["tpm2_pcrread", "-T", tcti, sel], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    m = re.search(r"14\s*: 0x([0-9A-Fa-f]+)", out)
    assert m is not None, out
    return bytes.fromhex(m.group(1))


@pytest.fixture(scope="module")
def attack(module_swtpm: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    if shutil.which("tpm2_pcrread") is None:
        pytest.fail("tpm2-tools missing (make deps): tpm2_pcrread is the independent PCR reader")
    root = tmp_path_factory.mktemp("bank-confusion")
    key = Ed25519PrivateKey.generate()
    transport = open_uri(module_swtpm.uri)  # type: ignore[no-untyped-call]
    try:
        tpm = Tpm(transport)  # type: ignore[no-untyped-call]
        allocated = tpm.pcr_banks()  # type: ignore[no-untyped-call]
        assert set(BANKS) <= set(allocated), allocated
        # The real stage loader measures what is on the flash into every bank of PCR 14. (It then
        # refuses this bundle; the attack assumes the evil code ran anyway, e.g. a loader with the
        # check removed: the decision is not in the log, only the measurements are.)
        def vendor_signature(manifest: bytes, signature: bytes) -> bool:
            bundle.verify(key.public_key(), manifest, signature)  # raises BundleError if bad
            return True

        out = measure_and_verify(_image(key, EVIL_APP),
                                 lambda pcr, d: tpm.pcr_extend(pcr, d),  # type: ignore
                                 vendor_signature, BANKS, BOARD)
        assert out.state == "refused" and "phone-app" in out.reason
        actual = {b: tpm.pcr_read_all(b) for b in BANKS}  # type: ignore[no-untyped-call]
    finally:
        transport.close()
    log = bytes(out.log.to_bytes())
    # event 1 is the bundle event, event 2 phone-app (numbering as tpm2_eventlog counts)
    app = [e for e in parse_log(log).events if e.number == 2][0]
    assert app.digests["sha1"] == hashlib.sha1(EVIL_APP).digest()
    assert app.digests["sha256"] == hashlib.sha256(EVIL_APP).digest()
    forged = bytearray(log)
    pos = _digest_offset(log, 2, "sha256")
    forged[pos:pos + 32] = VENDOR[0].sha256
    forged_log = root / "phone.log"
    forged_log.write_bytes(bytes(forged))
    evil_log = root / "evil.log"
    evil_log.write_bytes(log)
    # the forgery: sha1 still replays to the TPM's value, sha256 does not, and the swtpm agrees
    # with tpm2-tools on both values
    rep = replay(parse_log(bytes(forged)))
    assert rep["sha1"][14] == actual["sha1"][14] == _tpm2_pcrread(module_swtpm.tcti, "sha1:14")
    assert rep["sha256"][14] != actual["sha256"][14] == _tpm2_pcrread(module_swtpm.tcti,
                                                                      "sha256:14")
    pcrs_all = root / "pcrs.json"
    pcrs_all.write_text(json.dumps({b: {str(i): v.hex() for i, v in vals.items()}
                                    for b, vals in actual.items()}))
    pcrs_sha1 = root / "pcrs-sha1.json"
    pcrs_sha1.write_text(json.dumps({"sha1": {str(i): v.hex()
                                              for i, v in actual["sha1"].items()}}))
    reference = root / "reference.json"
    reference.write_text(json.dumps(_reference(True)))
    reference_no_pcrs = root / "reference-no-pcrs.json"
    reference_no_pcrs.write_text(json.dumps(_reference(False)))
    yield Attack(module_swtpm.uri, module_swtpm.tcti, root, forged_log, evil_log, pcrs_all,
                 pcrs_sha1, reference, reference_no_pcrs)


def verify_cli(*args: str | Path) -> tuple[int, str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "host_tools.verify", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    return proc.returncode, proc.stdout, proc.stderr


def _app(report: dict[str, Any]) -> dict[str, Any]:
    return [e for e in report["events"] if e["name"] == "phone-app"][0]


def _assert_unverified_json(rc: int, out: str, err: str) -> dict[str, Any]:
    assert (rc, err) == (1, ""), out + err
    report = json.loads(out)
    assert report["result"] == "unverified", report
    app = _app(report)
    assert app["status"] == "unverified" and app["trusted"] is False, app
    assert any("sha256 bank of PCR 14" in p for p in app["problems"]), app
    return report


def _assert_unverified_text(rc: int, out: str, err: str) -> None:
    assert (rc, err) == (1, ""), out + err
    assert out.startswith("measured-boot verification: UNVERIFIED"), out
    assert re.search(r"^  unverified +phone-app 0\.3\.0 ", out, re.M), out
    assert "sha256 bank of PCR 14" in out, out


@pytest.mark.parametrize("reference", ["reference", "reference_no_pcrs"])
def test_banks_sha1_is_unverified(attack: Attack, reference: str) -> None:
    # `--banks sha1`: the sha1 replay matches, the sha256 digest was never checked
    ref = getattr(attack, reference)
    base = ("--log", attack.forged_log, "--pcrs", attack.pcrs_all, "--reference", ref,
            "--banks", "sha1")
    _assert_unverified_text(*verify_cli(*base))
    report = _assert_unverified_json(*verify_cli(*base, "--json"))
    assert {p["bank"] for p in report["pcrs"] if p["status"] == "ok"} == {"sha1"}
    unverified = [(p["bank"], p["pcr"]) for p in report["pcrs"] if p["status"] != "ok"]
    # the reference's predicted sha256 PCRs (14, and 12 of the sealing policy) are not compared
    # either: unverified, not dropped
    predicted = json.loads(ref.read_text()).get("pcrs", {}).get("sha256", {})
    assert sorted(unverified) == sorted(("sha256", int(k)) for k in predicted)
    assert (("sha256", 14) in unverified) == (reference == "reference")
    # the same through --tpm (the verifier reads the swtpm itself)
    _assert_unverified_json(*verify_cli("--log", attack.forged_log, "--tpm", attack.tpm_uri,
                                        "--reference", ref, "--banks", "sha1", "--json"))


def test_sha1_only_pcrs_json_is_unverified(attack: Attack) -> None:
    base = ("--log", attack.forged_log, "--pcrs", attack.pcrs_sha1,
            "--reference", attack.reference_no_pcrs)
    _assert_unverified_text(*verify_cli(*base))
    _assert_unverified_json(*verify_cli(*base, "--json"))
    # with the predicted sha256 PCRs in the reference: their bank was not read either
    rc, out, err = verify_cli("--log", attack.forged_log, "--pcrs", attack.pcrs_sha1,
                              "--reference", attack.reference, "--json")
    assert (rc, err) == (1, "")
    report = json.loads(out)
    assert report["result"] != "ok" and _app(report)["status"] == "unverified"


def test_sha256_bank_given_is_replay_mismatch(attack: Attack) -> None:
    # every bank (the default) and --banks sha256: the sha256 replay of PCR 14 does not match
    for extra in ((), ("--banks", "sha256"), ("--banks", "sha1,sha256")):
        rc, out, err = verify_cli("--log", attack.forged_log, "--pcrs", attack.pcrs_all,
                                  "--reference", attack.reference, "--json", *extra)
        assert (rc, err) == (1, ""), out + err
        report = json.loads(out)
        assert report["result"] == "mismatch" and report["replay_failed_pcrs"] == [14]
        assert {(p["bank"], p["status"]) for p in report["pcrs"] if p["pcr"] == 14} >= {
            ("sha256", "replay-mismatch")}
        app = _app(report)
        assert app["status"] != "ok" and app["trusted"] is False, app
        assert any("replay" in p and "PCR 14" in p for p in app["problems"]), app
        rc, out, err = verify_cli("--log", attack.forged_log, "--pcrs", attack.pcrs_all,
                                  "--reference", attack.reference, *extra)
        assert rc == 1 and out.startswith("measured-boot verification: MISMATCH"), out
        assert "sha256:14" in out and not re.search(r"^  ok +phone-app ", out, re.M), out


def _device(root: Path, name: str, log: Path, pcrs: Path) -> Path:
    d = root / name
    d.mkdir()
    (d / "phone.log").write_bytes(log.read_bytes())
    (d / "pcrs.json").write_bytes(pcrs.read_bytes())
    return d


def test_fleet(attack: Attack, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    _device(fleet, "a-banks", attack.forged_log, attack.pcrs_all)
    _device(fleet, "b-sha1-only", attack.forged_log, attack.pcrs_sha1)
    # an unforged log, and in the device's directory a reference.json that describes exactly the
    # evil component it booted: --reference decides, never the device's own file
    planted = _device(fleet, "c-planted-reference", attack.evil_log, attack.pcrs_all)
    evil_ref = _reference(False)
    evil_ref["components"][0]["sha256"] = hashlib.sha256(EVIL_APP).hexdigest()
    (planted / "reference.json").write_text(json.dumps(evil_ref))
    rc, out, err = verify_cli("--fleet", fleet, "--reference", attack.reference_no_pcrs,
                              "--banks", "sha1")
    assert (rc, err) == (1, ""), out + err
    lines = out.splitlines()
    assert len(lines) == 4, out
    for line in lines[:2]:
        assert ": UNVERIFIED " in line and "phone-app" in line, line
        assert "sha256 bank of PCR 14 not verified: --banks sha1 leaves it out" in line, line
    # c's log is honest: its sha256 digest (not evidence under --banks sha1) differs anyway
    assert lines[2].startswith("c-planted-reference: MISMATCH "), lines[2]
    assert "differs phone-app 0.3.0" in lines[2], lines[2]
    assert lines[3] == "summary: 3 devices, 0 ok, 3 mismatch, 0 error"
    # without --banks: a and c replay-mismatch in sha256, b has no sha256 bank
    rc, out, err = verify_cli("--fleet", fleet, "--reference", attack.reference_no_pcrs,
                              "--json")
    assert (rc, err) == (1, ""), out + err
    objs = [json.loads(line) for line in out.splitlines()]
    by_name = {o["device"]: o for o in objs[:3]}
    assert by_name["a-banks"]["result"] == "mismatch"
    assert by_name["b-sha1-only"]["result"] == "unverified"
    assert by_name["c-planted-reference"]["result"] == "mismatch"
    for name in ("a-banks", "b-sha1-only"):
        app = _app(by_name[name])
        assert app["status"] != "ok" and app["trusted"] is False, app
    # c's log is honest and replays in sha256: the evil phone-app differs from --reference
    app = _app(by_name["c-planted-reference"])
    assert app["status"] == "differs" and app["trusted"] is True, app
    assert app["sha256"] == hashlib.sha256(EVIL_APP).hexdigest()
    assert objs[3] == {"summary": {"devices": 3, "ok": 0, "mismatch": 3, "error": 0}}
