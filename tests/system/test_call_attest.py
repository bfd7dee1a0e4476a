# mypy: disable-error-code="no-untyped-call"
"""The remote party's integrity at call set-up, on real phones (docs/attestation.md "Evidence in
SIP"): QEMU (TCG) + OVMF + swtpm images, provisioned with an attestation key, registered over TLS
at a real Kamailio, with a real baresip and a host test UA (our UA core over TLS) as other parties.

ONE boot of three phones for the whole module (booted concurrently):
* A (alice) and B (carol): the golden image;
* T (dave): the vendor's signing of a tree whose phone-app differs by one byte (a re-signed
  tampered build: the stage loader accepts it, it is provisioned for its own image so it registers
  and calls, and its quote names what it runs).

Scenarios: golden <-> golden both `verified`; T calling B: B shows `unknown` naming phone-app and,
after `integrity verified`, refuses T with 403 and the reason; baresip (no evidence) <-> A:
`unattested`, the call works; A's real evidence captured by the test UA (mallory) and relayed in a
new INVITE to B: `failed`, refused; the same captured evidence judged on the host against a
reference set with a raised minimum version: `outdated`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from host_tools.console import Console
from host_tools.image.build import BuildOptions, build
from host_tools.siplab import HAVE_BARESIP, Baresip, Kamailio
from tests.system.conftest import BOARD
from tests.system.test_call import (BOOT_TIMEOUT, DOMAIN, CallPhone, _call, _needs_guest_network,
                                    kamailio_for_phone, wait_status)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TAMPER_FILE = "firmware/phone/tone.py"   # inside the phone-app component


@pytest.fixture(scope="module")
def kam(built_image: Path) -> Iterator[Kamailio]:
    yield from kamailio_for_phone(built_image)


def tampered_image(base: Path) -> Path:
    """The vendor's build (same keys as the golden image) of a tree whose phone-app differs by one
    byte: what a compromised build server would ship."""
    repo = base / "repo"
    for part in ("firmware", "board"):
        shutil.copytree(REPO / part, repo / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    f = repo / TAMPER_FILE
    f.write_bytes(f.read_bytes() + b"#")
    out = base / "image"
    build(BuildOptions(board=BOARD, out=out, repo=repo, cache=REPO / "build" / "cache",
                       keys=REPO / "build" / "keys"))
    return out


@dataclass
class Lab:
    a: Console
    b: Console
    t: Console
    reference: dict[str, Any]


@pytest.fixture(scope="module")
def lab(built_image: Path, kam: Kamailio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("attest")
    t_image = tampered_image(base / "t-build")
    for d in ("a", "b", "t"):
        (base / d).mkdir()
    phones = [CallPhone(built_image, base / "a", "attest-a"), CallPhone(built_image, base / "b", "attest-b"),
              CallPhone(t_image, base / "t", "attest-t")]
    for p, user in zip(phones, ("alice", "carol", "dave")):
        p.provision(user, user + "pw")
    reference = json.loads((built_image / "reference.json").read_text())
    with phones[0].device.running("tcp") as ra, phones[1].device.running("tcp") as rb, \
            phones[2].device.running("tcp") as rt:
        runs = (ra, rb, rt)
        cons = [r.console for r in runs]
        try:
            for r, con in zip(runs, cons):
                assert con is not None
                r.wait_prompt(con, BOOT_TIMEOUT)
            for r, con in zip(runs, cons):
                assert r.forward_media(con)
                _needs_guest_network(con.status())
                st = wait_status(con, lambda s: s.get("registered") is True, "registration", 120)
                assert st["min_remote_integrity"] == "unattested", st   # the signed default
            yield Lab(cons[0], cons[1], cons[2], reference)
        finally:
            for r, con in zip(runs, cons):
                if con is not None:
                    r.shutdown(con)


def wait_notice(con: Console, *parts: str, timeout: float = 20.0) -> str:
    """The console's notice line holding every one of `parts` (status commands pump the line)."""
    deadline = time.monotonic() + timeout
    while True:
        for n in con.notices():
            if all(p in n for p in parts):
                return n
        if time.monotonic() > deadline:
            raise AssertionError("no notice with %r; notices %r" % (parts, con.notices()))
        con.status()
        time.sleep(0.3)


