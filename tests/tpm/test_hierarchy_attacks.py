# mypy: disable-error-code="no-untyped-call"
"""Issue 9 part 2 on the host: what anyone holding a provisioned device's TPM (the phone's uid,
root on the device) can do with the owner, endorsement and lockout hierarchies and the
anti-rollback NV index. tpm2-tools is the attacker (and the oracle: its exit status and the TPM
response code it prints). Platform authorization is out of this test's reach on purpose: on the
host every TPM2_Startup(CLEAR) enables the platform hierarchy with an empty platformAuth (TPM 2.0
Part 1 §13.4), which is what the vendor's provisioning station uses; on the device the stage
loader disables it (tests/system/test_tpm_privilege.py)."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Iterator

import pytest

from firmware.secrets import rollback
from firmware.tpm import constants as C
from host_tools.provision import hierarchy
from tests.conftest import SwtpmProcess
from tests.tpm.helpers import tools
from tests.tpm.test_provision import Env, _provision, env  # noqa: F401  (env is a fixture)

INDEX = "0x%08x" % rollback.DEFAULT_INDEX
# TPM 2.0 Part 2 §6.6: format-1 codes carry the session (bit 11 + number in bits 8-10) or handle
# number; tpm2-tools prints the whole code. 0x9a2 = TPM_RC_BAD_AUTH for session 1 (password
# session, no DA); 0x98e = TPM_RC_AUTH_FAIL for session 1 (DA counted).
RC_BAD_AUTH_S1 = 0x9A2
RC_AUTH_FAIL_S1 = 0x98E
# format-1 codes about handle 1 (bit 8 + handle number in bits 8-10 with bit 6 clear: 0x1xx)
RC_ATTRIBUTES_H2 = 0x282  # TPM_RC_ATTRIBUTES, handle 2 (the index)
RC_POLICY_FAIL_S1 = 0x99D


class Attacker:
    """The device's swtpm after provisioning, reachable by tpm2-tools."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.sw = SwtpmProcess(env.device / "tpm")  # ports P and P+1, as the swtpm TCTI wants

    def __enter__(self) -> "Attacker":
        self.sw.start()  # --flags startup-clear: a power-on, as on the device
        return self

    def __exit__(self, *exc: object) -> None:
        self.sw.stop()

    def run(self, *args: str) -> tuple[int, int | None, str]:
        """(exit status, TPM response code or None, stderr) of one tpm2-tools command."""
        p = tools(self.sw.tcti, *args, check=False)
        err = p.stderr.decode(errors="replace")
        m = re.search(r"ErrorCode \((0x[0-9a-fA-F]+)\)", err)
        return p.returncode, int(m.group(1), 16) if m else None, err


@pytest.fixture
def attacker(env: Env) -> Iterator[Attacker]:  # noqa: F811
    assert _provision(env) == 0
    with Attacker(env) as a:
        yield a


def _refused(a: Attacker, *args: str) -> int:
    status, rc, err = a.run(*args)
    assert status != 0, "%s was accepted" % " ".join(args)
    assert rc is not None, err
    return rc


def test_dictionary_attack_lock_reset_refused(attacker: Attacker) -> None:
    # TPM 2.0 Part 3 §25.2: needs lockoutAuth
    assert _refused(attacker, "tpm2_dictionarylockout", "-c") == RC_AUTH_FAIL_S1


def test_clear_refused(attacker: Attacker) -> None:
    # Part 3 §24.6: TPM2_Clear with lockoutAuth (the platform's is the vendor's, see above)
    assert _refused(attacker, "tpm2_clear", "-c", "l") == RC_AUTH_FAIL_S1


@pytest.mark.parametrize("hierarchy,rc", [
    # owner and endorsement authorization failures are not dictionary-attack protected
    ("owner", RC_BAD_AUTH_S1), ("endorsement", RC_BAD_AUTH_S1), ("lockout", RC_AUTH_FAIL_S1)])
def test_hierarchy_change_auth_refused(attacker: Attacker, hierarchy: str, rc: int) -> None:
    # Part 3 §24.8: needs the hierarchy's current authorization
    assert _refused(attacker, "tpm2_changeauth", "-c", hierarchy, "attacker") == rc


def _undefine_space(a: Attacker, auth_handle: int, tmp: Path, password: bytes = b"") -> int:
    """TPM2_NV_UndefineSpace (Part 3 §31.4) of the rollback index with an empty password, sent as
    raw bytes by tpm2_send (tpm2_nvundefine refuses a POLICY_DELETE index before asking the
    TPM); -> the TPM's response code."""
    # TPMS_AUTH_COMMAND: handle, nonce, attributes, hmac (the password, Part 1 §19.8.5)
    auth = struct.pack(">IHBH", C.TPM_RS_PW, 0, 0, len(password)) + password
    body = struct.pack(">II", auth_handle, rollback.DEFAULT_INDEX) + struct.pack(">I", len(auth)) + auth
    cmd = struct.pack(">HII", 0x8002, 10 + len(body), C.TPM_CC_NV_UndefineSpace) + body
    out = tmp / "rsp.bin"
    p = tools(a.sw.tcti, "tpm2_send", "-o", str(out), input=cmd, check=False)
    rsp = out.read_bytes() if out.exists() else b""
    assert len(rsp) >= 10, p.stderr.decode(errors="replace")
    return int(struct.unpack(">I", rsp[6:10])[0])


