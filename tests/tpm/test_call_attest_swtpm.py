# mypy: disable-error-code="no-untyped-call"
"""The phone's call set-up with attestation (firmware/phone/app.py + remote.py over firmware/sip) on
real evidence: quotes from the host's swtpm (tests/tpm/attest_support.py: the captured OVMF log
and a phone log extended into the TPM, an AK certified by a test device CA) and the real appraiser
with a vendor-signed reference set. Two PhoneApp cores call each other through the test proxy of
tests/unit/firmware/test_sip_ua.py (no sockets). Both phones quote with the one swtpm (a lab
shortcut: they are two phones of the same golden build on the same TPM).

Attacks seen refused here: the caller's INVITE replayed byte for byte after the call ended (its
nonce was accepted before), and a callee whose 2xx carries evidence quoted for another nonce
(ACK, then BYE with the reason; no media)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from firmware.attest import evidence as ev_mod
from firmware.phone.app import PhoneApp
from firmware.phone.remote import RemoteJudge
from firmware.sip import ua as sipua
from firmware.sip.message import Request
from host_tools.provision import device_ca
from tests.tpm import attest_support as A
from tests.tpm.helpers import connect
from tests.unit.firmware.test_sip_ua import REALM, MiniProxy, Net

USERS = {"alice": "alicepw", "bob": "bobpw"}


class AppUa:
    """A PhoneApp seen as the UA core Net drives (bytes in/out); events from the app."""

    def __init__(self, app: PhoneApp) -> None:
        self.app = app

    def receive(self, data: bytes, now: int) -> None:
        self.app.receive_sip(data, now)

    def data_to_send(self) -> list[bytes]:
        return self.app.sip_to_send()

    def get_timer(self) -> int | None:
        return self.app.ua.get_timer()

    def handle_timer(self, now: int) -> None:
        self.app.handle_timer(now)

    def events(self) -> list[Any]:
        out = []
        while True:
            e = self.app.next_event()
            if e is None:
                return out
            out.append(e)


class Lab:
    def __init__(self, tmp: Path, tpm: Any) -> None:
        ca = device_ca.load_or_create(tmp / "ca")
        self.vendor = A.Vendor(tmp)
        self.device = A.Device(tpm, ca)
        self.device.boot(A.FIRMWARE_LOG, A.phone_log())
        self.trust = self.vendor.trust([ca.pem])
        self.quotes: list[bytes] = []
        self.proxy = MiniProxy(USERS)
        self.judges = {u: RemoteJudge(self.trust, "unattested") for u in USERS}
        self.apps = {u: self.app(u, i + 1) for i, u in enumerate(USERS)}
        self.net = Net(self.proxy, {u: AppUa(a) for u, a in self.apps.items()})
        for a in self.apps.values():
            a.register(0)
        self.net.pump(0)

    def attest(self, nonce: bytes) -> bytes:
        self.quotes.append(nonce)
        return ev_mod.encode(self.device.evidence(nonce, A.FIRMWARE_LOG, A.phone_log()))

    def app(self, user: str, n: int) -> PhoneApp:
        cfg = sipua.UaConfig(user, REALM, USERS[user], "TLS", "10.0.0.%d" % n, 40000 + n,
                             keepalive_ms=30000)
        return PhoneApp(cfg, "10.0.0.%d" % n, 4000 + 2 * n, now=0, tls_verified=True,
                        attester=self.attest, judge=self.judges[user])

    def events(self, user: str) -> list[Any]:
        return self.net.uas[user].events()  # type: ignore[attr-defined,no-any-return]

    def requests(self, method: str) -> list[Request]:
        return [m for f, m in self.proxy.log if isinstance(m, Request) and m.method == method]


@pytest.fixture
def lab(fresh_swtpm: Any, tmp_path: Path) -> Iterator[Lab]:
    tpm = connect(fresh_swtpm.uri)
    yield Lab(tmp_path, tpm)
    tpm.transport.close()


def test_golden_phones_judge_each_other_verified_before_ringing_and_before_media(lab: Lab) -> None:
    a, b = lab.apps["alice"], lab.apps["bob"]
    cid = a.call("sip:bob@%s" % REALM, now=1000)
    lab.net.pump(1000)
    assert len(lab.quotes) == 1                  # alice quoted for her INVITE
    st = b.status()["call"]
    assert st["state"] == "incoming" and st["remote"] == {
        "level": "verified", "image_version": "0.1.0", "differs": [],
        "why": st["remote"]["why"]}, st
    assert b.notices == ["call %s: remote sip:alice@%s is verified (image 0.1.0)" % (cid, REALM)]
    assert a.status()["call"]["remote"] is None  # not known before the 2xx
    b.answer(now=1100)
    lab.net.pump(1100)
    assert len(lab.quotes) == 2                  # bob quoted for his 2xx
    sa = a.status()["call"]
    assert sa["state"] == "connected" and sa["remote"]["level"] == "verified", sa
    assert a.notices == ["call %s: remote sip:bob@%s is verified (image 0.1.0)" % (cid, REALM)]
    assert lab.quotes[0] != lab.quotes[1]
    a.hangup(now=1200)
    lab.net.pump(1200)
    assert a.last_call["remote"]["level"] == "verified" and b.last_call["remote"]["level"] == "verified"


def test_replayed_invite_is_refused(lab: Lab) -> None:
    a, b = lab.apps["alice"], lab.apps["bob"]
    a.call("sip:bob@%s" % REALM, now=1000)
    lab.net.pump(1000)
    invite_at_bob = b.ua.calls[b.call_id].invite.serialize()     # as the proxy delivered it
    assert b.status()["call"]["remote"]["level"] == "verified"
    a.hangup(now=1100)                          # cancelled before the answer
    lab.net.pump(1100)
    assert b.call_id is None and b.last_call["status"] == 487
    # whoever can read the signalling (the proxy) re-sends that INVITE to bob, byte for byte
    b.receive_sip(invite_at_bob, 2000)
    out = b.sip_to_send()
    assert out and out[0].startswith(b"SIP/2.0 403 Forbidden\r\n"), out
    assert (b'Warning: 399 10.0.0.2 "remote integrity failed, below unattested; evidence '
            b'replayed: its call binding was accepted before"') in out[0]
    assert b.last_call["remote"]["level"] == "failed"
    assert b.last_call["status"] == 403


def test_callee_with_evidence_for_another_nonce_is_hung_up_before_media(lab: Lab) -> None:
    a, b = lab.apps["alice"], lab.apps["bob"]
    lab.judges["alice"].require("verified")
    b.attester = lambda nonce: lab.attest(b"\x5a" * 32)     # quoted, but not for this call
    cid = a.call("sip:bob@%s" % REALM, now=1000)
    lab.net.pump(1000)
    b.answer(now=1100)
    lab.net.pump(1100)
    assert a.call_id is None and a.media is None           # no media was ever set up
    assert a.last_call["remote"]["level"] == "failed" and "nonce" in a.last_call["remote"]["why"]
    acks, byes = lab.requests("ACK"), lab.requests("BYE")
    assert acks and byes and byes[-1].call_id == cid       # RFC 3261 §13.2.2.4: ACK, then BYE
    reason = byes[-1].get("Reason")
    assert reason.startswith('SIP;cause=403;text="remote integrity failed, below verified; '), reason
    assert b.call_id is None and b.last_call["reason"] == "remote hangup"


def test_no_evidence_is_unattested_and_refused_only_when_verified_is_required(lab: Lab) -> None:
    a, b = lab.apps["alice"], lab.apps["bob"]
    a.attester = lambda nonce: None                        # an ordinary phone: plain SDP
    a.call("sip:bob@%s" % REALM, now=1000)
    lab.net.pump(1000)
    assert b.status()["call"]["remote"] == {"level": "unattested", "image_version": None,
                                             "differs": [],
                                             "why": "the peer sent no attestation evidence"}
    b.hangup(now=1100)
    lab.net.pump(1100)
    lab.judges["bob"].require("verified")
    a.call("sip:bob@%s" % REALM, now=2000)
    lab.net.pump(2000)
    assert a.call_id is None and a.last_call["status"] == 403
    assert a.last_call["reason"] == "Forbidden (remote integrity unattested, below verified; the " \
                                    "peer sent no attestation evidence)"
    e = pytest.raises(ValueError, lab.judges["bob"].require, "failed")
    assert str(e.value) == "minimum remote integrity cannot go below unattested (device-config)"
