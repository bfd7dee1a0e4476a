# mypy: disable-error-code="no-untyped-call"
"""Evidence in SIP through a real Kamailio over TLS and with a real baresip (docs/attestation.md
"Evidence in SIP"), on the host without booting phones: the carriage, not the appraisal.

* Two of our phones in attest mode: the evidence each side's attester returns (20 KiB, larger than
  real evidence) arrives byte-identical at the other side through Kamailio, in the INVITE and in the
  2xx, and each receiver computes the same nonce its sender quoted with.
* Our phone in attest mode calls baresip: baresip 1.0 does not take a multipart/mixed offer (it
  answers 500 "Call Error"; seen on this machine), so the phone sends the INVITE once more with the
  SDP alone (RFC 3261 §21.4.13 style) and the call is locked. baresip calling us sends plain SDP
  without Accept: multipart/mixed, so our 2xx carries no evidence either (RFC 3261 §20.1).
"""

from __future__ import annotations

from typing import Any

from firmware.phone.io_cpython import PhoneLoop
from firmware.sip import multipart, ua as sipua
from tests.interop.conftest import Baresip, phone
from tests.interop.test_kamailio import Kamailio


def _attester(name: str, seen: list[tuple[str, bytes]]) -> Any:
    def attest(nonce: bytes) -> bytes:
        seen.append((name, nonce))
        # JSON-like and bigger than real evidence (quote + AK certificate + two event logs)
        return b'{"device":"%s","nonce":"%s","pad":"%s"}' % (name.encode(), nonce.hex().encode(),
                                                            b"A" * 20000)
    return attest


def test_evidence_crosses_kamailio_untouched_both_ways(kam_md5: Kamailio) -> None:
    quoted: list[tuple[str, bytes]] = []
    a = phone(kam_md5, "alice", "alicepw", attester=_attester("alice", quoted))
    c = phone(kam_md5, "carol", "carolpw", attester=_attester("carol", quoted))
    loop = PhoneLoop(a, c)
    try:
        a.app.register()
        c.app.register()
        loop.wait_event(a, sipua.Registered)
        loop.wait_event(c, sipua.Registered)
        cid = a.app.call("sip:carol@127.0.0.1")
        offered = loop.wait_event(c, sipua.CallOffered)
        assert quoted[0][0] == "alice" and offered.call_id == cid
        assert offered.evidence == _attester("alice", [])(quoted[0][1])   # byte-identical
        assert offered.evidence_nonce == quoted[0][1]      # carol derived alice's nonce
        inc = loop.wait_event(c, sipua.IncomingCall)        # no judge: the app lets it ring
        assert inc.evidence_nonce == quoted[0][1]
        invite = c.app.ua.calls[cid].invite
        assert invite.get("Content-Type").startswith("multipart/mixed;boundary=tp-")
        assert len(invite.body) > 20000
        c.app.answer()
        ans = loop.wait_event(a, sipua.CallAnswered)
        assert quoted[1][0] == "carol"
        assert ans.evidence == _attester("carol", [])(quoted[1][1])
        assert ans.evidence_nonce == quoted[1][1] != quoted[0][1]
        for p in (a, c):
            st = p.app.status()["call"]
            assert st["state"] == "connected" and st["security"] == "locked", st
        a.app.hangup()
        loop.wait_event(c, sipua.CallEnded)
    finally:
        loop.close()


def test_baresip_gets_plain_sdp_after_refusing_multipart_and_sends_no_evidence(kam_md5: Kamailio,
                                                                   baresip_bob: Baresip) -> None:
    bs = baresip_bob
    quoted: list[tuple[str, bytes]] = []
    p = phone(kam_md5, "alice", "alicepw", attester=_attester("alice", quoted))
    loop = PhoneLoop(p)
    try:
        p.app.register()
        loop.wait_event(p, sipua.Registered)
        cid = p.app.call("sip:bob@127.0.0.1")
        ans = loop.wait_event(p, sipua.CallAnswered, 15)
        assert len(quoted) == 1 and ans.evidence is None and ans.evidence_nonce is not None
        st = p.app.status()["call"]
        assert st["state"] == "connected" and st["security"] == "locked", st
        retried = [e for e in p.events if isinstance(e, sipua.MessageRejected)]
        assert len(retried) == 1 and retried[0].reason.startswith(
            "callee refused our evidence body (500 "), retried
        assert p.app.ua.calls[cid].invite.get("Content-Type") == multipart.SDP_TYPE
        bs.wait_event("CALL_ESTABLISHED", cid, lambda: loop.step(20))
        p.app.hangup()
        loop.wait_event(p, sipua.CallEnded)
        bs.wait_event("CALL_CLOSED", cid, lambda: loop.step(20))
        # baresip calls us: plain SDP, no evidence part
        bs.command("dial", "sip:alice@127.0.0.1")
        offered = loop.wait_event(p, sipua.CallOffered, 15)
        assert offered.evidence is None
        assert p.app.ua.calls[offered.call_id].invite.get("Content-Type") == multipart.SDP_TYPE
        assert "multipart/mixed" not in (p.app.ua.calls[offered.call_id].invite.get("Accept") or "")
        loop.wait_event(p, sipua.IncomingCall)
        p.app.answer()
        bs.wait_event("CALL_ESTABLISHED", offered.call_id, lambda: loop.step(20))
        assert len(quoted) == 1      # no quote for a 2xx the caller could not read
        assert p.app.status()["call"]["security"] == "locked"
        bs.command("hangup")
        loop.wait_event(p, sipua.CallEnded)
    finally:
        loop.close()
