# mypy: disable-error-code="no-untyped-call"
"""Release of sealed credentials on a real swtpm: boots are simulated by rebooting the TPM and
extending exactly the events the image's reference lists (real PCR_Extend commands), then
firmware.secrets.release runs the device's flow (TPM 2.0 Part 3 §12.7 Unseal, §23.7 PolicyPCR,
§23.17 PolicyAuthValue; Part 1 §19.6 salted sessions, §21 parameter encryption)."""

from __future__ import annotations

import copy
import json
from typing import Any, Iterator

import pytest

from firmware.secrets import release as R
from firmware.secrets import store
from firmware.tpm import errors as E
from firmware.tpm.client import Tpm
from host_tools.provision import reference
from tests.tpm import test_secrets_support as S
from tests.tpm.helpers import RecordingTransport, connect

GOLDEN = S.make_reference()


@pytest.fixture(scope="module")
def device(module_swtpm) -> Iterator[tuple[Tpm, dict[str, Any]]]:  # type: ignore[no-untyped-def]
    tpm = connect(module_swtpm.uri, record=True)
    meta = store.unpack(store.pack(S.provision(tpm, GOLDEN)))  # as read back from the partition
    yield tpm, meta
    tpm.transport.close()


def _boot_with_extra(tpm: Tpm, pcr: int) -> None:
    """The golden boot plus one unexpected measurement in `pcr` (e.g. an extra EFI driver)."""
    S.boot(tpm, GOLDEN)
    tpm.pcr_extend(pcr, {"sha256": b"\x5a" * 32})


def test_golden_boot_unseals_the_sip_account(device) -> None:  # type: ignore[no-untyped-def]
    tpm, meta = device
    S.boot(tpm, GOLDEN)
    res = R.release(tpm, meta, measured=S.measured(GOLDEN))
    assert isinstance(res, R.Released) and res.names() == [S.SIP]
    sip = json.loads(bytes(res.get(S.SIP)))
    assert sip == {"username": "phone1", "password": S.SIP_PASSWORD}
    assert res.status() == {"unsealed": True, "state": "unsealed", "secrets": [S.SIP]}
    assert S.SIP_PASSWORD not in repr(res) + json.dumps(res.status())
    buf = res.get(S.SIP)
    res.wipe()
    assert buf == bytearray(len(buf)) and res.names() == []


def test_sealed_objects_have_userwithauth_clear(device) -> None:  # type: ignore[no-untyped-def]
    from firmware.tpm import constants as C
    from firmware.tpm.public import parse_public
    _, meta = device
    for o in meta["objects"]:
        attrs = parse_public(bytes.fromhex(o["public"]))["objectAttributes"]
        assert not attrs & C.TPMA_OBJECT_USERWITHAUTH, o["name"]


@pytest.mark.parametrize("pcr", [4, 7, 11])
def test_unexpected_measurement_refused_by_the_tpm(device, pcr: int) -> None:  # type: ignore[no-untyped-def]
    tpm, meta = device
    _boot_with_extra(tpm, pcr)
    res = R.release(tpm, meta, measured=S.measured(GOLDEN))
    assert isinstance(res, R.IntegrityFailure) and res.state == "integrity-failed"
    assert res.tpm_error is not None and res.tpm_error.base == E.TPM_RC_POLICY_FAIL
    assert res.tpm_error.command == "TPM2_Unseal"
    assert [d["pcr"] for d in res.pcrs_differ] == [pcr]
    assert res.pcrs_differ[0]["expected"] == GOLDEN["pcrs"]["sha256"][str(pcr)]
    assert res.components_differ == []
    assert res.reason.startswith("TPM refused the sealed credentials (TPM_RC_POLICY_FAIL at TPM2_Unseal); "
                                 "PCR %d differs from the sealed policy" % pcr)


@pytest.mark.parametrize("component", ["phone-app", "sip-media", "device-config"])
def test_tampered_component_refused_with_pcr_14_and_its_name(device, component: str) -> None:  # type: ignore[no-untyped-def]
    tpm, meta = device
    bad = S.tampered(GOLDEN, component, "patched " + component)
    S.boot(tpm, bad)
    res = R.release(tpm, meta, measured=S.measured(bad))
    assert isinstance(res, R.IntegrityFailure)
    assert res.tpm_error is not None and res.tpm_error.base == E.TPM_RC_POLICY_FAIL
    assert [d["pcr"] for d in res.pcrs_differ] == [14]
    assert [(d["name"], d["status"]) for d in res.components_differ] == [(component, "differs")]
    assert "PCR 14 differs" in res.reason and "component %s differs" % component in res.reason
    assert res.status()["state"] == "integrity-failed" and res.status()["tpm_rc"] == "0x99d"


def test_missing_component_is_named(device) -> None:  # type: ignore[no-untyped-def]
    tpm, meta = device
    bad = copy.deepcopy(GOLDEN)
    gone = bad["components"].pop(1)
    bad["events"] = [e for e in bad["events"] if e["digest"] != gone["sha256"]]
    S.boot(tpm, bad)
    res = R.release(tpm, meta, measured=S.measured(bad))
    assert isinstance(res, R.IntegrityFailure)
    assert [(d["name"], d["status"]) for d in res.components_differ] == [("sip-media", "missing")]


