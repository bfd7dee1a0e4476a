# mypy: disable-error-code="no-untyped-call"
# (firmware/ is the untyped MicroPython subset; its calls are checked by the tests themselves)
"""Our SIP UA core against a real Kamailio 5.6 registrar/proxy over TLS.

The fixture writes tests/data/sip/kamailio (config, db_text users) and a fresh test PKI into a
temp dir, starts `kamailio -DD -E` on free ports (one instance with MD5 digest, one with
`-A WITH_SHA256`; host_tools.siplab.Kamailio and make_pki), waits for a verified TLS handshake, and stops it by PID. The UA is the
sans-I/O core from firmware.sip.ua driven by firmware.sip.io_cpython (ssl socket + select loop).
Needs Debian `kamailio` and `kamailio-tls-modules`, `openssl`, and root (Kamailio in the
foreground as root, as in the project's working set-up).
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from firmware.sip import ua as sipua
from firmware.sip.io_cpython import Runner, TlsFlow, now_ms
from firmware.sip.sdp import LocalMedia
# Kamailio and its PKI live in host_tools.siplab (the demo uses them too); re-exported here for
# the tests that import them from this module.
from host_tools.siplab import HAVE_KAMAILIO
from host_tools.siplab import Kamailio as Kamailio, make_pki as make_pki

pytestmark = pytest.mark.skipif(not HAVE_KAMAILIO,
                                reason="needs Debian kamailio + kamailio-tls-modules and openssl")


@pytest.fixture(scope="module", params=["MD5", "SHA-256"])
def kamailio(request: pytest.FixtureRequest) -> Iterator[Kamailio]:
    if os.geteuid() != 0:
        pytest.skip("Kamailio runs as root in the foreground in this set-up")
    d = Path(tempfile.mkdtemp(prefix="kam-"))
    make_pki(d)
    make_pki(d, "other-")
    k = Kamailio(d, request.param)
    try:
        yield k
    finally:
        k.stop()
        shutil.rmtree(d, ignore_errors=True)


def _ua(user: str, password: str, **kw: object) -> sipua.UserAgent:
    cfg = sipua.UaConfig(user, "127.0.0.1", password, "TLS", **kw)
    return sipua.UserAgent(cfg, now_ms())


def _register(k: Kamailio, user: str, password: str, runner: Runner, **kw: object) -> sipua.UserAgent:
    ua = _ua(user, password, **kw)
    runner.add(user, ua, TlsFlow("127.0.0.1", k.tls_port, k.ca))
    ua.register(now_ms())
    return ua


def test_register_over_verified_tls(kamailio: Kamailio) -> None:
    r = Runner()
    try:
        ua = _register(kamailio, "alice", "alicepw", r)
        ev = r.wait_for("alice", sipua.Registered)
        assert ev.expires > 0 and ua.registered
        log = kamailio.log.read_text()
        # Kamailio saw our digest with the algorithm this instance challenges with
        assert "REQ REGISTER" in log
        ua.unregister(now_ms())
        r.wait_for("alice", sipua.Unregistered)
    finally:
        r.close()


def test_digest_algorithm_on_the_wire(kamailio: Kamailio) -> None:
    """The challenge carries the instance's algorithm and our credentials answer it (RFC 8760)."""
    r = Runner()
    try:
        ua = _register(kamailio, "bob", "bobpw", r)
        sent: list[bytes] = []
        orig = ua.data_to_send

        def capture() -> list[bytes]:
            out: list[bytes] = orig()
            sent.extend(out)
            return out

        ua.data_to_send = capture  # type: ignore[method-assign]
        r.wait_for("bob", sipua.Registered)
        auth = [m for m in sent if b"Authorization: Digest" in m]
        assert auth, "no authenticated REGISTER was sent"
        assert ("algorithm=" + kamailio.algorithm).encode() in auth[0]
    finally:
        r.close()


def test_wrong_password_is_refused(kamailio: Kamailio) -> None:
    r = Runner()
    try:
        _register(kamailio, "carol", "not-carols", r)
        ev = r.wait_for("carol", sipua.RegistrationFailed)
        assert ev.status in (401, 403)
    finally:
        r.close()


def test_wrong_ca_is_refused(kamailio: Kamailio) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as e:
        TlsFlow("127.0.0.1", kamailio.tls_port, str(kamailio.dir / "other-ca.pem"))
    assert "certificate verify failed" in str(e.value)


def test_wrong_hostname_is_refused(kamailio: Kamailio) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as e:
        TlsFlow("127.0.0.1", kamailio.tls_port, kamailio.ca, server_hostname="sip.example.org")
    assert "Hostname mismatch" in str(e.value) or "doesn't match" in str(e.value)


