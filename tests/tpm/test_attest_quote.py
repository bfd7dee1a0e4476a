# mypy: disable-error-code="no-untyped-call"
"""The device side of attestation on the host's swtpm, without QEMU: the broker's `quote`
operation (firmware/boot/broker_io.py -> firmware/attest/quote.py) with a persistent AK and its
device-CA certificate in the store's "attestation" record, asked by the phone side
(PhoneDevice + console core) over a real socketpair. The console's evidence is checked with
tpm2_checkquote (signature + nonce) and with `cryptography`; the broker refuses malformed quote
requests before the TPM sees them. (On the booted image: tests/system/test_attestation.py.)"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from firmware.attest import evidence, pem
from firmware.boot import broker, broker_io
from firmware.console.core import Console
from firmware.console.phone import PhoneDevice
from firmware.console.tpm_broker import BrokerChannel
from firmware.secrets import hook, store
from firmware.tcg_alg import TPM_ALG_SHA256
from firmware.tpm import constants as C
from firmware.tpm.attest import parse_attest
from firmware.tpm.marshal import Reader
from firmware.tpm.structures import SIGNATURE
from host_tools.provision import core, device_ca, identity
from tests.tpm import test_secrets_support as S
from tests.tpm.helpers import connect

GOLDEN = S.make_reference()
FIRMWARE_LOG = b"firmware log bytes \x00\x01"
PHONE_LOG = b"phone log bytes \xff"


class Served:
    def __init__(self, con: Console, log: list[str], channel: BrokerChannel, tpm: Any, ca: device_ca.DeviceCa,
                 run_dir: Path) -> None:
        self.con, self.log, self.channel, self.tpm, self.ca, self.run_dir = con, log, channel, tpm, ca, run_dir


@pytest.fixture
def served(fresh_swtpm, tmp_path: Path) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    tpm = connect(fresh_swtpm.uri, record=True)
    meta = S.provision(tpm, GOLDEN, da=core.DaParameters(max_tries=5, recovery_time=600))
    ak = identity.create_ak(tpm, core.SRK_HANDLE, b"")
    ca = device_ca.load_or_create(tmp_path / "keys")
    cert = device_ca.issue_ak_cert(ca, identity.ak_public_key(ak["parsed"]), "phone1", ak["name"], ca.cert)
    meta["attestation"] = {"ak_handle": identity.AK_HANDLE, "ak_name": ak["name"].hex(),
                           "ak_cert": cert.public_bytes(serialization.Encoding.PEM).decode(), "device_ca": ca.pem}
    S.boot(tpm, GOLDEN)
    (tmp_path / hook.STORE_COPY).write_bytes(store.pack(meta))
    (tmp_path / "state.json").write_text(json.dumps(
        {"state": "running", "bundle_version": "1.0.0", "components": S.measured(GOLDEN)}))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "firmware.bin").write_bytes(FIRMWARE_LOG)
    (tmp_path / "logs" / "phone.bin").write_bytes(PHONE_LOG)
    broker_end, phone_end = broker_io.channel()
    log: list[str] = []
    ops = broker_io.TpmOps(tpm, str(tmp_path), hook)
    t = threading.Thread(target=broker_io.serve, args=(broker_end, broker.Broker(ops), log.append), daemon=True)
    t.start()
    channel = BrokerChannel(phone_end)
    dev = PhoneDevice(run_dir=str(tmp_path), tpm_device="/nonexistent/tpmrm0",
                      firmware_log="/nonexistent/binary_bios_measurements", broker=channel)
    yield Served(Console(dev), log, channel, tpm, ca, tmp_path)
    phone_end.close()
    t.join(10)
    hook.forget()
    tpm.transport.close()


def _quote(served: Served, nonce: bytes) -> dict[str, Any]:
    text, _ = served.con.handle(("quote " + nonce.hex()).encode())
    assert text.endswith("\n") and text.count("\n") == 1, text[:200]
    ev: dict[str, Any] = evidence.decode(text.strip().encode())
    return ev


def _files(tmp: Path, ev: dict[str, Any]) -> None:
    (tmp / "ak.pem").write_text(ev["ak_pub"])
    (tmp / "quote.msg").write_bytes(pem.b64decode(ev["quote"], "quote", 4096))
    (tmp / "quote.sig").write_bytes(pem.b64decode(ev["signature"], "signature", 4096))


def _checkquote(tmp: Path, nonce_hex: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tpm2_checkquote", "-u", "ak.pem", "-m", "quote.msg", "-s", "quote.sig",
                           "-q", nonce_hex, "-g", "sha256"], cwd=tmp, capture_output=True, text=True,
                          env={"TPM2TOOLS_TCTI": "none", "PATH": "/usr/bin:/bin"}, timeout=60)


def test_console_quote_is_accepted_by_tpm2_checkquote_and_refused_with_another_nonce(served: Served) -> None:
    nonce = bytes(range(7, 39))
    ev = _quote(served, nonce)
    assert ev["nonce"] == nonce.hex() and ev["version"] == 1 and ev["image_version"] == "1.0.0"
    assert pem.b64decode(ev["logs"]["firmware"], "f", 100) == FIRMWARE_LOG
    assert pem.b64decode(ev["logs"]["phone"], "p", 100) == PHONE_LOG
    _files(served.run_dir, ev)
    ok = _checkquote(served.run_dir, nonce.hex())
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = _checkquote(served.run_dir, "ff" + nonce.hex()[2:])
    assert bad.returncode != 0
    # the same checks with cryptography: ECDSA over TPMS_ATTEST, the PCR digest over the values
    attest = pem.b64decode(ev["quote"], "quote", 4096)
    a = parse_attest(attest)
    assert a["extraData"] == nonce
    assert a["pcrSelect"] == [(TPM_ALG_SHA256, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14])]
    values = b"".join(bytes.fromhex(ev["pcrs"][str(i)]) for i in a["pcrSelect"][0][1])
    assert a["pcrDigest"] == hashlib.sha256(values).digest()
    assert ev["pcrs"]["14"] == GOLDEN["pcrs"]["sha256"]["14"]
    sig = SIGNATURE.read(Reader(pem.b64decode(ev["signature"], "s", 4096)), "signature")
    assert sig["sigAlg"] == C.TPM_ALG_ECDSA and sig["hash"] == TPM_ALG_SHA256
    key = serialization.load_pem_public_key(ev["ak_pub"].encode())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(encode_dss_signature(int.from_bytes(sig["r"], "big"), int.from_bytes(sig["s"], "big")), attest,
               ec.ECDSA(hashes.SHA256()))
    # the AK certificate is the device CA's, over the very key that signed
    cert = x509.load_pem_x509_certificate(ev["ak_cert"].encode())
    cert.verify_directly_issued_by(served.ca.cert)
    assert cert.public_key() == key
    assert served.log == []


def test_broker_refuses_malformed_quote_requests_before_the_tpm(served: Served) -> None:
    before = len(served.tpm.transport.commands)
    for req in (b'{"op": "quote"}', b'{"op": "quote", "nonce": ""}', b'{"op": "quote", "nonce": "abc"}',
                b'{"op": "quote", "nonce": "zz"}', b'{"op": "quote", "nonce": 12}',
                b'{"op": "quote", "nonce": "' + b"00" * 65 + b'"}',
                b'{"op": "quote", "nonce": "00", "pcrs": [16]}', b'{"op": "quote", "nonce": "00", "handle": 1}'):
        served.channel.sock.send(req)
        ans = json.loads(served.channel.sock.recv(broker.MAX_ANSWER + 1))
        assert ans["ok"] is False and ans["error"].startswith("refused: quote: "), (req, ans)
    assert len(served.log) == 8 and all(line.startswith("broker: refused a request (op quote,") for line in served.log)
    assert len(served.tpm.transport.commands) == before  # none reached the TPM
    # the console refuses a bad nonce itself, with a clear line
    for bad in ("quote 0", "quote xyz1", "quote " + "00" * 65, "quote 0x1234"):
        text, _ = served.con.handle(bad.encode())
        assert text == "error: quote: the nonce must be 2..128 hex digits, an even number\n", text
    text, _ = served.con.handle(b"quote")
    assert text.startswith("error: quote needs a nonce")


def test_quote_without_an_attestation_key_says_so(served: Served) -> None:
    meta = store.unpack((served.run_dir / hook.STORE_COPY).read_bytes())
    del meta["attestation"]
    (served.run_dir / hook.STORE_COPY).write_bytes(store.pack(meta))
    text, _ = served.con.handle(b"quote 0011")
    assert text.startswith("error: quote failed: quote failed: EvidenceError: this device has no attestation key"), text


def test_store_pointing_the_ak_handle_at_another_key_is_refused(served: Served) -> None:
    """The data partition is writable by whoever holds the flash: a store whose ak_handle names
    the SRK (a decryption key) gets no quote from it; the broker says which key and why."""
    meta = store.unpack((served.run_dir / hook.STORE_COPY).read_bytes())
    meta["attestation"]["ak_handle"] = core.SRK_HANDLE
    (served.run_dir / hook.STORE_COPY).write_bytes(store.pack(meta))
    before = [c for c in served.tpm.transport.commands if int.from_bytes(c[6:10], "big") == C.TPM_CC_Quote]
    text, _ = served.con.handle(b"quote 0011")
    assert text == ("error: quote failed: quote failed: EvidenceError: the key at 0x81000001 is not a "
                    "restricted signing key (attributes 0x00030472)\n"), text
    after = [c for c in served.tpm.transport.commands if int.from_bytes(c[6:10], "big") == C.TPM_CC_Quote]
    assert after == before  # TPM2_Quote was never sent


def test_quote_covers_the_boards_component_register(served: Served, monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    """A board that measures its bundle into PCR 13 (board.json component_pcr, issue 10 §6) gets
    quotes over 13, not 14: the loader's setting (/opt/phone/component-pcr) reaches the broker."""
    from firmware.attest import appraise
    from firmware.boot import partitions
    setting = tmp_path / "component-pcr"
    setting.write_text("13\n")
    monkeypatch.setattr(partitions, "COMPONENT_PCR_PATH", str(setting))
    nonce = bytes(range(40, 72))
    ev = _quote(served, nonce)
    a = parse_attest(pem.b64decode(ev["quote"], "quote", 4096))
    assert a["pcrSelect"] == [(TPM_ALG_SHA256, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13])]
    assert sorted(int(k) for k in ev["pcrs"]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13]
    assert "13" in ev["pcrs"] and "14" not in ev["pcrs"]
    # every board's quote must still cover the boot chain's PCRs; the register is the board's
    assert appraise.REQUIRED_PCRS == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12]
    _files(served.run_dir, ev)
    ok = _checkquote(served.run_dir, nonce.hex())
    assert ok.returncode == 0, ok.stdout + ok.stderr