def test_refusal_comes_from_the_tpm_not_the_metadata(device) -> None:  # type: ignore[no-untyped-def]
    """An attacker who rewrites the store's expected PCRs and components to match a tampered
    boot fools only the diagnosis: the TPM still refuses. And wrong metadata on a golden boot does
    not stop a release: software comparison never gates it."""
    tpm, meta = device
    bad = S.tampered(GOLDEN, "phone-app", "backdoored")
    forged = copy.deepcopy(meta)
    forged["expected"]["14"] = reference.replay(bad["events"])[14].hex()
    forged["components"] = [dict(c, pcr=14) for c in S.measured(bad)]
    S.boot(tpm, bad)
    res = R.release(tpm, forged, measured=S.measured(bad))
    assert isinstance(res, R.IntegrityFailure)
    assert res.tpm_error is not None and res.tpm_error.base == E.TPM_RC_POLICY_FAIL
    assert res.pcrs_differ == [] and res.components_differ == []
    assert "the PCRs match the policy's recorded values" in res.reason
    S.boot(tpm, GOLDEN)
    res2 = R.release(tpm, forged, measured=S.measured(GOLDEN))
    assert isinstance(res2, R.Released)
    res2.wipe()


def test_user_secret_needs_the_pin_and_the_policy(device) -> None:  # type: ignore[no-untyped-def]
    tpm, meta = device
    S.boot(tpm, GOLDEN)
    assert isinstance(R.release(tpm, meta, names=[S.USER]), R.PinFailure)  # no PIN: not even tried
    res = R.release(tpm, meta, pin=S.PIN, names=[S.USER])
    assert isinstance(res, R.Released) and bytes(res.get(S.USER)) == S.USER_SECRET
    res.wipe()
    # PIN right, image wrong: the policy fails first, so this is no PIN guess (no DA count)
    before = S.lockout_counter(tpm)
    S.boot(tpm, S.tampered(GOLDEN, "phone-app", "x"))
    res = R.release(tpm, meta, pin=S.PIN, names=[S.USER])
    assert isinstance(res, R.IntegrityFailure) and res.tpm_error is not None
    assert res.tpm_error.base == E.TPM_RC_POLICY_FAIL
    assert S.lockout_counter(tpm) == before


def test_secret_and_pin_never_cross_the_interface_in_clear(device) -> None:  # type: ignore[no-untyped-def]
    tpm, meta = device
    wire: RecordingTransport = tpm.transport
    S.boot(tpm, GOLDEN)
    n = len(wire.commands)
    a = R.release(tpm, meta)
    b = R.release(tpm, meta, pin=S.PIN, names=[S.USER])
    assert isinstance(a, R.Released) and isinstance(b, R.Released)
    data = b"".join(wire.commands[n:] + wire.responses[n:])
    for needle in (S.SIP_PASSWORD.encode(), S.SIP_PASSWORD.encode()[:8], S.USER_SECRET, S.USER_SECRET[:8], S.PIN):
        assert needle not in data
    # provisioning went through the same recorder (module fixture): the whole wire history
    everything = wire.wire()
    for needle in (S.SIP_PASSWORD.encode(), S.USER_SECRET, S.PIN):
        assert needle not in everything
    a.wipe()
    b.wipe()


def test_store_bytes_hold_no_secret(device) -> None:  # type: ignore[no-untyped-def]
    _, meta = device
    raw = store.pack(meta)
    for needle in (S.SIP_PASSWORD.encode(), S.USER_SECRET, S.PIN, S.PIN.hex().encode(),
                   S.SIP_PASSWORD.encode().hex().encode(), S.USER_SECRET.hex().encode()):
        assert needle not in raw


def test_blob_copied_to_another_tpm_cannot_be_used(device, fresh_swtpm) -> None:  # type: ignore[no-untyped-def]
    _, meta = device
    other = connect(fresh_swtpm.uri)
    try:
        for e in GOLDEN["events"]:  # the other device even booted the golden image
            other.pcr_extend(e["pcr"], {"sha256": bytes.fromhex(e["digest"])})
        res = R.release(other, meta, measured=S.measured(GOLDEN))
        assert isinstance(res, R.IntegrityFailure)
        # the store names the persistent SRK the vendor made: the other TPM has none
        assert res.tpm_error is not None and res.tpm_error.command == "TPM2_ReadPublic"
        assert res.tpm_error.name == "TPM_RC_HANDLE"
        assert "no storage root key at 0x81000001" in res.reason
        # without that reference (a store from before the persistent SRK): the other TPM's
        # own SRK cannot load the blob
        legacy = {k: v for k, v in meta.items() if k != "srk"}
        res = R.release(other, legacy, measured=S.measured(GOLDEN))
        assert isinstance(res, R.IntegrityFailure)
        assert res.tpm_error is not None and res.tpm_error.command == "TPM2_Load"
        assert res.tpm_error.name == "TPM_RC_INTEGRITY"
        assert "sealed on another TPM" in res.reason
        res = R.release(other, legacy, pin=S.PIN, names=[S.USER])
        assert isinstance(res, R.IntegrityFailure)
    finally:
        other.transport.close()


def test_unusable_store_is_no_credentials(device) -> None:  # type: ignore[no-untyped-def]
    tpm, meta = device
    broken = copy.deepcopy(meta)
    broken["objects"][0]["public"] = "zz"
    res = R.release(tpm, broken)
    assert isinstance(res, R.StoreFailure) and res.state == "no-credentials"
    assert "objects[0].public is not hex" in res.reason
    res = R.release(tpm, meta, names=["nope"])
    assert isinstance(res, R.StoreFailure) and "no sealed object named nope" in res.reason