def _remote(st: dict[str, Any]) -> dict[str, Any]:
    r = _call(st).get("remote")
    return r if isinstance(r, dict) else {}


def _hang_up(con: Console, other: Console) -> None:
    assert con.command("hangup").startswith("hanging up call ")
    wait_status(con, lambda s: s.get("call") is None, "call ended", 20)
    wait_status(other, lambda s: s.get("call") is None, "call ended at the other side", 20)


def test_golden_phones_see_each_other_verified(lab: Lab) -> None:
    a, b = lab.a, lab.b
    t0 = time.monotonic()
    out = a.command("call sip:carol@%s" % DOMAIN)
    assert out.startswith("calling sip:carol@"), out
    cid = out.split("(call ")[1].split(")")[0]
    st = wait_status(b, lambda s: _call(s).get("state") == "incoming", "incoming at carol", 60)
    ring_s = time.monotonic() - t0
    r = st["call"]["remote"]
    assert r["level"] == "verified", r
    assert r["image_version"] == lab.reference["image_version"] and r["differs"] == [], r
    assert wait_notice(b, "remote sip:alice@") == "call %s: remote sip:alice@%s is verified (image %s)" \
        % (cid, DOMAIN, lab.reference["image_version"])
    assert b.command("answer").startswith("answered call ")
    sa = wait_status(a, lambda s: _call(s).get("state") == "connected", "connected", 60)
    sb = wait_status(b, lambda s: _call(s).get("state") == "connected", "connected", 60)
    assert sa["call"]["remote"]["level"] == "verified", sa["call"]
    assert sa["call"]["remote"]["image_version"] == lab.reference["image_version"]
    for c in (sa["call"], sb["call"]):
        assert c["security"] == "locked", c
    wait_notice(a, "call %s: remote sip:carol@%s is verified" % (cid, DOMAIN))
    # each phone's log (console `messages`) times its own quote and its appraisal of the peer
    for con, steps in ((a, ("evidence of ", "bytes of evidence appraised in ")),
                       (b, ("bytes of evidence appraised in ", "evidence of "))):
        lines = [m for m in json.loads(con.command("messages"))["messages"] if m.startswith("call %s: " % cid)]
        for step in steps:
            assert any(step in m and m.endswith(" ms") for m in lines), (step, lines)
        print("\n".join(lines))
    print("golden -> golden: rang %.1f s after `call` (caller's quote + callee's appraisal, TCG)" % ring_s)
    _hang_up(a, b)


def test_tampered_phone_is_named_then_refused_when_verified_is_required(lab: Lab) -> None:
    b, t = lab.b, lab.t
    out = t.command("call sip:carol@%s" % DOMAIN)
    assert out.startswith("calling sip:carol@"), out
    st = wait_status(b, lambda s: _call(s).get("state") == "incoming", "T rings at carol", 60)
    r = st["call"]["remote"]
    assert r["level"] in ("unknown", "failed"), r
    assert "phone-app" in r["differs"], r
    assert "phone-app" in r["why"] or r["why"], r
    n = wait_notice(b, "remote sip:dave@%s is %s" % (DOMAIN, r["level"]))
    assert "differs: phone-app" in n, n
    print("B about T: %s" % n)
    assert b.command("hangup").startswith("hanging up call ")     # declined
    wait_status(t, lambda s: s.get("call") is None, "T's call declined", 30)

    # the user of B asks for verified peers only (raise-only; the signed floor stays)
    ans = json.loads(b.command("integrity verified"))
    assert ans == {"min_remote_integrity": "verified", "floor": "unattested"}, ans
    try:
        out = t.command("call sip:carol@%s" % DOMAIN)
        assert out.startswith("calling sip:carol@"), out
        st = wait_status(t, lambda s: s.get("call") is None and s.get("last_call") is not None
                         and s["last_call"].get("status") == 403, "T refused with 403", 60)
        why = st["last_call"]["reason"]
        assert why.startswith("Forbidden (remote integrity %s, below verified; differs: " % r["level"]), why
        assert "phone-app" in why, why
        sb = b.status()
        assert sb["call"] is None and sb["last_call"]["status"] == 403, sb
        assert sb["last_call"]["remote"]["level"] == r["level"] and "phone-app" in sb["last_call"]["remote"]["differs"]
    finally:
        assert json.loads(b.command("integrity unattested"))["min_remote_integrity"] == "unattested"
    # below the signed floor is refused
    out = b.command("integrity failed")
    assert out.strip() == "error: integrity: minimum remote integrity cannot go below unattested " \
                          "(device-config)", out


