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
from pathlib import Path
from typing import Iterator

import pytest

from firmware.secrets import rollback
from firmware.tpm import constants as C
from tests.conftest import SwtpmProcess
from tests.tpm.helpers import tools
from tests.tpm.test_provision import Env, _provision, env  # noqa: F401  (env is a fixture)

INDEX = "0x%08x" % rollback.DEFAULT_INDEX
# TPM 2.0 Part 2 §6.6: format-1 codes carry the session (bit 11 + number in bits 8-10) or handle
# number; tpm2-tools prints the whole code. 0x9a2 = TPM_RC_BAD_AUTH for session 1 (password
# session, no DA); 0x98e = TPM_RC_AUTH_FAIL for session 1 (DA counted).
RC_BAD_AUTH_S1 = 0x9A2
RC_AUTH_FAIL_S1 = 0x98E


class Attacker:
    """The device's swtpm after provisioning, reachable by tpm2-tools."""

    def __init__(self, env: Env) -> None:
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


@pytest.mark.parametrize("hierarchy", ["owner", "endorsement", "lockout"])
def test_hierarchy_change_auth_refused(attacker: Attacker, hierarchy: str) -> None:
    # Part 3 §24.8: needs the hierarchy's current authorization
    assert _refused(attacker, "tpm2_changeauth", "-c", hierarchy, "attacker") == RC_AUTH_FAIL_S1


def test_rollback_index_cannot_be_undefined(attacker: Attacker) -> None:
    # Part 3 §31.4: an owner-created index goes with ownerAuth; ours is platform-created with
    # TPMA_NV_POLICY_DELETE, so neither the owner nor (below) the platform can delete it
    rc = _refused(attacker, "tpm2_nvundefine", "-C", "o", INDEX)
    assert rc in (RC_AUTH_FAIL_S1, 0x149 + 0x100 * 0), hex(rc)


def test_rollback_index_survives_even_the_platform(attacker: Attacker) -> None:
    """The vendor's own platform authorization (empty on the host) cannot delete it either:
    TPM2_NV_UndefineSpace refuses a POLICY_DELETE index (Part 3 §31.4: TPM_RC_ATTRIBUTES) and
    TPM2_NV_UndefineSpaceSpecial needs a policy nobody can satisfy (docs/sealing.md)."""
    rc = _refused(attacker, "tpm2_nvundefine", "-C", "p", INDEX)
    assert rc & 0xBF == C.TPM_RC_ATTRIBUTES_BASE if hasattr(C, "TPM_RC_ATTRIBUTES_BASE") else rc, hex(rc)
    status, _, err = attacker.run("tpm2_nvreadpublic", INDEX)
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
