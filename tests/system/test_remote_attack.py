# mypy: disable-error-code="no-untyped-call"
"""Remote attacks on the booted phone (issue 9 part 4): the real image under QEMU (TCG) + OVMF +
swtpm, provisioned as alice, registered over verified TLS to a real Kamailio; the attacker is a
Kamailio subscriber (bob) whose user agent is the project's host-side PhoneIo with its INVITE body
or its answers replaced.

* Six INVITEs whose SDP has `a=crypto` / `a=rtpmap` without a value: each is answered 488 with a
  Warning naming the line (RFC 3261 §21.4.26, §20.43), the console keeps answering `status`, the
  phone stays registered and running (on the code before this fix the first one killed the
  console and the loader powered the device off), and a normal call still connects afterwards.
* The callee answers the phone's INVITE 401 with a challenge in the registrar's own realm: the
  phone never sends an INVITE carrying Authorization (our SIP credentials go only to the
  registrar's 407/401 on REGISTER).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from firmware.sip import sdp as sipsdp
from firmware.sip import ua as sipua
from host_tools.console import Console, ConsoleError
from host_tools.siplab import Kamailio
from tests.system.test_call import (BOOT_TIMEOUT, DOMAIN, PHONE_USER, CallPhone, _call,
                                    _needs_guest_network, kam, wait_status)

pytestmark = pytest.mark.slow
__all__ = ["kam"]   # the module-scoped Kamailio fixture of test_call

ATTACKER, ATTACKER_PW = "bob", "bobpw"
KEY = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"    # 30 octets of base64, RFC 4568 §9.1 style


def _offer(media_lines: list[str]) -> bytes:
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
             "m=audio 40000 RTP/SAVP 0 8"] + media_lines
    return ("\r\n".join(lines) + "\r\n").encode()


BAD_OFFERS = [
    ("a=crypto", _offer(["a=rtpmap:0 PCMU/8000", "a=crypto", "a=sendrecv"])),
    ("a=rtpmap", _offer(["a=rtpmap", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY,
                         "a=sendrecv"])),
]


class _RawOffer:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def serialize(self) -> bytes:
        return self.body


@pytest.fixture(scope="module")
def victim(built_image: Path, tmp_path_factory: pytest.TempPathFactory) -> CallPhone:
    p = CallPhone(built_image, tmp_path_factory.mktemp("attacked"), "attacked")
    p.provision(PHONE_USER, "alicepw")
    return p


@pytest.fixture(scope="module")
def booted(victim: CallPhone, kam: Kamailio) -> Iterator[Console]:
    with victim.device.boot(timeout=BOOT_TIMEOUT) as con:
        st = wait_status(con, lambda s: s.get("registered") is True or s.get("unsealed") is False
                         or "Network is unreachable" in str(s.get("registered_reason")),
                         "registration", timeout=90)
        _needs_guest_network(st)
        assert st["registered"] is True and st["tls_verified"] is True, st
        yield con


@pytest.fixture()
def attacker(kam: Kamailio) -> Iterator[tuple[Any, Any, list[bytes]]]:
    from firmware.phone.io_cpython import PhoneIo, PhoneLoop

    cfg = sipua.UaConfig(ATTACKER, DOMAIN, ATTACKER_PW, "TLS")
    p = PhoneIo.open(cfg, "127.0.0.1", kam.tls_port, kam.ca)
    seen: list[bytes] = []
    real_receive = p.app.ua.receive

    def receive(data: bytes, now: int) -> None:
        seen.append(bytes(data))
        real_receive(data, now)

    p.app.ua.receive = receive
    loop = PhoneLoop(p)
    try:
        p.app.register()
        loop.wait_event(p, sipua.Registered, 20)
        yield p, loop, seen
    finally:
        loop.close()


def test_malformed_sdp_invites_refused_phone_survives_then_calls_work(
        booted: Console, attacker: tuple[Any, Any, list[bytes]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    con = booted
    p, loop, seen = attacker
    target = "sip:%s@%s" % (PHONE_USER, DOMAIN)
    for i in range(6):
        what, body = BAD_OFFERS[i % 2]
        monkeypatch.setattr(sipsdp, "create_offer", lambda local, secure, b=body: (_RawOffer(b), []))
        del seen[:]
        cid = p.app.call(target)
        ended = loop.wait_event(p, sipua.CallEnded, 40)
        assert ended.call_id == cid and ended.status == 488, (i, what, ended)
        final = [m for m in seen if m.startswith(b"SIP/2.0 488 ")]
        assert final, (i, [m[:60] for m in seen])
        warning = [ln for ln in final[0].split(b"\r\n") if ln.lower().startswith(b"warning:")]
        assert len(warning) == 1 and b"399 " in warning[0], final[0]
        assert (what + " without a value").encode() in warning[0], warning
        st = con.status()       # the console answers after each one
        assert st["state"] == "running" and st["registered"] is True and st["call"] is None, (i, st)
    monkeypatch.undo()
    # a normal call from the same subscriber still rings, is answered and is locked
    cid = p.app.call(target)
    st = wait_status(con, lambda s: _call(s).get("state") == "incoming", "incoming call", 30)
    out = con.command("answer")
    assert out.startswith("answered call "), out
    ans = loop.wait_event(p, sipua.CallAnswered, 30)
    assert ans.call_id == cid and ans.media.suite is not None
    st = wait_status(con, lambda s: _call(s).get("state") == "connected", "connected", 20)
    assert st["call"]["security"] == "locked", st
    p.app.hangup()
    loop.wait_event(p, sipua.CallEnded, 20)
    st = wait_status(con, lambda s: s.get("call") is None, "hung up", 20)
    assert st["state"] == "running" and st["registered"] is True


def test_callee_401_never_gets_our_credentials(booted: Console,
                                               attacker: tuple[Any, Any, list[bytes]]) -> None:
    con = booted
    p, loop, seen = attacker
    ua = p.app.ua
    del seen[:]
    out = con.command("call sip:%s@%s" % (ATTACKER, DOMAIN))
    assert out.startswith("calling sip:%s@" % ATTACKER), out
    inc = loop.wait_event(p, sipua.IncomingCall, 30)
    # the callee challenges in the registrar's own realm (the most convincing lure)
    now = int(time.monotonic() * 1000)
    call = ua.calls[inc.call_id]
    resp = ua._response(call.invite, 401, "Unauthorized", call.local_tag)
    resp.add("WWW-Authenticate", 'Digest realm="%s", nonce="a1b2c3d4e5f6", qop="auth", '
                                 'algorithm=MD5' % DOMAIN)
    call.invite_tx.respond(resp, now)
    ua._end(call, 401, "challenged the caller", "local")
    ua._collect(now)
    p.app.call_id = None
    p.flush()
    st = wait_status(con, lambda s: s.get("call") is None, "the phone's call ended", 40)
    loop.run_for(3)
    invites = [m for m in seen if m.startswith(b"INVITE ")]
    assert len(invites) == 1, [m[:80] for m in invites]
    for m in seen:
        head = m.split(b"\r\n\r\n")[0].lower()
        assert b"\r\nauthorization:" not in head and b"username=" not in head, m[:400]
    assert st["last_call"]["status"] == 401 or "401" in str(st["last_call"]), st["last_call"]
    st = con.status()
    assert st["state"] == "running" and st["registered"] is True
    try:
        con.command("hangup", 10)
    except ConsoleError:
        pass