@pytest.fixture(scope="module")
def bob(kam: Kamailio) -> Iterator[Baresip]:
    if not HAVE_BARESIP:
        pytest.skip("needs Debian baresip-core")
    bs = Baresip(kam.dir / "bs-bob-attest", "bob", "bobpw", kam)
    try:
        yield bs
    finally:
        bs.stop()


def test_baresip_is_unattested_and_the_call_works(lab: Lab, bob: Baresip) -> None:
    a = lab.a
    bob.command("dial", "sip:alice@%s" % DOMAIN)
    st = wait_status(a, lambda s: _call(s).get("state") == "incoming", "baresip rings at alice", 60)
    r = st["call"]["remote"]
    assert r == {"level": "unattested", "image_version": None, "differs": [],
                 "why": "the peer sent no attestation evidence"}, r
    assert a.command("answer").startswith("answered call ")
    st = wait_status(a, lambda s: _call(s).get("state") == "connected", "answered", 30)
    assert st["call"]["security"] == "locked"
    bob.command("hangup")
    wait_status(a, lambda s: s.get("call") is None, "baresip hung up", 30)
    # alice calls baresip: it refuses the multipart INVITE (500), the phone retries with SDP alone
    out = a.command("call sip:bob@%s" % DOMAIN)
    st = wait_status(a, lambda s: _call(s).get("state") == "connected", "baresip answered", 60)
    assert st["call"]["remote"]["level"] == "unattested" and st["call"]["security"] == "locked", st
    assert out.startswith("calling sip:bob@")
    assert a.command("hangup").startswith("hanging up call ")
    wait_status(a, lambda s: s.get("call") is None, "call ended", 20)


def test_relayed_evidence_is_refused(lab: Lab, kam: Kamailio) -> None:
    """mallory (a registered user, our UA core on the host) receives alice's INVITE with alice's
    real evidence, then calls carol with an INVITE that copies everything of alice's call she can:
    the Call-ID, alice's From tag, alice's SDP (her SDES keys) and her evidence. Only the
    identities differ (sender mallory, as Kamailio authenticated her; receiver carol): carol's
    nonce differs from the one alice quoted, carol judges `failed` and refuses with 403."""
    from firmware.phone.io_cpython import PhoneIo, PhoneLoop
    from firmware.sip import callbind, multipart
    from firmware.sip import ua as sipua
    from firmware.sip.io_cpython import now_ms

    cfg = sipua.UaConfig("mallory", DOMAIN, "mallorypw", "TLS")
    m = PhoneIo.open(cfg, "127.0.0.1", kam.tls_port, kam.ca, attester=lambda nonce: None)
    loop = PhoneLoop(m)
    try:
        m.app.register()
        loop.wait_event(m, sipua.Registered)
        out = lab.a.command("call sip:mallory@%s" % DOMAIN)
        assert out.startswith("calling sip:mallory@"), out
        offered = loop.wait_event(m, sipua.CallOffered, 60)
        assert offered.evidence is not None and offered.evidence_nonce is not None
        ev = json.loads(offered.evidence)
        a_call = m.app.ua.calls[offered.call_id]
        a_cid, a_tag, a_sdp = offered.call_id, a_call.invite.from_.tag, a_call.offer_sdp
        cryptos = callbind.sdp_cryptos(a_sdp)
        # alice's guest quoted the nonce of alice -> mallory in this call, recomputed from the wire
        assert bytes.fromhex(ev["nonce"]) == offered.evidence_nonce == callbind.evidence_nonce(
            "offer", a_cid, a_tag, "", "sip:alice@%s" % DOMAIN, "sip:mallory@%s" % DOMAIN, cryptos)
        print("alice's evidence: %d bytes" % len(offered.evidence))
        m.app.hangup()                 # declined (603)
        loop.wait_event(m, sipua.CallEnded)
        wait_status(lab.a, lambda s: s.get("call") is None, "alice's call refused", 30)

        # mallory's INVITE to carol, held for evidence, rewritten to alice's dialog and keys
        ua = m.app.ua
        cid = ua.call("sip:carol@%s" % DOMAIN, m.app._local_media(), now_ms())
        while ua.next_event() is not None:
            pass                       # the EvidenceNeeded for mallory's own binding: ignored
        call = ua.calls.pop(cid)
        call.invite.set("Call-ID", a_cid)
        call.invite.set("From", call.invite.get("From").replace(call.local_tag, a_tag))
        call.call_id, call.local_tag, call.offer_sdp = a_cid, a_tag, a_sdp
        ua.calls[a_cid] = call
        ua.provide_evidence(a_cid, offered.evidence, now_ms())
        sent = call.invite
        assert sent.call_id == a_cid and sent.from_.tag == a_tag
        assert multipart.sdp_and_evidence(sent.get("Content-Type"), sent.body)[:2] == (a_sdp, offered.evidence)
        ended = loop.wait_event(m, sipua.CallEnded, 90)
        assert ended.call_id == a_cid and ended.status == 403, (ended.status, ended.reason)
        assert ended.reason.startswith("Forbidden (remote integrity failed, below unattested"), ended.reason
        sb = lab.b.status()
        assert sb["last_call"]["remote"]["level"] == "failed", sb["last_call"]
        assert "nonce" in sb["last_call"]["remote"]["why"], sb["last_call"]
        wait_notice(lab.b, "remote sip:mallory@%s is failed" % DOMAIN)
        # what carol computed differs from alice's quote only through the two identities
        assert callbind.evidence_nonce("offer", a_cid, a_tag, "", "sip:mallory@%s" % DOMAIN,
                                       "sip:carol@%s" % DOMAIN, cryptos) != offered.evidence_nonce
    finally:
        loop.close()
    lab_evidence.append(offered.evidence)


