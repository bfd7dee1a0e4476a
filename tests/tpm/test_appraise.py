# mypy: disable-error-code="no-untyped-call"
"""Appraisal (firmware/attest/appraise.py) of real quotes from the host's swtpm: a golden device is
`verified`; each forgery fails and names its check; a tampered but honest device is `unknown`
naming the component; older or revoked vendor images are `outdated`; no evidence `unattested`.
The attacks a lying console can make (PCR values or logs that are not what the TPM quoted) are
here too; on a booted phone: tests/system/test_appraise_quote.py."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.attest import levels
from firmware.attest.appraise import appraise
from firmware.attest.pem import b64decode, b64encode
from firmware.attest.trust import TrustError, load as load_trust
from firmware.tpm.marshal import Reader, Writer
from firmware.tpm.structures import SIGNATURE
from host_tools.provision import device_ca
from tests.tpm import attest_support as A
from tests.tpm.helpers import connect

NONCE = bytes(range(32))


class World:
    def __init__(self, tmp: Path, tpm: Any) -> None:
        self.ca = device_ca.load_or_create(tmp / "ca")
        self.vendor = A.Vendor(tmp)
        self.device = A.Device(tpm, self.ca)
        self.golden_phone = A.phone_log()
        self.device.boot(A.FIRMWARE_LOG, self.golden_phone)
        self.trust = self.vendor.trust([self.ca.pem])

    def evidence(self, nonce: bytes = NONCE, phone: bytes | None = None) -> dict[str, Any]:
        return self.device.evidence(nonce, A.FIRMWARE_LOG, phone or self.golden_phone)


@pytest.fixture
def world(fresh_swtpm, tmp_path: Path) -> Iterator[World]:  # type: ignore[no-untyped-def]
    tpm = connect(fresh_swtpm.uri)
    yield World(tmp_path, tpm)
    tpm.transport.close()


def _check(j: Any, name: str) -> tuple[bool, str]:
    for n, ok, detail in j.checks:
        if n == name:
            return ok, detail
    raise AssertionError("no check %r in %r" % (name, j.checks))


def test_golden_device_is_verified(world: World) -> None:
    j = appraise(world.evidence(), NONCE, world.trust, now=None)
    assert j.level == levels.VERIFIED, j.checks
    assert j.image_version == "0.1.0" and j.differs == [] and j.board == A.BOARD
    assert [c[0] for c in j.checks] == ["evidence", "AK certificate chain", "AK key certified",
                                        "quote signature", "nonce", "PCR selection", "PCR digest",
                                        "log replay", "image", "components", "reference PCRs",
                                        "version and revocations"]
    assert all(ok for _, ok, _ in j.checks)
    assert [c["status"] for c in j.components] == ["ok"] * 4
    rows = {r["pcr"]: r for r in j.pcrs}
    assert sorted(rows) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14]
    assert rows[14]["replayed"] == rows[14]["quoted"] == rows[14]["expected"]
    assert rows[0]["expected"] is None  # platform firmware: replayed, not in the image's prediction
    # the encoded form is accepted as well
    from firmware.attest import evidence
    assert appraise(evidence.encode(world.evidence()), NONCE, world.trust).level == levels.VERIFIED


def test_no_evidence_is_unattested(world: World) -> None:
    j = appraise(None, NONCE, world.trust)
    assert j.level == levels.UNATTESTED and j.why.startswith("no evidence")


def test_wrong_nonce_fails_naming_the_nonce(world: World) -> None:
    ev = world.evidence(nonce=b"\x01" * 32)
    j = appraise(ev, NONCE, world.trust)
    assert j.level == levels.FAILED and j.why.startswith("nonce: quote's extraData 0101"), j.why
    # the evidence's own nonce field rewritten to ours does not help: the TPM signed the other one
    ev["nonce"] = NONCE.hex()
    assert appraise(ev, NONCE, world.trust).why.startswith("nonce: quote's extraData")


def test_forged_signature_fails(world: World) -> None:
    ev = world.evidence()
    sig = SIGNATURE.read(Reader(b64decode(ev["signature"], "s", 512)), "s")
    sig["s"] = bytes([sig["s"][0] ^ 1]) + sig["s"][1:]
    w = Writer()
    SIGNATURE.write(w, sig)
    ev["signature"] = b64encode(w.bytes())
    j = appraise(ev, NONCE, world.trust)
    assert j.level == levels.FAILED
    assert j.why == "quote signature: ECDSA signature over TPMS_ATTEST does not verify with the certified AK"
    # a TPMS_ATTEST edited to carry our nonce (the attacker replays an old quote): same check
    ev = world.evidence(nonce=b"\x02" * 32)
    raw = bytearray(b64decode(ev["quote"], "q", 1024))
    at = raw.find(b"\x02" * 32)
    raw[at:at + 32] = NONCE
    ev["quote"], ev["nonce"] = b64encode(bytes(raw)), NONCE.hex()
    assert appraise(ev, NONCE, world.trust).why.startswith("quote signature: ECDSA signature")


def test_ak_from_another_ca_fails_the_chain(world: World, tmp_path: Path) -> None:
    other = device_ca.load_or_create(tmp_path / "other-ca")
    ev = world.evidence()
    # a key of the attacker's, certified by another CA with the same subject name as ours
    key = ec.generate_private_key(ec.SECP256R1())
    cert = device_ca.issue_ak_cert(other, key.public_key(), "phone1", b"\x00" * 34, other.cert)
    from cryptography.hazmat.primitives import serialization
    ev["ak_cert"] = cert.public_bytes(serialization.Encoding.PEM).decode()
    j = appraise(ev, NONCE, world.trust)
    assert j.level == levels.FAILED and j.why.startswith("AK certificate chain: "), j.why
    assert "does not verify with device CA" in j.why or "is not device CA" in j.why
    # the genuine AK certificate with a different ak_pub: the key check names it
    ev = world.evidence()
    ev["ak_pub"] = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    j = appraise(ev, NONCE, world.trust)
    assert j.why == "AK key certified: ak_pub is not the key in the AK certificate"
    # our own certificate, but the appraiser trusts only the other CA
    other_trust = world.vendor.trust([other.pem])
    j = appraise(world.evidence(), NONCE, other_trust)
    assert j.level == levels.FAILED and j.why.startswith("AK certificate chain: AK certificate "
                                                         "does not chain to a device CA"), j.why


def test_lying_pcr_values_fail_the_pcr_digest(world: World) -> None:
    """A tampered phone (PCR 14 from a changed phone-app) whose console reports the golden PCR 14
    and the golden log with the TPM's genuine quote."""
    tampered = A.phone_log(changed={"phone-app": b"phone-app code + backdoor"})
    golden = world.evidence()  # before the tampered boot, for its PCR values
    from tests.tpm.test_secrets_support import reboot
    reboot(world.device.tpm)
    world.device.boot(A.FIRMWARE_LOG, tampered)
    ev = world.evidence()
    assert ev["pcrs"]["14"] != golden["pcrs"]["14"]
    honest = appraise(world.evidence(phone=tampered), NONCE, world.trust)
    assert honest.level == levels.UNKNOWN and honest.differs == ["phone-app", "PCR 14"], honest.differs
    assert "phone-app" in honest.why
    assert [c["status"] for c in honest.components] == ["differs", "ok", "ok", "ok"]
    lie = dict(ev, pcrs=golden["pcrs"])  # golden log (the default) + golden PCRs
    j = appraise(lie, NONCE, world.trust)
    assert j.level == levels.FAILED and j.why.startswith("PCR digest: pcrDigest "), j.why
    # golden log, true PCRs: the replay of PCR 14 contradicts the quote
    j = appraise(ev, NONCE, world.trust)
    assert j.level == levels.FAILED and j.differs == ["PCR 14"]
    assert j.why.startswith("log replay: the logs do not replay to the quoted PCR 14 (PCR 14 from the phone log)")


