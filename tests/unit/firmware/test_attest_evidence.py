# firmware.attest.evidence: encode/decode of the evidence dict (version 1, docs/attestation.md)
# and collect() over a device object. decode refuses anything malformed with EvidenceError naming
# the field. The quote and signature bytes here are marshalled with the firmware's own TPM
# structures (the real TPM's are in tests/tpm/test_attest_quote.py and tests/system). Runs under
# pytest and MicroPython.
import json

from firmware.attest import evidence, pem
from firmware.attest.errors import EvidenceError
from firmware.tpm import constants as C
from firmware.tpm.marshal import Writer
from firmware.tpm.structures import PCR_SELECTION, SIGNATURE
from tests.unit.firmware.check import raises

NONCE = bytes(range(1, 33))
X = bytes(range(32))
Y = bytes(range(32, 64))


def _attest(nonce=NONCE):
    w = Writer()
    w.u32(C.TPM_GENERATED_VALUE).u16(C.TPM_ST_ATTEST_QUOTE).tpm2b(b"\x00\x0b" + b"\x11" * 32)
    w.tpm2b(nonce).u64(1234).u32(1).u32(0).u8(1).u64(0x2019102300000000)
    PCR_SELECTION.write(w, [(C.TPM_ALG_SHA256, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14])])
    w.tpm2b(b"\x22" * 32)
    return w.bytes()


def _signature():
    w = Writer()
    SIGNATURE.write(w, {"sigAlg": C.TPM_ALG_ECDSA, "hash": C.TPM_ALG_SHA256, "r": b"\x01" * 32,
                        "s": b"\x02" * 32})
    return w.bytes()


class Device:
    def __init__(self):
        self.asked = []

    def tpm_quote(self, nonce):
        self.asked.append(nonce)
        return {"quote": pem.b64encode(_attest(nonce)), "signature": pem.b64encode(_signature()),
                "pcr_bank": "sha256", "pcrs": dict((str(i), "%02x" % i * 32) for i in evidence.quoted_pcrs()),
                "ak_pub": pem.p256_public_pem(X, Y),
                "ak_cert": pem.pem_encode("CERTIFICATE", b"\x30\x03\x02\x01\x01"), "ok": True}

    def firmware_log(self):
        return b"\x00firmware log\xff"

    def phone_log(self):
        return b"phone log"

    def board(self):
        return "qemu-x86_64"

    def image_version(self):
        return "1.2.3"


def _good():
    return evidence.collect(NONCE, Device())


def test_collect_builds_version_1_evidence():
    dev = Device()
    ev = evidence.collect(NONCE, dev)
    assert dev.asked == [NONCE]
    assert sorted(ev) == sorted(evidence.FIELDS)
    assert ev["version"] == 1 and ev["nonce"] == NONCE.hex() and ev["board"] == "qemu-x86_64"
    assert ev["image_version"] == "1.2.3" and ev["pcr_bank"] == "sha256"
    assert sorted(int(k) for k in ev["pcrs"]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14]
    assert pem.b64decode(ev["logs"]["firmware"], "f", 100) == b"\x00firmware log\xff"
    assert pem.b64decode(ev["quote"], "q", 1000) == _attest()
    assert "ok" not in ev


def test_encode_is_compact_sorted_json_and_decode_inverts_it():
    ev = _good()
    data = evidence.encode(ev)
    text = data.decode("utf-8")
    assert "\n" not in text and ", " not in text and ": " not in text
    keys = [k for k in json.loads(text)]
    assert evidence.decode(data) == ev
    assert evidence.decode(text) == ev
    # sorted keys: the first key is ak_cert, the last version
    assert text.startswith('{"ak_cert":') and text.endswith('"version":1}'), keys


def test_ak_pub_is_a_p256_spki():
    der = pem.pem_decode(pem.p256_public_pem(X, Y), "PUBLIC KEY", "ak_pub", 200)
    assert len(der) == 91 and der[-65:] == b"\x04" + X + Y
    raises(EvidenceError, pem.p256_spki, X[:31], Y)


