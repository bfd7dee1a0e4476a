# Appraisal on captured evidence (tests/data/attest: a golden device's quote from swtpm, made by
# `python -m tests.tpm.attest_support tests/data/attest`), integrity levels and the vendor-signed
# reference set. Runs under pytest and MicroPython (tests/mpy_run.py): MicroPython has no X.509 or
# P-256, so there the appraiser must fail closed naming that, never judge without checking.

import json

from firmware.attest import levels, pki
from firmware.attest import trust as T
from firmware.attest.appraise import Memo, appraise
from firmware.attest.pem import b64encode
from tests.unit.firmware.check import raises, skip

DATA = "tests/data/attest/"


def _read(name, mode="rb"):
    with open(DATA + name, mode) as f:
        return f.read()


def _trust(references=None):
    return T.load(references or _read("references.json"), _read("references.sig"),
                  _read("vendor-pubkey.pem"), [_read("device-ca.pem", "r")])


def _evidence():
    return json.loads(_read("evidence.json").decode())


NONCE = bytes.fromhex(_read("nonce.hex", "r").strip())


def test_levels_order_and_names():
    assert levels.ORDER == ("failed", "unattested", "unknown", "outdated", "verified")
    assert levels.at_least("verified", "outdated") and levels.at_least("unattested", "unattested")
    assert not levels.at_least("failed", "unattested")  # broken evidence is worse than none
    assert levels.lowest(["verified", "unknown", "outdated"]) == "unknown"
    e = raises(ValueError, levels.check, "trusted")
    assert str(e) == "unknown integrity level 'trusted' (one of failed, unattested, unknown, outdated, verified)"


def test_versions_compare_as_numbers():
    assert T.parse_version("0.10.0") > T.parse_version("0.9.1")
    assert T.version_below("0.9.1", "0.10.0") and not T.version_below("0.10.0", "0.10.0")
    assert T.version_below("1.0-rc1", "0.1")  # unparseable counts as below: fail closed
    raises(ValueError, T.parse_version, "1..2")


def test_reference_set_signature_and_form():
    t = _trust()
    assert t.board == "qemu-x86_64" and t.min_version == "0.1.0"
    img = T.find_image(t.references, "qemu-x86_64", "0.1.0")
    assert [c["name"] for c in img["components"]] == ["phone-app", "sip-media", "device-config", "ca-bundle"]
    assert sorted(img["pcrs"]["sha256"]) == [4, 5, 7, 9, 11, 12, 14]
    data = _read("references.json")
    e = raises(T.TrustError, _trust, data.replace(b'"min_version": "0.1.0"', b'"min_version": "0.0.1"'))
    assert str(e) == "references.json: signature does not verify with the vendor key"
    doc = json.loads(data.decode())
    doc["images"][0]["extra"] = 1
    e = raises(T.TrustError, T.parse_references, doc)
    assert str(e) == "references.images[0]: unknown field 'extra'"
    doc = json.loads(data.decode())
    doc["images"][0]["components"][0]["sha256"] = "00"
    e = raises(T.TrustError, T.parse_references, doc)
    assert str(e) == "references.images[0].components[0].sha256 must be 32 hex bytes"
    e = raises(T.TrustError, T.load, data, _read("references.sig"), _read("vendor-pubkey.pem"), [])
    assert str(e) == "no device CA certificate to check AK certificates with"


def test_no_evidence_is_unattested():
    j = appraise(None, NONCE, _trust())
    assert j.level == "unattested" and j.summary() == {
        "level": "unattested", "image_version": None, "differs": [],
        "why": "no evidence: the peer did not attest"}


def test_malformed_evidence_fails_naming_the_field():
    ev = _evidence()
    del ev["quote"]
    j = appraise(ev, NONCE, _trust())
    assert (j.level, j.why) == ("failed", "evidence: evidence lacks quote")
    j = appraise(b"\xff", NONCE, _trust())
    assert (j.level, j.why) == ("failed", "evidence: evidence is not UTF-8 JSON")


