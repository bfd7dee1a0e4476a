# mypy: disable-error-code="no-untyped-call"
# (firmware/ is the untyped MicroPython subset; its calls are checked by the tests themselves)
"""SIP/SDES interop with an independent implementation: our UA core and a real baresip 1.0 call
each other through a real Kamailio over TLS (signalling and SDES offer/answer only; the media
path is tested elsewhere).

Each suite we can offer is answered by baresip (`mediaenc=srtp-mand`), and baresip's own offer is
answered by us with the strongest suite it lists. baresip is driven over `ctrl_tcp` (netstring
JSON). Needs Debian `baresip-core` besides the Kamailio packages.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import wave
from pathlib import Path
from typing import Any, Iterator

import pytest

from firmware.sip import ua as sipua
from firmware.sip.io_cpython import Runner, TlsFlow, now_ms
from firmware.sip.sdp import PREFERENCE, LocalMedia
from tests.interop.test_kamailio import Kamailio, _register, make_pki

BARESIP = shutil.which("baresip")
MODULES = "/usr/lib/baresip/modules"

pytestmark = pytest.mark.skipif(
    BARESIP is None or not os.path.exists(MODULES + "/srtp.so") or os.geteuid() != 0,
    reason="needs Debian baresip-core, kamailio(+tls modules) and root for Kamailio")


def _free_pair() -> int:
    """A port P with P and P+1 free over TCP and UDP (baresip binds TLS on P+1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = int(s.getsockname()[1])
        ok = True
        for port in (p, p + 1):
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as t:
                    try:
                        t.bind(("127.0.0.1", port))
                    except OSError:
                        ok = False
        if ok and p < 65000:
            return p
    raise RuntimeError("no free port pair")


def _tone(path: Path) -> None:
    # 30 s of silence, 8 kHz mono 16-bit: aufile paces packets with it (a null source does not)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 8000 * 30)   # baresip ends the call when the file ends


class Baresip:
    def __init__(self, d: Path, user: str, password: str, kam: Kamailio) -> None:
        d.mkdir()
        self.sip_port = _free_pair()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.ctrl_port = int(s.getsockname()[1])
        _tone(d / "tone.wav")
        cfg = "\n".join([
            "poll_method epoll", "sip_listen 127.0.0.1:%d" % self.sip_port, "net_interface 127.0.0.1",
            "call_local_timeout 120", "call_max_calls 4", "audio_player aufile,%s/out.wav" % d,
            "audio_source aufile,%s/tone.wav" % d, "audio_alert aufile,%s/alert.wav" % d,
            "audio_path /usr/share/baresip", "rtp_ports 20000-20999", "rtcp_mux no",
            "module_path " + MODULES, "module g711.so", "module aufile.so", "module srtp.so",
            "module_tmp account.so", "module_app menu.so", "module_app ctrl_tcp.so",
            "ctrl_tcp_listen 127.0.0.1:%d" % self.ctrl_port, "sip_cafile %s" % kam.ca, ""])
        (d / "config").write_text(cfg)
        (d / "accounts").write_text(
            '<sip:%s@127.0.0.1;transport=tls>;auth_pass=%s;answermode=auto;mediaenc=srtp-mand;'
            'regint=600;audio_codecs=pcmu;outbound="sip:127.0.0.1:%d;transport=tls"\n'
            % (user, password, kam.tls_port))
        self.log = d / "baresip.log"
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen([str(BARESIP), "-f", str(d), "-v"], stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=subprocess.STDOUT, cwd=d)
        self.ctrl = self._connect_ctrl()
        self._buf = b""
        self.pending: list[dict[str, Any]] = []
        self.wait_log("200 OK", 10)   # registered at Kamailio

    def _connect_ctrl(self) -> socket.socket:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("baresip exited:\n" + self.log.read_text(errors="replace")[-2000:])
            try:
                return socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("baresip ctrl_tcp not up:\n" + self.log.read_text(errors="replace")[-2000:])

    def wait_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("baresip log lacks %r:\n%s" % (text, self.log.read_text(errors="replace")[-2000:]))
            time.sleep(0.05)

    def command(self, command: str, params: str = "") -> None:
        body = json.dumps({"command": command, "params": params, "token": "t"}).encode()
        self.ctrl.sendall(b"%d:%s," % (len(body), body))

    def events(self) -> list[dict[str, Any]]:
        """Netstring JSON messages received so far on ctrl_tcp."""
        self.ctrl.setblocking(False)
        try:
            while True:
                chunk = self.ctrl.recv(65536)
                if not chunk:
                    break
                self._buf += chunk
        except BlockingIOError:
            pass
        finally:
            self.ctrl.setblocking(True)
        out = []
        while b":" in self._buf:
            n_text, _, rest = self._buf.partition(b":")
            if not n_text.isdigit() or len(rest) < int(n_text) + 1:
                break
            n = int(n_text)
            out.append(json.loads(rest[:n]))
            self._buf = rest[n + 1:]
        return out

    def stop(self) -> None:
        try:
            self.ctrl.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self._logf.close()


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kamailio, Baresip]]:
    d = tmp_path_factory.mktemp("kam-bs")
    make_pki(d)
    kam = Kamailio(d, "MD5")
    try:
        bs = Baresip(d / "bs", "bob", "bobpw", kam)
    except BaseException:
        kam.stop()
        raise
    try:
        yield kam, bs
    finally:
        bs.stop()
        kam.stop()


