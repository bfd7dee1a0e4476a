# mypy: disable-error-code="no-untyped-call"
"""Real evidence on the host's swtpm, without QEMU (no tests here): the captured OVMF firmware log
(tests/data/ovmf, PFP crypto-agile) and a phone log from the loader's writer are extended into a
fresh swtpm, an AK is made under the SRK and certified by a device CA of the test, and
firmware.attest.quote (the broker's code) quotes. A vendor-signed reference set whose image
predicts exactly those PCRs goes with it. The TPM's view can differ from the logs' claims:
`measured` is what the TPM is extended with, `claimed` what the evidence says."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.attest import evidence, pem, quote as quote_mod
from firmware.attest import trust as trust_mod
from firmware.eventlog.parser import parse_log
from firmware.eventlog.replayer import replay
from firmware.eventlog.types import EV_NO_ACTION
from firmware.eventlog.writer import PhoneLog
from firmware.tpm.client import Tpm
from host_tools.image import references
from host_tools.provision import core, device_ca, identity

REPO = Path(__file__).resolve().parents[2]
FIRMWARE_LOG = (REPO / "tests/data/ovmf/binary_bios_measurements").read_bytes()
BOARD = "qemu-x86_64"
COMPONENTS = (("phone-app", b"phone-app code"), ("sip-media", b"sip and media code"),
              ("device-config", b'{"sip": "config"}'), ("ca-bundle", b"-----BEGIN CERT..."))


def phone_log(version: str = "0.1.0", counter: int = 1, changed: dict[str, bytes] | None = None) -> bytes:
    log = PhoneLog(("sha256",))
    log.add_bundle(BOARD, version, counter)
    for name, data in COMPONENTS:
        log.add_component(name, version, (changed or {}).get(name, data))
    log.close()
    return log.to_bytes()


def extend_log(tpm: Tpm, data: bytes) -> None:
    """Extend every event's sha256 digest of `data` into the TPM (what the firmware/loader did)."""
    from firmware.tcg_alg import TPM_ALG_SHA256
    log = parse_log(data)
    pos = log.header.banks.index("sha256")
    for ev in log.events:
        if ev.type != EV_NO_ACTION:
            tpm.pcr_extend(ev.pcr, [(TPM_ALG_SHA256, ev.digest_values[pos])])


def predicted(firmware: bytes, phone: bytes) -> dict[int, bytes]:
    """What the vendor's prediction of PCRs 4, 5, 7, 9, 11, 12, 14 is for these logs."""
    fw = replay(parse_log(firmware), ["sha256"])["sha256"]
    ph = replay(parse_log(phone), ["sha256"])["sha256"]
    out = {p: fw[p] for p in (4, 5, 7, 9, 11, 12)}
    out[14] = ph[14]
    return out


def image(version: str = "0.1.0", counter: int = 1) -> dict[str, Any]:
    """The set's entry for the golden image of `version`."""
    log = parse_log(phone_log(version, counter))
    bundle_digest = log.events[0].digest("sha256")
    return {"version": version, "board": BOARD, "anti_rollback_counter": counter,
            "bundle_sha256": bundle_digest.hex(), "pcr": 14,
            "components": [{"name": n, "version": version, "sha256": hashlib.sha256(d).hexdigest()}
                           for n, d in COMPONENTS],
            "pcrs": {"sha256": {str(k): v.hex() for k, v in
                                predicted(FIRMWARE_LOG, phone_log(version, counter)).items()}}}


class Vendor:
    def __init__(self, tmp: Path) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.pubkey = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.dir = tmp

    def signed_set(self, images: list[dict[str, Any]], min_version: str = "0.1.0",
                   revoked_versions: tuple[str, ...] = (), revoked_sha256: tuple[str, ...] = ()
                   ) -> tuple[bytes, bytes]:
        data = references.make_set(BOARD, images, min_version, revoked_versions, revoked_sha256)
        return data, references.sign(self.key, data)

    def trust(self, device_cas: list[str], **kw: Any) -> trust_mod.Trust:
        images = kw.pop("images", None) or [image()]
        data, sig = self.signed_set(images, **kw)
        return trust_mod.load(data, sig, self.pubkey, device_cas)


class Device:
    """A TPM with an AK certified by `ca`, booted with `firmware` and `phone` logs (the TPM's PCRs
    are those logs replayed)."""

    def __init__(self, tpm: Tpm, ca: device_ca.DeviceCa, name: str = "phone1") -> None:
        self.tpm = tpm
        srk, _ = core.persist_srk(tpm, b"")
        try:
            ak = identity.create_ak(tpm, srk, b"")
        finally:
            tpm.flush_context(srk)
        cert = device_ca.issue_ak_cert(ca, identity.ak_public_key(ak["parsed"]), name, ak["name"], ca.cert)
        self.record = {"ak_handle": identity.AK_HANDLE,
                       "ak_cert": cert.public_bytes(serialization.Encoding.PEM).decode()}

    def boot(self, firmware: bytes, phone: bytes) -> None:
        extend_log(self.tpm, firmware)
        extend_log(self.tpm, phone)

    def evidence(self, nonce: bytes, firmware: bytes, phone: bytes) -> dict[str, Any]:
        """Evidence as the console prints it, with `firmware` and `phone` as the claimed logs."""
        ans = quote_mod.quote(self.tpm, self.record, nonce)
        ev = {"version": 1, "nonce": nonce.hex(), "board": BOARD, "image_version": "0.1.0",
              "logs": {"firmware": pem.b64encode(firmware), "phone": pem.b64encode(phone)}}
        ev.update(ans)
        evidence.check(ev)
        return ev


def capture(out: Path, tpm: Tpm) -> None:
    """tests/data/attest/: one golden device's evidence for NONCE (nonce.hex) and the trust that
    judges it verified (references.json/.sig, vendor-pubkey.pem, device-ca.pem), from a fresh
    swtpm (python -m tests.tpm.attest_support OUT)."""
    out.mkdir(parents=True, exist_ok=True)
    ca = device_ca.load_or_create(out / "ca-keys")
    vendor = Vendor(out)
    dev = Device(tpm, ca)
    golden = phone_log()
    dev.boot(FIRMWARE_LOG, golden)
    nonce = bytes(range(0x40, 0x60))
    ev = dev.evidence(nonce, FIRMWARE_LOG, golden)
    data, sig = vendor.signed_set([image()])
    (out / "evidence.json").write_bytes(evidence.encode(ev) + b"\n")
    (out / "nonce.hex").write_text(nonce.hex() + "\n")
    (out / "references.json").write_bytes(data)
    (out / "references.sig").write_bytes(sig)
    (out / "vendor-pubkey.pem").write_bytes(vendor.pubkey)
    (out / "device-ca.pem").write_text(ca.pem)
    tampered = phone_log(changed={"phone-app": b"phone-app code, patched"})
    (out / "phone-tampered.bin").write_bytes(tampered)
    import shutil
    shutil.rmtree(out / "ca-keys")


if __name__ == "__main__":
    import sys
    from tests.conftest import _run_swtpm
    from tests.tpm.helpers import connect
    for sw in _run_swtpm():
        t = connect(sw.uri)
        capture(Path(sys.argv[1]), t)
        t.transport.close()