lab_evidence: list[bytes] = []   # alice's real evidence, for the host-side appraisal below


def test_captured_evidence_is_outdated_under_a_raised_minimum_version(built_image: Path,
                                                                        tmp_path: Path) -> None:
    """alice's real evidence from the relay scenario, judged on the host (no extra boot): with the
    vendor's set as built it is verified for the nonce it was quoted for; with the same vendor key
    raising min_version above the image, or revoking its version, it is outdated."""
    import base64

    from cryptography.hazmat.primitives import serialization

    from firmware.attest import appraise, trust
    from host_tools.image import references

    if not lab_evidence:
        pytest.fail("the relay scenario did not capture alice's evidence (it runs first)")
    ev = json.loads(lab_evidence[0])
    nonce = bytes.fromhex(ev["nonce"])
    keys = REPO / "build" / "keys"
    device_ca = (keys / "device-ca.pem").read_text()
    vendor_pub = (built_image / "vendor-pubkey.pem").read_bytes()
    doc = (built_image / "references.json").read_bytes()
    sig = (built_image / "references.sig").read_bytes()
    t = trust.load(doc, sig, vendor_pub, [device_ca])
    j = appraise.appraise(lab_evidence[0], nonce, t, time.time())
    assert j.level == "verified", j.checks
    key = serialization.load_pem_private_key((keys / "dev-signing-key.pem").read_bytes(), None)
    images = json.loads(doc)["images"]
    version = j.image_version
    for kw in ({"min_version": "9.0.0"}, {"min_version": "0.0.1", "revoked_versions": (version,)}):
        raised = references.make_set(BOARD, images, **kw)  # type: ignore[arg-type]
        t2 = trust.load(raised, references.sign(key, raised), vendor_pub, [device_ca])  # type: ignore[arg-type]
        j2 = appraise.appraise(lab_evidence[0], nonce, t2, time.time())
        assert j2.level == "outdated", (kw, j2.checks)
        assert j2.image_version == version and j2.why, j2.why
        print("%s: %s" % (kw, j2.why))
    assert base64.b64decode(ev["quote"])[:4] == b"\xffTCG"   # a TPMS_ATTEST (magic), really quoted