def _wait_bs(bs: Baresip, r: Runner, event_type: str, call_id: str, timeout: float = 10) -> dict[str, Any]:
    """The ctrl_tcp event of `event_type` for the call `call_id` (baresip's "id" is the SIP
    Call-ID); other events stay queued for later waits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bs.pending.extend(bs.events())
        for e in bs.pending:
            if e.get("type") == event_type and e.get("id") == call_id:
                bs.pending.remove(e)
                return e
        r.step(50)
    raise TimeoutError("baresip sent no %s:\n%s" % (event_type, bs.log.read_text(errors="replace")[-2000:]))


@pytest.mark.parametrize("suite", PREFERENCE)
def test_we_call_baresip_each_suite(peers: tuple[Kamailio, Baresip], suite: str) -> None:
    kam, bs = peers
    r = Runner()
    try:
        alice = _register(kam, "alice", "alicepw", r)
        r.wait_for("alice", sipua.Registered)
        t0 = time.monotonic()
        cid = alice.call("sip:bob@127.0.0.1", LocalMedia("127.0.0.1", 41000, suites=(suite,)), now_ms())
        ans = r.wait_for("alice", sipua.CallAnswered, timeout_s=10)   # baresip auto-answers
        print("INVITE->200 (with 407 round trip) to baresip, %s: %.1f ms" % (suite, (time.monotonic() - t0) * 1000))
        assert ans.call_id == cid and ans.media.suite == suite and ans.media.codec == "PCMU"
        assert ans.media.remote_address == "127.0.0.1" and len(ans.media.rx_key) == 16
        # baresip reports the SRTP suite it keyed from our offer/answer
        menc = _wait_bs(bs, r, "CALL_MENC", cid)
        assert menc["param"] == "0,audio," + suite
        alice.hangup(cid, now_ms())
        r.wait_for("alice", sipua.CallEnded)
        _wait_bs(bs, r, "CALL_CLOSED", cid)
    finally:
        r.close()


def test_baresip_calls_us(peers: tuple[Kamailio, Baresip]) -> None:
    kam, bs = peers
    r = Runner()
    try:
        alice = _register(kam, "alice", "alicepw", r)
        r.wait_for("alice", sipua.Registered)
        bs.command("dial", "sip:alice@127.0.0.1")
        inc = r.wait_for("alice", sipua.IncomingCall, timeout_s=10)
        assert inc.secure and inc.caller.startswith("sip:bob@127.0.0.1")
        alice.answer(inc.call_id, LocalMedia("127.0.0.1", 41002), now_ms())
        ans = r.wait_for("alice", sipua.CallAnswered)
        # we answer with the strongest suite baresip offered (it offers AES_CM_128_HMAC_SHA1_80)
        assert ans.media.suite in PREFERENCE
        menc = _wait_bs(bs, r, "CALL_MENC", inc.call_id)
        assert menc["param"] == "0,audio," + ans.media.suite
        _wait_bs(bs, r, "CALL_ESTABLISHED", inc.call_id)
        bs.command("hangup")
        end = r.wait_for("alice", sipua.CallEnded, timeout_s=10)
        assert end.by == "remote" and end.reason == "remote hangup"
        print("baresip offered, we chose %s" % ans.media.suite)
    finally:
        r.close()
