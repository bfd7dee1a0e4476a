# mypy: disable-error-code="no-untyped-call"
# (firmware/ is the untyped MicroPython subset; its calls are checked by the tests themselves)
"""Our SIP UA core against a real Kamailio 5.6 registrar/proxy over TLS.

The fixture writes tests/data/sip/kamailio (config, db_text users) and a fresh test PKI into a
temp dir, starts `kamailio -DD -E` on free ports (one instance with MD5 digest, one with
`-A WITH_SHA256`), waits for a verified TLS handshake, and stops it by PID. The UA is the
sans-I/O core from firmware.sip.ua driven by firmware.sip.io_cpython (ssl socket + select loop).
Needs Debian `kamailio` and `kamailio-tls-modules`, `openssl`, and root (Kamailio in the
foreground as root, as in the project's working set-up).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from firmware.sip import ua as sipua
from firmware.sip.io_cpython import Runner, TlsFlow, now_ms
from firmware.sip.sdp import LocalMedia

DATA = Path(__file__).resolve().parents[1] / "data" / "sip" / "kamailio"
KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
TLS_MODULE = "/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(KAMAILIO) and os.path.exists(TLS_MODULE) and shutil.which("openssl")),
    reason="needs Debian kamailio + kamailio-tls-modules and openssl")


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_pki(d: Path, prefix: str = "") -> None:
    """A P-256 test CA and a server certificate for 127.0.0.1 / localhost (as pki-gen-certs.sh)."""
    ca, key = prefix + "ca.pem", prefix + "ca.key"
    _openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-days", "30", "-subj", "/CN=Test SIP CA " + prefix, "-keyout", key, "-out", ca,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    if prefix:
        return
    _openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (d / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(d, "x509", "-req", "-in", "server.csr", "-CA", ca, "-CAkey", key, "-CAcreateserial",
             "-days", "30", "-extfile", "server.ext", "-out", "server.pem")


def make_server_cert(d: Path, ca_pem: Path, ca_key: Path, sans: str) -> None:
    """ca.pem (a copy of `ca_pem`) and server.pem/server.key issued by that CA for `sans`
    (e.g. "IP:10.0.2.2,IP:127.0.0.1,DNS:localhost"): a Kamailio the booted phone trusts through
    the image's own CA bundle."""
    shutil.copy(ca_pem, d / "ca.pem")
    _openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (d / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=%s\n" % sans)
    _openssl(d, "x509", "-req", "-in", "server.csr", "-CA", str(ca_pem), "-CAkey", str(ca_key),
             "-CAcreateserial", "-CAserial", str(d / "ca.srl"), "-days", "2",
             "-extfile", "server.ext", "-out", "server.pem")


class Kamailio:
    def __init__(self, d: Path, algorithm: str, tls_port: int | None = None) -> None:
        """tls_port: a fixed TLS port (the booted phone's signed device-config names 5061);
        default a free one."""
        self.dir = d
        self.algorithm = algorithm
        defines = ["WITH_SHA256"] if algorithm == "SHA-256" else []
        self.udp_port = _free_port(socket.SOCK_DGRAM)
        self.tls_port = tls_port if tls_port is not None else _free_port(socket.SOCK_STREAM)
        self.ca = str(d / "ca.pem")
        self.log = d / "kamailio.log"
        (d / "db").mkdir()
        shutil.copy(DATA / "subscriber", d / "db" / "subscriber")
        shutil.copy(DATA / "version", d / "db" / "version")
        for name in ("kamailio.cfg", "tls.cfg"):
            text = (DATA / name).read_text()
            text = text.replace("@DIR@", str(d)).replace("@UDP_PORT@", str(self.udp_port))
            text = text.replace("@TLS_PORT@", str(self.tls_port))
            (d / name).write_text(text)
        args = [KAMAILIO, "-DD", "-E", "-m", "32", "-M", "8", "-f", str(d / "kamailio.cfg")]
        for define in defines:
            args += ["-A", define]
        self.t0 = time.monotonic()
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(args, stdout=self._logf, stderr=subprocess.STDOUT, cwd=d)
        self.ready_ms = self._wait_ready()

    def _wait_ready(self) -> float:
        # Ready means a verified TLS handshake: Kamailio binds before it may still exit on a bad
        # certificate path.
        ctx = ssl.create_default_context(cafile=self.ca)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("kamailio exited %s:\n%s" % (self.proc.returncode, self.log.read_text()[-3000:]))
            try:
                with socket.create_connection(("127.0.0.1", self.tls_port), timeout=1) as raw:
                    with ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
                        return (time.monotonic() - self.t0) * 1000
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("kamailio not TLS-ready:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._logf.close()


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