def test_outdated_and_revoked_vendor_images(world: World) -> None:
    ev = world.evidence()
    t = world.vendor.trust([world.ca.pem], min_version="0.2.0")
    j = appraise(ev, NONCE, t)
    assert j.level == levels.OUTDATED and j.why == ("vendor image 0.1.0 is outdated: version 0.1.0 "
                                                     "is below the minimum 0.2.0"), j.why
    t = world.vendor.trust([world.ca.pem], revoked_versions=("0.1.0",))
    assert appraise(ev, NONCE, t).why.endswith("version 0.1.0 is revoked")
    app = hashlib.sha256(dict(A.COMPONENTS)["sip-media"]).hexdigest()
    t = world.vendor.trust([world.ca.pem], revoked_sha256=(app,))
    j = appraise(ev, NONCE, t)
    assert j.level == levels.OUTDATED and j.differs == ["sip-media"] and j.why.endswith("revoked component sip-media")


def test_image_the_set_does_not_know_is_unknown(world: World) -> None:
    t = world.vendor.trust([world.ca.pem], images=[A.image("0.2.0", 2)], min_version="0.2.0")
    j = appraise(world.evidence(), NONCE, t)
    assert j.level == levels.UNKNOWN and j.differs == ["bundle"] and j.image_version == "0.1.0"
    assert j.why == "image 0.1.0 (board qemu-x86_64) is not one the vendor's reference set knows"