def test_captured_golden_evidence():
    j = appraise(_read("evidence.json").strip(), NONCE, _trust())
    if not pki.available():  # MicroPython: no X.509 / P-256 here, so no judgement but failed
        assert (j.level, j.why) == ("failed", "AK certificate chain: no X.509/ECDSA support on this runtime")
        return
    assert j.level == "verified", j.checks
    assert j.summary() == {"level": "verified", "image_version": "0.1.0", "differs": [],
                           "why": "vendor image 0.1.0, every component and PCR as the reference"}
    # stale: the same evidence for another nonce
    j = appraise(_evidence(), b"\x00" * 32, _trust())
    assert j.level == "failed" and j.why.startswith("nonce: quote's extraData 4041424344454647...")
    # a console that swaps in another phone log: the replay of PCR 14 contradicts the quote
    ev = _evidence()
    ev["logs"]["phone"] = b64encode(_read("phone-tampered.bin"))
    j = appraise(ev, NONCE, _trust())
    assert j.level == "failed" and j.differs == ["PCR 14"]
    assert j.why == ("log replay: the logs do not replay to the quoted PCR 14 (PCR 14 from the phone "
                     "log): the log is not what was measured")
    # one listed PCR value changed: no longer what the TPM signed
    ev = _evidence()
    ev["pcrs"]["7"] = "00" * 32
    j = appraise(ev, NONCE, _trust())
    assert j.level == "failed" and j.why.startswith("PCR digest: pcrDigest ")



def _same(a, b):
    assert (a.level, a.why, a.differs, a.image_version, a.checks) == \
        (b.level, b.why, b.differs, b.image_version, b.checks)


def test_memo_gives_the_same_judgements_and_still_checks_what_binds_the_call():
    if not pki.available():
        skip("no X.509 / P-256 on this runtime: the appraiser fails before anything is memoized")
    t = _trust()
    memo = Memo()
    golden = _read("evidence.json").strip()
    tampered_log = _evidence()
    tampered_log["logs"]["phone"] = b64encode(_read("phone-tampered.bin"))
    other_pcr = _evidence()
    other_pcr["pcrs"]["7"] = "00" * 32
    cases = [(golden, NONCE), (golden, b"\x00" * 32), (tampered_log, NONCE), (other_pcr, NONCE),
             (golden, NONCE)]
    for ev, nonce in cases + cases:   # twice: the second round is served from the memo
        _same(appraise(ev, nonce, t, 1.8e9 - 1, memo=memo), appraise(ev, nonce, t, 1.8e9 - 1))
    assert memo.hits > 0
    # one chain, two replays (golden logs; the tampered phone log): a replay depends on the log
    # bytes alone, and is compared with each quote's PCRs afresh
    assert len(memo.replays) == 2 and len(memo.chains) == 1
    # remembered chain, but the certificates' validity is checked at each call's time
    j = appraise(golden, NONCE, t, 4e9, memo=memo)
    assert j.level == "failed" and j.why == "AK certificate chain: AK certificate is not valid at this time"
    # remembered replay, but the quoted PCRs still have to equal it: a log swapped in for the one
    # the memo knows is replayed afresh (another key) and contradicts the quote
    j = appraise(tampered_log, NONCE, t, memo=memo)
    assert j.level == "failed" and j.differs == ["PCR 14"]
    # another trust: the memo starts over (chains checked against those device CAs)
    t2 = _trust()
    appraise(golden, NONCE, t2, memo=memo)
    assert memo.trust is t2 and len(memo.chains) == 1


def test_memo_is_bounded():
    memo = Memo()
    for i in range(Memo.KEEP + 3):
        memo._put(memo.chains, "cert %d" % i, i)
    assert len(memo.chains) == Memo.KEEP
    assert memo._get(memo.chains, "cert 0") is None and memo._get(memo.chains, "cert %d" % (Memo.KEEP + 2)) \
        == Memo.KEEP + 2
