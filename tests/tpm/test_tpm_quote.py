"""TPM2_Quote (TPM 2.0 Part 3 §18.4) with a restricted ECC attestation key, verified with the
`cryptography` package and with tpm2_checkquote."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from firmware import compat
from firmware.tpm import constants as C
from firmware.tpm import policy, public
from firmware.tpm.attest import parse_attest
from firmware.tpm.client import Tpm
from firmware.tpm.marshal import Writer
from firmware.tpm.structures import SIGNATURE
from tests.tpm.helpers import connect, flush_all, tools

PCRS = [0, 4, 7, 11, 14]


@pytest.fixture
def tpm(swtpm) -> Iterator[Tpm]:  # type: ignore[no-untyped-def]
    t = connect(swtpm.uri)
    yield t
    flush_all(t)
    t.transport.close()  # type: ignore[attr-defined]


def _ak_key(parsed: dict) -> ec.EllipticCurvePublicKey:  # type: ignore[type-arg]
    return ec.EllipticCurvePublicNumbers(int.from_bytes(parsed["x"], "big"),
                                         int.from_bytes(parsed["y"], "big"),
                                         ec.SECP256R1()).public_key()


def test_quote_verifies(tpm: Tpm) -> None:
    ak = tpm.create_primary(C.TPM_RH_ENDORSEMENT, public.ak_template_ecc())
    nonce = compat.random_bytes(32)
    attest, sig = tpm.quote(ak["handle"], nonce, policy.pcr_selection("sha256", PCRS))
    a = parse_attest(attest)
    assert a["type"] == C.TPM_ST_ATTEST_QUOTE and a["extraData"] == nonce
    assert a["pcrSelect"] == policy.pcr_selection("sha256", PCRS)
    values = tpm.pcr_read_all("sha256")
    assert a["pcrDigest"] == compat.sha256(b"".join(values[i] for i in PCRS))
    assert sig["sigAlg"] == C.TPM_ALG_ECDSA and sig["hash"] == C.TPM_ALG_SHA256
    der = encode_dss_signature(int.from_bytes(sig["r"], "big"), int.from_bytes(sig["s"], "big"))
    key = _ak_key(ak["parsed"])
    key.verify(der, attest, ec.ECDSA(hashes.SHA256()))
    # a changed byte (e.g. a forged PCR digest) does not verify
    forged = attest[:-1] + bytes([attest[-1] ^ 1])
    with pytest.raises(InvalidSignature):
        key.verify(der, forged, ec.ECDSA(hashes.SHA256()))


def test_quote_tpm2_checkquote(swtpm, tpm: Tpm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ak = tpm.create_primary(C.TPM_RH_ENDORSEMENT, public.ak_template_ecc())
    nonce = bytes(range(16))
    attest, sig = tpm.quote(ak["handle"], nonce, policy.pcr_selection("sha256", PCRS))
    tpm.transport.close()  # type: ignore[attr-defined]
    pem = _ak_key(ak["parsed"]).public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "ak.pem").write_bytes(pem)
    (tmp_path / "quote.msg").write_bytes(attest)
    w = Writer()
    SIGNATURE.write(w, sig)
    (tmp_path / "quote.sig").write_bytes(w.bytes())
    ok = tools(swtpm.tcti, "tpm2_checkquote", "-u", "ak.pem", "-m", "quote.msg", "-s", "quote.sig",
               "-q", nonce.hex(), "-g", "sha256", cwd=tmp_path)
    assert ok.returncode == 0
    bad = tools(swtpm.tcti, "tpm2_checkquote", "-u", "ak.pem", "-m", "quote.msg", "-s", "quote.sig",
                "-q", "ff" * 16, "-g", "sha256", cwd=tmp_path, check=False)
    assert bad.returncode != 0