def test_call_between_two_of_our_uas_through_kamailio(kamailio: Kamailio) -> None:
    """alice calls bob over TLS through Kamailio (INVITE with digest, 180, 200, ACK, BYE); SDES
    offer/answer picks AEAD_AES_128_GCM; the keys cross over."""
    r = Runner()
    try:
        alice = _register(kamailio, "alice", "alicepw", r)
        bob = _register(kamailio, "bob", "bobpw", r)
        r.wait_for("alice", sipua.Registered)
        r.wait_for("bob", sipua.Registered)
        t0 = time.monotonic()
        cid = alice.call("sip:bob@127.0.0.1", LocalMedia("127.0.0.1", 40000), now_ms())
        inc = r.wait_for("bob", sipua.IncomingCall)
        assert inc.caller == "sip:alice@127.0.0.1" and inc.secure
        r.wait_for("alice", sipua.CallRinging)
        bob.answer(inc.call_id, LocalMedia("127.0.0.1", 40002), now_ms())
        ans_a = r.wait_for("alice", sipua.CallAnswered)
        setup_ms = (time.monotonic() - t0) * 1000
        ans_b = r.wait_for("bob", sipua.CallAnswered)
        assert ans_a.call_id == cid == inc.call_id
        ma, mb = ans_a.media, ans_b.media
        assert ma.suite == mb.suite == "AEAD_AES_128_GCM"
        assert ma.tx_key == mb.rx_key and ma.rx_key == mb.tx_key
        assert ma.remote_port == 40002 and mb.remote_port == 40000
        # let the ACK land, then hang up from the callee side this time
        deadline = time.monotonic() + 5
        while not bob.calls[cid].invite_tx.acked and time.monotonic() < deadline:
            r.step(50)
        assert bob.calls[cid].invite_tx.acked
        bob.hangup(cid, now_ms())
        end = r.wait_for("alice", sipua.CallEnded)
        assert end.by == "remote" and end.reason == "remote hangup"
        assert r.wait_for("bob", sipua.CallEnded).by == "local"
        print("call set-up INVITE->200 through kamailio (%s): %.1f ms"
              % (kamailio.algorithm, setup_ms))
    finally:
        r.close()


def test_cancel_through_kamailio(kamailio: Kamailio) -> None:
    r = Runner()
    try:
        alice = _register(kamailio, "alice", "alicepw", r)
        _register(kamailio, "bob", "bobpw", r)
        r.wait_for("alice", sipua.Registered)
        r.wait_for("bob", sipua.Registered)
        cid = alice.call("sip:bob@127.0.0.1", LocalMedia("127.0.0.1", 40000), now_ms())
        r.wait_for("bob", sipua.IncomingCall)
        r.wait_for("alice", sipua.CallRinging)
        alice.hangup(cid, now_ms())
        eb = r.wait_for("bob", sipua.CallEnded)
        ea = r.wait_for("alice", sipua.CallEnded)
        assert eb.status == 487 and eb.reason == "cancelled by caller"
        assert ea.status == 487 and ea.by == "local"
    finally:
        r.close()


def test_crlf_keepalive_answered_on_the_registered_flow(kamailio: Kamailio) -> None:
    """RFC 5626 §4.4.1: our CRLFCRLF pings on the TLS flow are answered with CRLF pongs, and the
    registration stays up (no FlowFailed)."""
    r = Runner()
    try:
        ua = _register(kamailio, "alice", "alicepw", r, keepalive_ms=150)
        r.wait_for("alice", sipua.Registered)
        deadline = time.monotonic() + 5
        while ua.pongs < 3 and time.monotonic() < deadline:
            r.step(50)
        assert ua.pongs >= 3
        assert not any(isinstance(e, sipua.FlowFailed) for e in r.events["alice"])
        assert ua.registered
    finally:
        r.close()


def test_new_flow_after_connection_loss_receives_calls(kamailio: Kamailio) -> None:
    """A phone behind NAT whose TLS connection broke reconnects and re-registers; Kamailio then
    delivers the next call over the new connection (handle_lost_tcp + fix_nated_register)."""
    r = Runner()
    try:
        alice = _register(kamailio, "alice", "alicepw", r)
        _register(kamailio, "bob", "bobpw", r)
        r.wait_for("alice", sipua.Registered)
        r.wait_for("bob", sipua.Registered)
        old_port = alice.config.local_port
        r.reconnect("alice", TlsFlow("127.0.0.1", kamailio.tls_port, kamailio.ca))
        assert alice.config.local_port != old_port and not alice.registered
        r.wait_for("alice", sipua.Registered)
        bob = r.parts["bob"][0]
        cid = bob.call("sip:alice@127.0.0.1", LocalMedia("127.0.0.1", 40010), now_ms())
        inc = r.wait_for("alice", sipua.IncomingCall, timeout_s=10)
        assert inc.call_id == cid
        alice.reject(cid, now_ms())
        assert r.wait_for("bob", sipua.CallEnded).status == 486
    finally:
        r.close()