def _mutated(field, value):
    ev = _good()
    if "." in field:
        a, b = field.split(".")
        ev[a][b] = value
    elif value is KeyError:
        del ev[field]
    else:
        ev[field] = value
    return json.dumps(ev).encode()


def test_decode_refuses_malformed_evidence_naming_the_field():
    cases = [
        ("version", 2, "version"), ("version", True, "version"), ("version", KeyError, "lacks version"),
        ("nonce", "abc", "nonce"), ("nonce", "", "nonce"), ("nonce", "00" * 65, "nonce"),
        ("nonce", "zz", "nonce"),
        ("quote", "AAAA", "quote"), ("quote", "not base64!", "quote"), ("quote", 5, "quote"),
        ("quote", pem.b64encode(_attest() + b"\x00"), "quote"),
        ("signature", pem.b64encode(b"\x00\x18\x00"), "signature"),
        ("ak_pub", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "ak_pub"),
        ("ak_pub", pem.pem_encode("CERTIFICATE", b"\x30\x00"), "ak_pub"),
        ("ak_cert", "x" * 20, "ak_cert"),
        ("pcr_bank", "sha1", "pcr_bank"), ("pcr_bank", None, "pcr_bank"),
        ("pcrs", {}, "pcrs"), ("pcrs", [], "pcrs"), ("pcrs.24", "00" * 32, "pcrs"),
        ("pcrs.07", "00" * 32, "pcrs"), ("pcrs.4", "00" * 31, "pcrs.4"), ("pcrs.4", 4, "pcrs.4"),
        ("logs", {"firmware": ""}, "logs"), ("logs.phone", "@@@@", "logs.phone"),
        ("board", "", "board"), ("board", "x" * 65, "board"), ("board", "a\nb", "board"),
        ("image_version", 3, "image_version"),
        ("extra", 1, "unknown field"),
    ]
    for field, value, named in cases:
        e = raises(EvidenceError, evidence.decode, _mutated(field, value))
        assert named in str(e), (field, str(e))
    for data in (b"", b"[]", b"\xff", b"null", "{}", b"{" * 10):
        raises(EvidenceError, evidence.decode, data)
    raises(EvidenceError, evidence.decode, 5)
    e = raises(EvidenceError, evidence.decode, b" " * (evidence.MAX_ENCODED + 1))
    assert "at most" in str(e)


def test_image_version_may_be_null_and_pem_may_lack_the_last_newline():
    ev = _good()
    ev["image_version"] = None
    ev["ak_pub"] = ev["ak_pub"].strip()
    assert evidence.decode(evidence.encode(ev))["image_version"] is None


def test_nonces():
    assert evidence.parse_nonce_hex("00Ff") == b"\x00\xff"
    assert evidence.parse_nonce_hex("ab" * 64) == b"\xab" * 64
    for bad in ("", "0", "abc", "ab" * 65, "0x12", "gg", "12 34"):
        e = raises(EvidenceError, evidence.parse_nonce_hex, bad)
        assert "2..128 hex digits" in str(e)
    raises(EvidenceError, evidence.collect, b"", Device())
    raises(EvidenceError, evidence.collect, b"\x00" * 65, Device())
    raises(EvidenceError, evidence.collect, "00", Device())


def test_collect_refuses_an_answer_it_cannot_use():
    class Bad(Device):
        def tpm_quote(self, nonce):
            ans = Device.tpm_quote(self, nonce)
            del ans["ak_cert"]
            return ans
    e = raises(EvidenceError, evidence.collect, NONCE, Bad())
    assert "ak_cert" in str(e)

    class Liar(Device):
        def tpm_quote(self, nonce):
            ans = Device.tpm_quote(self, nonce)
            ans["pcrs"]["4"] = "zz"
            return ans
    e = raises(EvidenceError, evidence.collect, NONCE, Liar())
    assert "pcrs.4" in str(e)
    evidence.set_device(None)
    raises(EvidenceError, evidence.collect, NONCE)
