"""The TPM client against a real swtpm: start-up, random, capabilities, PCRs, keys (TPM 2.0 Part 3)."""

from __future__ import annotations

from typing import Iterator

import pytest

from firmware import compat
from firmware.errors import TransportError
from firmware.tpm import constants as C
from firmware.tpm import errors as E
from firmware.tpm import public
from firmware.tpm.client import Tpm
from firmware.tpm.errors import TpmError
from firmware.tpm.transport import open_uri
from firmware.tpm.transport_swtpm import SwtpmTransport
from tests.tpm.helpers import connect, flush_all, tools


@pytest.fixture
def tpm(swtpm) -> Iterator[Tpm]:  # type: ignore[no-untyped-def]
    t = connect(swtpm.uri)
    yield t
    flush_all(t)
    t.transport.close()  # type: ignore[attr-defined]


def test_startup_already_started(tpm: Tpm) -> None:
    # swtpm runs with startup-clear: a second Startup answers TPM_RC_INITIALIZE, reported as False
    assert tpm.startup() is False


def test_get_random(tpm: Tpm) -> None:
    a = tpm.get_random(100)
    b = tpm.get_random(100)
    assert len(a) == 100 and a != b


def test_capabilities(tpm: Tpm) -> None:
    algs = tpm.algorithms()
    for alg in (C.TPM_ALG_SHA256, C.TPM_ALG_ECC, C.TPM_ALG_AES, C.TPM_ALG_CFB, C.TPM_ALG_KEYEDHASH):
        assert alg in algs
    props = tpm.properties()
    assert props[C.TPM_PT_PCR_COUNT] == 24
    assert props[C.TPM_PT_MANUFACTURER] == int.from_bytes(b"IBM\x00", "big")
    # an empty swtpm state has all four banks, 24 PCRs each (DESIGN.md)
    assert set(tpm.pcr_banks()) == {"sha1", "sha256", "sha384", "sha512"}
    _, curves = tpm.get_capability(C.TPM_CAP_ECC_CURVES, 0, 16)
    assert C.TPM_ECC_NIST_P256 in curves


@pytest.mark.parametrize("bank", ["sha1", "sha256", "sha384", "sha512"])
def test_pcr_read_all_every_bank(tpm: Tpm, bank: str) -> None:
    # 24 PCRs need three TPM2_PCR_Read calls (at most 8 digests each, Part 3 §22.4)
    values = tpm.pcr_read_all(bank)
    assert sorted(values) == list(range(24))
    assert all(len(v) == compat.digest_size(bank) for v in values.values())
    assert values[0] == b"\x00" * compat.digest_size(bank)  # no firmware has extended PCR 0
    assert values[17] == b"\xff" * compat.digest_size(bank)  # DRTM PCRs start at all ones


def test_pcr_extend_matches_replay_and_tpm2_pcrread(swtpm, tpm: Tpm) -> None:  # type: ignore[no-untyped-def]
    before = tpm.pcr_read_all("sha256")[16]
    ev = compat.sha256(b"phone component")
    tpm.pcr_extend(16, {"sha256": ev, "sha1": compat.sha1(b"phone component")})
    expected = compat.sha256(before + ev)  # Part 1 §17.2: PCR := H(PCR || digest)
    assert tpm.pcr_read_all("sha256")[16] == expected
    tpm.transport.close()  # type: ignore[attr-defined]
    out = tools(swtpm.tcti, "tpm2_pcrread", "sha256:16").stdout.decode()
    assert "0x" + expected.hex().upper() in out


def test_pcr_extend_unknown_pcr_is_handle_error(tpm: Tpm) -> None:
    with pytest.raises(TpmError) as ei:
        tpm.pcr_extend(40, {"sha256": b"\x00" * 32})
    assert ei.value.handle == 1 and ei.value.command == "TPM2_PCR_Extend"


