# mypy: disable-error-code="no-untyped-call"
"""`python -m host_tools.provision` and `python -m host_tools.update` end to end on a device
directory like the QEMU runner's (build/devices/NAME: swtpm state + flash copy with a GPT
phone-data partition), with real swtpm processes; then the device's release code on that TPM
after a simulated boot of the image the reference describes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from firmware.secrets import release as R
from firmware.secrets import rollback, store
from firmware.tpm import constants as C
from firmware.tpm import errors as E
from firmware.tpm.client import Tpm
from firmware.tpm.public import parse_public
from firmware.tpm.transport_swtpm import SwtpmTransport
from firmware.update import partition_flash as PF
from host_tools.image import disk as image_disk
from host_tools.provision import __main__ as provision_cli
from host_tools.provision import disk
from host_tools.swtpm_proc import Swtpm
from host_tools.update import __main__ as update_cli
from tests.tpm import test_secrets_support as S

BOARD = "qemu-x86_64"
V1 = S.make_reference("1.0.0", rollback=1)
V2 = S.make_reference("2.0.0", rollback=2, app="phone-app code v2")


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.build = root / "build" / BOARD
        self.devices = root / "devices"
        self.key = root / "keys" / "policy-signing-key.pem"
        self.secrets = root / "input" / "secrets.json"
        self.pin = root / "input" / "pin"

    @property
    def device(self) -> Path:
        return self.devices / "phone1"

    def write_reference(self, doc: dict[str, Any]) -> Path:
        p = self.build / "reference.json"
        p.write_text(json.dumps(doc))
        return p

    def common(self) -> list[str]:
        return ["--device", "phone1", "--board", BOARD, "--build-dir", str(self.build),
                "--devices-dir", str(self.devices), "--policy-key", str(self.key)]


@pytest.fixture
def env(tmp_path: Path) -> Env:
    e = Env(tmp_path)
    e.build.mkdir(parents=True)
    parts = [image_disk.Partition("esp", image_disk.ESP_TYPE, 1),
             image_disk.Partition("phone-fw", image_disk.LINUX_DATA_TYPE, 1),
             image_disk.Partition("phone-data", image_disk.LINUX_DATA_TYPE, 2)]  # room for the slot record
    image_disk.build_disk(e.build / "disk.img", BOARD, parts, {"phone-fw": b"bundle v1"})
    e.write_reference(V1)
    e.secrets.parent.mkdir()
    e.secrets.write_text(json.dumps({"sip-account": {"username": "phone1", "password": S.SIP_PASSWORD},
                                     "user-secret": {"hex": S.USER_SECRET.hex()}}))
    e.pin.write_bytes(S.PIN + b"\n")
    return e


class DeviceTpm:
    """The device's swtpm state, started like the provisioning tool does (for checking)."""

    def __init__(self, env: Env) -> None:
        self.sw = Swtpm(env.device / "tpm", env.root, server=True, tcp=True,
                        extra_args=["--flags", "not-need-init"])

    def __enter__(self) -> Tpm:
        self.sw.start()
        assert self.sw.server_port is not None
        self.tpm = Tpm(SwtpmTransport("127.0.0.1", self.sw.server_port))
        self.tpm.startup(True)
        return self.tpm

    def __exit__(self, *exc: object) -> None:
        try:
            self.tpm.shutdown(True)
        finally:
            self.tpm.transport.close()
            self.sw.stop()


def _provision(env: Env, *extra: str) -> int:
    return provision_cli.main(env.common() + ["--secrets", str(env.secrets), "--pin-file", str(env.pin),
                                              *extra])


def _store(env: Env) -> dict[str, Any]:
    meta: dict[str, Any] = store.unpack(disk.read_partition(env.device / "disk.img"))
    return meta


def _boot(tpm: Tpm, doc: dict[str, Any]) -> None:
    for e in doc["events"]:
        tpm.pcr_extend(e["pcr"], {"sha256": bytes.fromhex(e["digest"])})


@pytest.fixture
def provisioned(env: Env) -> Iterator[Env]:
    assert _provision(env) == 0
    yield env