def test_rollback_index_cannot_be_undefined(attacker: Attacker, tmp_path: Path) -> None:
    # the owner's authorization is unknown on the device
    assert _undefine_space(attacker, C.TPM_RH_OWNER, tmp_path) == RC_BAD_AUTH_S1
    # Part 3 §31.4: TPM2_NV_UndefineSpace of a TPMA_NV_POLICY_DELETE index is TPM_RC_ATTRIBUTES
    # whoever asks: even the vendor's owner (the record's ownerAuth) ...
    auth = hierarchy.read_record(hierarchy.record_path(attacker.env.device))
    assert auth is not None
    assert _undefine_space(attacker, C.TPM_RH_OWNER, tmp_path, auth.owner) == RC_ATTRIBUTES_H2
    # ... and the platform (the vendor's station here: empty platformAuth)
    assert _undefine_space(attacker, C.TPM_RH_PLATFORM, tmp_path) == RC_ATTRIBUTES_H2
    status, _, err = attacker.run("tpm2_nvreadpublic", INDEX)
    assert status == 0, err


def test_rollback_index_delete_policy_cannot_be_met(attacker: Attacker, tmp_path: Path) -> None:
    """TPM2_NV_UndefineSpaceSpecial (Part 3 §31.5) with a policy session: its digest never
    equals the index's authPolicy (firmware/secrets/rollback.py NO_DELETE_POLICY)."""
    ctx = str(tmp_path / "s.ctx")
    status, _, err = attacker.run("tpm2_startauthsession", "--policy-session", "-S", ctx)
    assert status == 0, err
    assert _refused(attacker, "tpm2_nvundefine", "-C", "p", "-S", ctx, INDEX) == RC_POLICY_FAIL_S1


def test_clear_keeps_the_rollback_index(env: Env, tmp_path: Path) -> None:  # noqa: F811
    """Even the vendor's TPM2_Clear (with the record's lockoutAuth) leaves a platform-created
    index (Part 3 §24.6): no way back to an index with cleared bits."""
    assert _provision(env) == 0
    auth = hierarchy.read_record(hierarchy.record_path(env.device))
    assert auth is not None
    with Attacker(env) as a:
        status, _, err = a.run("tpm2_clear", "-c", "l", "hex:" + auth.lockout.hex())
        assert status == 0, err
        status, _, err = a.run("tpm2_nvreadpublic", INDEX)
        assert status == 0, err


def test_provisioning_record_holds_the_auths_and_nothing_else_does(env: Env) -> None:  # noqa: F811
    assert _provision(env) == 0
    record = env.device / "provisioning-record.json"
    assert record.stat().st_mode & 0o777 == 0o600
    doc = json.loads(record.read_text())
    auths = {h: bytes.fromhex(doc["hierarchy_auth"][h]) for h in ("owner", "endorsement", "lockout")}
    assert all(len(a) == 32 for a in auths.values()) and len(set(auths.values())) == 3
    with Attacker(env) as a:
        # the record's lockout auth is the real one (tpm2-tools accepts it)
        status, _, err = a.run("tpm2_dictionarylockout", "-c", "-p", "hex:" + auths["lockout"].hex())
        assert status == 0, err
    flash = (env.device / "disk.img").read_bytes()
    for a_ in auths.values():
        assert a_ not in flash and a_.hex().encode() not in flash
    for p in env.device.rglob("*"):
        if p.is_file() and p != record and p.suffix in (".log", ".txt", ".json"):
            for a_ in auths.values():
                assert a_.hex() not in p.read_text(errors="replace"), p


def test_reprovision_uses_the_record(env: Env, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert _provision(env) == 0
    record = hierarchy.record_path(env.device)
    before = record.read_bytes()
    assert _provision(env) == 0  # owner/lockout authorizations from the record: accepted
    assert record.read_bytes() == before
    out = capsys.readouterr()
    for a_ in json.loads(before)["hierarchy_auth"].values():
        assert a_ not in out.out + out.err


def test_reprovision_without_the_record_is_a_clear_error(env: Env,  # noqa: F811
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert _provision(env) == 0
    hierarchy.record_path(env.device).unlink()
    capsys.readouterr()
    assert _provision(env) == 2
    err = capsys.readouterr().err
    assert "the TPM's owner, endorsement, lockout authorization is set but there is no provisioning " \
           "record at" in err
    assert "Traceback" not in err


def test_a_record_readable_by_others_is_refused(env: Env, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert _provision(env) == 0
    hierarchy.record_path(env.device).chmod(0o644)
    assert _provision(env) == 2
    assert "is readable by group or others (mode 644)" in capsys.readouterr().err
