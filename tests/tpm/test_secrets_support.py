# mypy: disable-error-code="no-untyped-call"
"""Shared pieces of the sealing tests (no tests here): a synthetic image reference whose PCRs a
fresh swtpm reaches by replaying its events, simulated boots and power cycles on swtpm's control
channel, and a provisioned store."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from firmware.secrets import store
from firmware.tpm.client import Tpm
from firmware.tpm.errors import TpmError
from firmware.tpm.transport_swtpm import SwtpmTransport
from host_tools.provision import core, reference
from tests.tpm.helpers import RecordingTransport

SIP_PASSWORD = "Sip-Pa55word-4f1c9a7e-do-not-leak"
SIP = core.SIP_ACCOUNT
USER = core.USER_SECRET
USER_SECRET = b"user-identity-seed:9b2e0c5d71a8f3e6"
PIN = b"482916"
CREATED = "2026-11-27T16:00:00Z"


def _d(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_reference(version: str = "1.0.0", rollback: int = 1, app: str = "phone-app code v1",
                   board: str = "qemu-x86_64") -> dict[str, Any]:
    """A reference.json (schema 1) whose events, replayed from zero, give its `pcrs`."""
    comps = [{"name": "phone-app", "version": version, "sha256": _d(app), "pcr": 14},
             {"name": "sip-media", "version": version, "sha256": _d("sip-media " + version), "pcr": 14},
             {"name": "device-config", "version": version, "sha256": _d("device-config"), "pcr": 14}]
    events = [{"pcr": 4, "digest": _d("EFI action")}, {"pcr": 4, "digest": _d("separator")},
              {"pcr": 4, "digest": _d("UKI " + version)},
              {"pcr": 7, "digest": _d("SecureBoot")}, {"pcr": 7, "digest": _d("separator")},
              {"pcr": 11, "digest": _d(".linux")}, {"pcr": 11, "digest": _d(".initrd " + version)}]
    events += [{"pcr": 14, "digest": c["sha256"]} for c in comps]
    events.append({"pcr": 14, "digest": _d("separator")})
    pcrs = reference.replay(events)
    pcrs.setdefault(12, bytes(32))  # nothing overrides the command line: PCR 12 stays zero
    return {"schema_version": 1, "board": board, "image_version": version,
            "anti_rollback_counter": rollback, "pcr_policy": [4, 7, 11, 12, 14], "components": comps,
            "events": events, "pcrs": {"sha256": {str(k): v.hex() for k, v in sorted(pcrs.items())}}}


def tampered(ref_doc: dict[str, Any], component: str, content: str) -> dict[str, Any]:
    """The same image with one component's bytes changed (the reference is NOT updated: this is
    what the device measures, not what the vendor built)."""
    doc = copy.deepcopy(ref_doc)
    for c in doc["components"]:
        if c["name"] == component:
            old = c["sha256"]
            c["sha256"] = _d(content)
            for e in doc["events"]:
                if e["pcr"] == c["pcr"] and e["digest"] == old:
                    e["digest"] = c["sha256"]
    return doc


def rebuilt(doc: dict[str, Any]) -> dict[str, Any]:
    """A reference for what *doc* measures (its predictions recomputed from its events): what an
    attacker's own build tooling would produce."""
    out = copy.deepcopy(doc)
    pcrs = reference.replay(doc["events"])
    pcrs.setdefault(12, bytes(32))
    out["pcrs"] = {"sha256": {str(k): v.hex() for k, v in sorted(pcrs.items())}}
    return out


def measured(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The component list the stage loader would write to state.json for this boot."""
    return [{"name": c["name"], "version": c["version"], "sha256": c["sha256"]} for c in doc["components"]]


def transport(tpm: Tpm) -> SwtpmTransport:
    t = tpm.transport
    while isinstance(t, RecordingTransport):
        t = t.inner
    assert isinstance(t, SwtpmTransport)
    return t


def reboot(tpm: Tpm, clean: bool = True) -> None:
    """A power cycle: TPM2_Shutdown first when *clean*, then swtpm's CMD_INIT (what a platform
    reset does) and TPM2_Startup(CLEAR): PCRs back to zero, loaded objects and sessions gone."""
    if clean:
        tpm.shutdown(clear=True)
    t = transport(tpm)
    t.close()
    t.power_on()
    tpm.startup(clear=True)
    tpm.forget_handles()


def boot(tpm: Tpm, doc: dict[str, Any], clean: bool = True) -> None:
    """Reboot and extend exactly the events the image's reference lists, as firmware + stage
    loader would (real PCR_Extend commands)."""
    reboot(tpm, clean)
    for e in doc["events"]:
        tpm.pcr_extend(e["pcr"], {"sha256": bytes.fromhex(e["digest"])})


def secrets() -> dict[str, bytes]:
    from host_tools.provision import inputs
    return {SIP: inputs.sip_blob("phone1", SIP_PASSWORD), USER: USER_SECRET}


def provision(tpm: Tpm, doc: dict[str, Any], mode: str = store.POLICY_PCR, key: Any = None,
              da: core.DaParameters | None = None) -> dict[str, Any]:
    return core.provision(tpm, reference.parse(doc), secrets(), PIN, mode=mode, key=key, da=da,
                          created=CREATED)


def lockout_counter(tpm: Tpm) -> int:
    from firmware.tpm import constants as C
    return int(tpm.properties(C.TPM_PT_LOCKOUT_COUNTER, 1)[C.TPM_PT_LOCKOUT_COUNTER])


__all__ = ["TpmError"]