def test_provision_writes_the_store_and_sets_the_tpm(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert _provision(env) == 0
    out = capsys.readouterr()
    assert "provisioned phone1: sip-account, user-secret sealed (authorized policy, PCRs 4,7,11,12,14" in out.out
    raw = (env.device / "disk.img").read_bytes()
    offset, _ = disk.find_partition(env.device / "disk.img")
    assert raw[offset:offset + 8] == b"PHSEALED"
    for needle in (S.SIP_PASSWORD.encode(), S.USER_SECRET, S.USER_SECRET.hex().encode(), S.PIN):
        assert needle not in raw  # nowhere on the flash, in the clear
        assert needle not in (out.out + out.err).encode()
    meta = _store(env)
    assert meta["policy"] == "authorized" and meta["pcrs"] == [4, 7, 11, 12, 14]
    assert meta["expected"] == {k: v for k, v in V1["pcrs"]["sha256"].items() if k in ("4", "7", "11", "12", "14")}
    assert [s["anti_rollback"] for s in meta["authorized"]["signed"]] == [1]
    for o in meta["objects"]:
        assert not parse_public(bytes.fromhex(o["public"]))["objectAttributes"] & C.TPMA_OBJECT_USERWITHAUTH
    with DeviceTpm(env) as tpm:
        props = tpm.properties(C.TPM_PT_LOCKOUT_COUNTER, 4)
        assert (props[C.TPM_PT_MAX_AUTH_FAIL], props[C.TPM_PT_LOCKOUT_INTERVAL]) == (5, 600)
        assert props[C.TPM_PT_LOCKOUT_COUNTER] == 0
        assert rollback.revoked(tpm) == 0
        _boot(tpm, V1)
        res = R.release(tpm, meta, measured=S.measured(V1))
        assert isinstance(res, R.Released) and res.version == 1
        assert json.loads(bytes(res.get(S.SIP)))["password"] == S.SIP_PASSWORD
        res.wipe()
        res = R.release(tpm, meta, pin=S.PIN, names=[S.USER])
        assert isinstance(res, R.Released) and bytes(res.get(S.USER)) == S.USER_SECRET
        res.wipe()


def test_provision_pcr_policy_seals_to_predicted_values(env: Env) -> None:
    assert _provision(env, "--policy", "pcr", "--max-tries", "3", "--recovery-time", "30") == 0
    meta = _store(env)
    assert meta["policy"] == "pcr" and "authorized" not in meta
    with DeviceTpm(env) as tpm:
        props = tpm.properties(C.TPM_PT_LOCKOUT_COUNTER, 4)
        assert (props[C.TPM_PT_MAX_AUTH_FAIL], props[C.TPM_PT_LOCKOUT_INTERVAL]) == (3, 30)
        # the TPM's current PCRs are all zero: sealing used the reference's predictions, so the
        # current state does NOT unseal, and the predicted boot does
        res = R.release(tpm, meta)
        assert isinstance(res, R.IntegrityFailure) and res.tpm_error is not None
        assert res.tpm_error.base == E.TPM_RC_POLICY_FAIL
        assert [d["pcr"] for d in res.pcrs_differ] == [4, 7, 11, 14]
        _boot(tpm, V1)
        res = R.release(tpm, meta)
        assert isinstance(res, R.Released)
        res.wipe()


def test_provision_refuses_bad_input(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert provision_cli.main(env.common() + ["--secrets", str(env.secrets)]) == 2
    assert "a user secret is sealed to a PIN" in capsys.readouterr().err
    env.secrets.write_text('{"sip-account": {"username": "u", "password": "' + "p" * 200 + '"}}')
    assert _provision(env) == 2
    err = capsys.readouterr().err
    assert "too long to seal" in err and "ppppp" not in err
    env.write_reference({"schema_version": 1, "board": BOARD, "image_version": "x", "pcrs": {"sha256": {}},
                         "components": []})
    assert _provision(env) == 2
    assert "no predicted value for PCR 4" in capsys.readouterr().err


def test_update_ships_a_signed_policy_that_unseals_then_rollback_is_refused(provisioned: Env) -> None:
    env = provisioned
    old_meta = _store(env)
    # the device runs bank b by now (an SMP update): its A/B slot record must survive the store
    # update (host_tools.provision.disk.write_store keep_from); the rest of the partition is zeroed
    disk_img = env.device / "disk.img"
    offset, size = disk.find_partition(disk_img, disk.DATA_PARTITION)
    record = PF.encode_copy(7, b'{"running": "b"}')
    with disk_img.open("r+b") as f:
        f.seek(offset + PF.RECORD_OFFSET)
        f.write(record)
        f.seek(offset + PF.RECORD_OFFSET - 4096)
        f.write(b"stale" * 10)
    env.write_reference(V2)
    assert update_cli.main(env.common()) == 0
    part = disk.read_partition(disk_img)
    assert part[PF.RECORD_OFFSET:PF.RECORD_OFFSET + len(record)] == record
    assert b"stale" not in part[:PF.RECORD_OFFSET]
    meta = _store(env)
    assert [s["anti_rollback"] for s in meta["authorized"]["signed"]] == [1, 2]
    with DeviceTpm(env) as tpm:
        # the new image unseals without re-provisioning
        _boot(tpm, V2)
        res = R.release(tpm, meta, measured=S.measured(V2))
        assert isinstance(res, R.Released) and res.version == 2
        res.wipe()
        # the device commits version 2: every older signed policy is revoked in the TPM
        rollback.commit(tpm, 2)
        assert rollback.revoked(tpm) == 0b11
    with DeviceTpm(env) as tpm:
        # an attacker flashes the old image with its old store (signed policy for v1)
        _boot(tpm, V1)
        res = R.release(tpm, old_meta, measured=S.measured(V1))
        assert isinstance(res, R.IntegrityFailure) and res.tpm_error is not None
        assert (res.tpm_error.command, res.tpm_error.base) == ("TPM2_PolicyNV", E.TPM_RC_POLICY)
        # and the v1 entry still in the new store does not help either
        res = R.release(tpm, meta, measured=S.measured(V1))
        assert isinstance(res, R.IntegrityFailure)


def test_unsigned_change_does_not_unseal(provisioned: Env) -> None:
    env = provisioned
    meta = _store(env)
    bad = S.tampered(V1, "phone-app", "patched without the vendor")
    with DeviceTpm(env) as tpm:
        _boot(tpm, bad)
        res = R.release(tpm, meta, measured=S.measured(bad))
        assert isinstance(res, R.IntegrityFailure) and res.tpm_error is not None
        assert res.tpm_error.command == "TPM2_PolicyAuthorize" and res.tpm_error.base == E.TPM_RC_VALUE
        assert [d["pcr"] for d in res.pcrs_differ] == [14]
        assert [c["name"] for c in res.components_differ] == ["phone-app"]


def test_entry_signed_by_another_key_is_refused_by_the_tpm(provisioned: Env, tmp_path: Path) -> None:
    from host_tools.provision import reference
    from host_tools.provision.core import signed_entry
    from host_tools.update import policy_key
    env = provisioned
    meta = _store(env)
    rogue = policy_key.load_or_create(tmp_path / "rogue.pem")
    bad = S.tampered(V1, "phone-app", "attacker build")
    forged = dict(meta, authorized=dict(meta["authorized"], signed=[
        signed_entry(rogue, reference.parse(S.rebuilt(bad)), bytes.fromhex(meta["authorized"]["nv_name"]))]))
    with DeviceTpm(env) as tpm:
        _boot(tpm, bad)
        res = R.release(tpm, forged)
        assert isinstance(res, R.IntegrityFailure)
        assert res.reason == "no signed policy in the store verifies with the vendor key"
        # even with the rogue key swapped in, the objects' policy names the vendor key's Name
        forged["authorized"] = dict(forged["authorized"], key=policy_key.tpm_public(rogue).hex())
        res = R.release(tpm, forged)
        assert isinstance(res, R.IntegrityFailure) and res.tpm_error is not None
        assert (res.tpm_error.command, res.tpm_error.base) == ("TPM2_Unseal", E.TPM_RC_POLICY_FAIL)


def test_update_refuses_what_would_not_unseal(provisioned: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env = provisioned
    before = (env.device / "disk.img").read_bytes()
    # a reference whose predicted PCR 14 does not follow from its own events
    broken = S.make_reference("2.0.0", rollback=2)
    broken["pcrs"]["sha256"]["14"] = "00" * 32
    env.write_reference(broken)
    assert update_cli.main(env.common()) == 3
    assert "do not replay to its predicted PCR 14" in capsys.readouterr().err
    # a downgrade
    env.write_reference(S.make_reference("0.9.0", rollback=0))
    assert update_cli.main(env.common()) == 3
    assert "older than the device's newest signed policy" in capsys.readouterr().err
    # another PCR set
    other = S.make_reference("2.0.0", rollback=2)
    other["pcr_policy"] = [7, 14]
    env.write_reference(other)
    assert update_cli.main(env.common()) == 3
    assert "the device's policy uses [4, 7, 11, 12, 14]" in capsys.readouterr().err
    assert (env.device / "disk.img").read_bytes() == before  # nothing shipped


def test_update_refused_once_the_version_is_revoked(provisioned: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env = provisioned
    with DeviceTpm(env) as tpm:
        tpm.nv_set_bits(rollback.DEFAULT_INDEX, 1 << 2)  # version 2 revoked on this device
    env.write_reference(V2)
    assert update_cli.main(env.common()) == 3
    err = capsys.readouterr().err
    assert "does not unseal on a copy of the device's TPM" in err and "TPM_RC_POLICY at TPM2_PolicyNV" in err
    assert "the signed policy for version 2 is revoked on this TPM" in err


def test_update_of_a_pcr_sealed_device_is_refused(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert _provision(env, "--policy", "pcr") == 0
    env.write_reference(V2)
    assert update_cli.main(env.common()) == 3  # refused before any key is needed
    assert "needs re-provisioning" in capsys.readouterr().err


def test_generated_secrets_without_pin_seal_the_sip_account_only(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert provision_cli.main(env.common() + ["--policy", "pcr"]) == 0
    out = capsys.readouterr().out
    assert "no PIN given: no user secret sealed" in out and "provisioned phone1: sip-account sealed" in out
    meta = _store(env)
    assert [o["name"] for o in meta["objects"]] == ["sip-account"]
    with DeviceTpm(env) as tpm:
        _boot(tpm, V1)
        res = R.release(tpm, meta)
        assert isinstance(res, R.Released)
        sip = json.loads(bytes(res.get(S.SIP)))
        res.wipe()
        assert sip["username"] == "phone1" and len(sip["password"]) == 32
        assert sip["password"] not in out  # generated: known only to the TPM
