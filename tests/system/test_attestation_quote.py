"""Issue 10 parts 1-2 on the real image: a phone provisioned with an attestation key (EK
certificate from the manufacturer CA, MakeCredential/ActivateCredential, AK certificate from the
device CA) booted under QEMU + OVMF + swtpm answers `quote NONCE_HEX` with evidence that
tpm2_checkquote accepts for that nonce and refuses for another; its PCRs and logs are the ones
the console reports; a bad nonce gets one clear error line; the endorsement authorization (and
the other hierarchy authorizations) never reach the console or the flash. One boot for the module.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from firmware.attest import evidence, pem
from firmware.tpm.attest import parse_attest
from host_tools.console import Console
from host_tools.provision import hierarchy
from tests.system.sealing_support import BOOT_TIMEOUT, SealedDevice

REPO = Path(__file__).resolve().parents[2]
DEVICE_CA = REPO / "build" / "keys" / "device-ca.pem"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def attested(built_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SealedDevice, Console]]:
    d = SealedDevice(built_image, tmp_path_factory.mktemp("attest"), name="attest")
    d.provision()
    with d.booted() as con:
        yield d, con


def _checkquote(tmp: Path, ev: dict[str, Any], nonce_hex: str) -> subprocess.CompletedProcess[str]:
    (tmp / "ak.pem").write_text(ev["ak_pub"])
    (tmp / "quote.msg").write_bytes(pem.b64decode(ev["quote"], "quote", 4096))
    (tmp / "quote.sig").write_bytes(pem.b64decode(ev["signature"], "signature", 4096))
    return subprocess.run(["tpm2_checkquote", "-u", "ak.pem", "-m", "quote.msg", "-s", "quote.sig",
                           "-q", nonce_hex, "-g", "sha256"], cwd=tmp, capture_output=True, text=True,
                          env=dict(os.environ, TPM2TOOLS_TCTI="none"), timeout=60)


def test_quote_is_accepted_by_tpm2_checkquote_and_refused_with_another_nonce(
        attested: tuple[SealedDevice, Console], tmp_path: Path) -> None:
    d, con = attested
    nonce = os.urandom(32)
    t0 = time.monotonic()
    answer = con.command("quote " + nonce.hex(), timeout=180).strip()
    print(f"quote in the guest (console round trip, TCG): {time.monotonic() - t0:.2f} s, "
          f"{len(answer)} bytes of evidence")
    assert "\n" not in answer and not answer.startswith("error:"), answer[:300]
    ev = evidence.decode(answer.encode())
    assert ev["nonce"] == nonce.hex() and ev["board"] == "qemu-x86_64"
    ok = _checkquote(tmp_path, ev, nonce.hex())
    assert ok.returncode == 0, ok.stdout + ok.stderr
    other = _checkquote(tmp_path, ev, os.urandom(32).hex())
    assert other.returncode != 0
    # the AK certificate chains to the device CA and certifies the key that signed
    cert = x509.load_pem_x509_certificate(ev["ak_cert"].encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(DEVICE_CA.read_bytes()))
    assert cert.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                                          ).decode() == ev["ak_pub"]
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "attest"
    # the quoted digest is over the PCRs the evidence lists, which are the console's own
    a = parse_attest(pem.b64decode(ev["quote"], "quote", 4096))
    idx = a["pcrSelect"][0][1]
    assert idx == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14] and sorted(map(int, ev["pcrs"])) == idx
    assert a["pcrDigest"] == hashlib.sha256(b"".join(bytes.fromhex(ev["pcrs"][str(i)]) for i in idx)).digest()
    console_pcrs = con.pcrs("sha256")["sha256"]
    assert all(ev["pcrs"][str(i)] == console_pcrs[str(i)] for i in idx)
    ref = json.loads((d.image / "reference.json").read_text())
    assert ev["pcrs"]["14"] == ref["pcrs"]["sha256"]["14"]
    logs = con.logs()
    assert pem.b64decode(ev["logs"]["firmware"], "f", evidence.MAX_LOG) == logs["firmware"]
    assert pem.b64decode(ev["logs"]["phone"], "p", evidence.MAX_LOG) == logs["phone"]


def test_enrolled_phone_still_unseals_its_credentials(attested: tuple[SealedDevice, Console]) -> None:
    _, con = attested
    st = con.status()
    assert st["unsealed"] is True, st


def test_bad_nonce_is_one_clear_error_line(attested: tuple[SealedDevice, Console]) -> None:
    _, con = attested
    for bad in ("quote 123", "quote nothex", "quote " + "ab" * 65):
        assert con.command(bad).strip() == "error: quote: the nonce must be 2..128 hex digits, an even number"


def test_hierarchy_authorizations_never_reach_the_console_or_the_flash(attested: tuple[SealedDevice, Console]) -> None:
    d, con = attested
    con.command("quote 00112233")
    record = hierarchy.read_record(hierarchy.record_path(d.device.dir))
    assert record is not None and len(record.endorsement) == 32
    text = d.console_text()
    flash = d.device.disk.read_bytes()
    for name in ("owner", "endorsement", "lockout"):
        value = record.get(name)
        for needle in (value.hex(), value.hex().upper()):
            assert needle not in text and needle.encode() not in flash, name
        assert value not in flash, name