def test_create_primary_srk_deterministic(tpm: Tpm) -> None:
    a = tpm.create_primary(C.TPM_RH_OWNER, public.srk_template_ecc())
    b = tpm.create_primary(C.TPM_RH_OWNER, public.srk_template_ecc())
    try:
        # same template and seed -> same key (DESIGN.md: re-create the SRK at every boot)
        assert a["public"] == b["public"] and a["handle"] != b["handle"]
        p = a["parsed"]
        assert p["type"] == C.TPM_ALG_ECC and len(p["x"]) == 32 and len(p["y"]) == 32
        assert p["objectAttributes"] == public.SRK_ATTRIBUTES
        rp = tpm.read_public(a["handle"])
        assert rp["public"] == a["public"] and rp["name"] == a["name"]
    finally:
        tpm.flush_context(a["handle"])
        tpm.flush_context(b["handle"])
    with pytest.raises(TpmError) as ei:
        tpm.read_public(a["handle"])
    assert ei.value.base == E.TPM_RC_REFERENCE_H0
    assert "handle 1 of the command references a transient object" in str(ei.value)


def test_attestation_key_is_restricted_signer(tpm: Tpm) -> None:
    ak = tpm.create_primary(C.TPM_RH_ENDORSEMENT, public.ak_template_ecc())
    p = ak["parsed"]
    assert p["objectAttributes"] & C.TPMA_OBJECT_RESTRICTED
    assert p["objectAttributes"] & C.TPMA_OBJECT_SIGN_ENCRYPT
    assert p["scheme"] == (C.TPM_ALG_ECDSA, C.TPM_ALG_SHA256)
    tpm.flush_context(ak["handle"])


def test_hmac_session_authorizes_pcr_extend(tpm: Tpm) -> None:
    # an unsalted HMAC session: TPM checks our cpHash HMAC, we check its rpHash HMAC
    s = tpm.start_auth_session(C.TPM_SE_HMAC)
    tpm.pcr_extend(16, {"sha256": b"\x01" * 32}, session=s)
    tpm.pcr_extend(16, {"sha256": b"\x02" * 32}, session=s)  # nonces roll between commands
    tpm.flush_context(s.handle)


def test_open_uri_forms(swtpm) -> None:  # type: ignore[no-untyped-def]
    t = open_uri(swtpm.uri)
    assert isinstance(t, SwtpmTransport) and t.port == swtpm.port
    assert Tpm(t).get_random(4)
    t.close()
    assert open_uri("swtpm:///run/swtpm.sock").path == "/run/swtpm.sock"
    assert open_uri("device:/dev/tpmrm0").path == "/dev/tpmrm0"  # type: ignore[union-attr]
    assert open_uri("/dev/tpm0").path == "/dev/tpm0"  # type: ignore[union-attr]
    assert open_uri("swtpm:localhost").port == 2321  # type: ignore[union-attr]
    for bad in ("tcp:1.2.3.4", "swtpm:host:notaport", "swtpm://relative"):
        with pytest.raises(ValueError):
            open_uri(bad)


def test_transport_errors_are_typed() -> None:
    with pytest.raises(TransportError):
        Tpm(open_uri("/dev/no-such-tpm")).get_random(1)
    with pytest.raises(TransportError):
        Tpm(open_uri("swtpm:127.0.0.1:1")).get_random(1)


def test_power_cycle_over_control_channel(fresh_swtpm) -> None:  # type: ignore[no-untyped-def]
    # CMD_INIT on the control channel (port + 1) is a platform reset: PCRs return to their reset
    # values and the TPM needs TPM2_Startup again (Part 1 §12.2.3).
    t = open_uri(fresh_swtpm.uri)
    tpm = Tpm(t)
    tpm.pcr_extend(16, {"sha256": b"\x01" * 32})
    assert tpm.pcr_read_all("sha256", [16])[16] != b"\x00" * 32
    tpm.shutdown()
    t.close()
    t.power_on()  # type: ignore[union-attr]
    with pytest.raises(TpmError) as ei:
        tpm.get_random(1)
    assert ei.value.name == "TPM_RC_INITIALIZE"
    assert tpm.startup() is True
    assert tpm.pcr_read_all("sha256", [16])[16] == b"\x00" * 32
    t.close()