def test_reference_set_signature_is_checked(world: World) -> None:
    data, sig = world.vendor.signed_set([A.image()])
    with pytest.raises(TrustError, match="signature does not verify with the vendor key"):
        load_trust(data.replace(b'"min_version": "0.1.0"', b'"min_version": "0.0.1"'), sig,
                   world.vendor.pubkey, [world.ca.pem])
    other = A.Vendor(Path("."))
    with pytest.raises(TrustError, match="signature does not verify"):
        load_trust(data, sig, other.pubkey, [world.ca.pem])
    with pytest.raises(TrustError, match="no device CA"):
        load_trust(data, sig, world.vendor.pubkey, [])


def test_malformed_evidence_fails_naming_the_field(world: World) -> None:
    ev = world.evidence()
    ev["pcrs"]["14"] = "zz"
    j = appraise(ev, NONCE, world.trust)
    assert j.level == levels.FAILED and j.why == "evidence: pcrs.14 must be a hex string"
    j = appraise(b"{not json", NONCE, world.trust)
    assert j.level == levels.FAILED and j.why == "evidence: evidence is not UTF-8 JSON"
    ev = world.evidence()
    ev["logs"]["phone"] = base64.b64encode(b"garbage that is no log").decode()
    j = appraise(ev, NONCE, world.trust)
    assert j.level == levels.FAILED and j.why.startswith("log replay: phone log: "), j.why


def _checkquote(tmp: Path, ev: dict[str, Any], nonce: bytes) -> int:
    import os
    import subprocess
    (tmp / "ak.pem").write_text(ev["ak_pub"])
    (tmp / "quote.msg").write_bytes(b64decode(ev["quote"], "q", 1024))
    (tmp / "quote.sig").write_bytes(b64decode(ev["signature"], "s", 512))
    return subprocess.run(["tpm2_checkquote", "-u", "ak.pem", "-m", "quote.msg", "-s", "quote.sig",
                           "-q", nonce.hex(), "-g", "sha256"], cwd=tmp, capture_output=True,
                          env=dict(os.environ, TPM2TOOLS_TCTI="none"), timeout=60).returncode


def test_signature_and_nonce_verdicts_agree_with_tpm2_checkquote(world: World, tmp_path: Path) -> None:
    """tpm2-tools (an independent TPMS_ATTEST + ECDSA implementation) as the oracle for checks
    4-5: it accepts what we accept and refuses the forged signature and the other nonce."""
    ev = world.evidence()
    assert _checkquote(tmp_path, ev, NONCE) == 0 and appraise(ev, NONCE, world.trust).level == levels.VERIFIED
    other = b"\x07" * 32
    assert _checkquote(tmp_path, ev, other) != 0
    assert appraise(ev, other, world.trust).why.startswith("nonce: ")
    sig = SIGNATURE.read(Reader(b64decode(ev["signature"], "s", 512)), "s")
    sig["r"] = bytes([sig["r"][0] ^ 0x80]) + sig["r"][1:]
    w = Writer()
    SIGNATURE.write(w, sig)
    ev["signature"] = b64encode(w.bytes())
    assert _checkquote(tmp_path, ev, NONCE) != 0
    assert appraise(ev, NONCE, world.trust).why.startswith("quote signature: ")


def test_bundle_event_in_another_pcr_is_not_the_image(world: World) -> None:
    """A loader that measures the vendor's bundle identity into PCR 13 and its own components into
    14: the bundle event names the vendor image, but PCR 13 is not quoted, so it is no evidence.
    (Before the appraiser ignored events of unquoted PCRs, this log was reported as image 0.1.0,
    unknown only through PCR 14.)"""
    from firmware.eventlog import writer
    banks = ("sha256",)
    log = writer.spec_id_event(banks) + writer.measure_bundle(A.BOARD, "0.1.0", 1, banks, pcr=13)[1]
    for name, data in A.COMPONENTS:
        log += writer.measure_component(name, "0.1.0", data, banks)[1]
    log += writer.separator_event(banks)[1]
    from tests.tpm.test_secrets_support import reboot
    reboot(world.device.tpm)
    world.device.boot(A.FIRMWARE_LOG, log)
    j = appraise(world.evidence(phone=log), NONCE, world.trust)
    assert j.level == levels.UNKNOWN and j.differs == ["bundle"] and j.image_version is None, (j.differs, j.why)
    assert j.why == ("no bundle event in a quoted PCR (phone log event 1 is in PCR 13, which the "
                     "quote does not cover)")
