# mypy: disable-error-code="no-untyped-call"
# (firmware/ is the untyped MicroPython subset; its calls are checked by the tests themselves)
"""Shared real peers for the SIP/media interop tests: baresip driven over ctrl_tcp (moved here
from test_kamailio_baresip.py), a loopback packet capture (AF_PACKET raw socket on `lo`, root
only), and session-scoped Kamailio instances (TLS, db_text digest users; MD5 and SHA-256).

Kamailio and its PKI come from test_kamailio.py (`Kamailio`, `make_pki`). Every process started
here is stopped by its PID (terminate, wait with timeout, kill).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.interop.test_kamailio import KAMAILIO, TLS_MODULE, Kamailio, make_pki

BARESIP = shutil.which("baresip")
MODULES = "/usr/lib/baresip/modules"
HAVE_BARESIP = BARESIP is not None and os.path.exists(MODULES + "/srtp.so")
HAVE_KAMAILIO = os.path.exists(KAMAILIO) and os.path.exists(TLS_MODULE) and shutil.which("openssl")
IS_ROOT = os.geteuid() == 0


def free_pair() -> int:
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


def write_wav(path: Path, pcm: bytes) -> None:
    """8 kHz mono 16-bit WAV: what baresip's aufile source plays (and paces packets with)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)


def read_wav(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, 8000):
            raise ValueError("%s is not 8 kHz mono 16-bit" % path)
        return w.readframes(w.getnframes())


class Baresip:
    """baresip 1.0 (`baresip-core`) registered over TLS at `kam` with `mediaenc=srtp-mand`.

    source_pcm: what it sends in calls (aufile; baresip ends a call when the file ends), default
    30 s of silence. record=True loads `sndfile`, which writes what baresip encodes and what it
    decoded in each call to dump-<time>-enc.wav / -dec.wav in its directory."""

    def __init__(self, d: Path, user: str, password: str, kam: Kamailio, source_pcm: bytes | None = None,
                 record: bool = False, answermode: str = "auto") -> None:
        d.mkdir()
        self.dir = d
        self.sip_port = free_pair()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.ctrl_port = int(s.getsockname()[1])
        write_wav(d / "tone.wav", source_pcm if source_pcm is not None else b"\x00\x00" * 8000 * 30)
        modules = ["module g711.so", "module aufile.so", "module srtp.so"]
        if record:
            modules += ["module sndfile.so", "snd_path %s" % d]
        cfg = "\n".join([
            "poll_method epoll", "sip_listen 127.0.0.1:%d" % self.sip_port, "net_interface 127.0.0.1",
            "call_local_timeout 120", "call_max_calls 4", "audio_player aufile,%s/out.wav" % d,
            "audio_source aufile,%s/tone.wav" % d, "audio_alert aufile,%s/alert.wav" % d,
            "audio_path /usr/share/baresip", "rtp_ports 20000-29999", "rtcp_mux no",
            "module_path " + MODULES] + modules + [
            "module_tmp account.so", "module_app menu.so", "module_app ctrl_tcp.so",
            "ctrl_tcp_listen 127.0.0.1:%d" % self.ctrl_port, "sip_cafile %s" % kam.ca, ""])
        (d / "config").write_text(cfg)
        (d / "accounts").write_text(
            '<sip:%s@127.0.0.1;transport=tls>;auth_pass=%s;answermode=%s;mediaenc=srtp-mand;'
            'regint=600;audio_codecs=pcmu;outbound="sip:127.0.0.1:%d;transport=tls"\n'
            % (user, password, answermode, kam.tls_port))
        self.log = d / "baresip.log"
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen([str(BARESIP), "-f", str(d), "-v"], stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=subprocess.STDOUT, cwd=d)
        self._buf = b""
        self.pending: list[dict[str, Any]] = []
        try:
            self.ctrl = self._connect_ctrl()
            self.wait_log("200 OK", 10)   # registered at Kamailio
        except BaseException:
            self.stop()
            raise

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

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("baresip log lacks %r:\n%s" % (text, self.log_text()[-2000:]))
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

    def wait_event(self, event_type: str, call_id: str | None, step: Callable[[], None],
                   timeout: float = 10) -> dict[str, Any]:
        """The ctrl_tcp event of `event_type` for `call_id` (baresip's "id" is the SIP Call-ID;
        None: any call), running `step` (our side's loop) meanwhile; other events stay queued."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pending.extend(self.events())
            for e in self.pending:
                if e.get("type") == event_type and (call_id is None or e.get("id") == call_id):
                    self.pending.remove(e)
                    return e
            step()
        raise TimeoutError("baresip sent no %s:\n%s" % (event_type, self.log_text()[-2000:]))

    def recordings(self) -> dict[str, Path]:
        """{"enc": path, "dec": path} of the newest sndfile dump pair."""
        out = {}
        for kind in ("enc", "dec"):
            files = sorted(self.dir.glob("dump-*-%s.wav" % kind))
            if files:
                out[kind] = files[-1]
        return out

    def clear_recordings(self) -> None:
        for f in self.dir.glob("dump-*.wav"):
            f.unlink()

    def stop(self) -> None:
        try:
            ctrl = getattr(self, "ctrl", None)
            if ctrl is not None:
                ctrl.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self._logf.close()


# --- loopback capture ------------------------------------------------------------------------------

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


class UdpCapture:
    """Every UDP datagram on `lo` to or from one of `ports`, as (src_port, dst_port, payload), in
    wire order. An AF_PACKET raw socket (root): the bytes as the kernel moved them, below every
    socket of the processes under test. Each loopback packet is seen twice (outgoing and
    incoming); only the incoming copy is kept."""

    def __init__(self, ports: set[int]) -> None:
        self.ports = ports
        self.packets: list[tuple[int, int, bytes]] = []
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING or len(frame) < 14 + 20 + 8:
                continue
            if struct.unpack_from("!H", frame, 12)[0] != 0x0800:
                continue
            ip = frame[14:]
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] != 17 or len(ip) < ihl + 8:
                continue
            sport, dport, ulen = struct.unpack_from("!HHH", ip, ihl)
            if sport in self.ports or dport in self.ports:
                self.packets.append((sport, dport, bytes(ip[ihl + 8:ihl + ulen])))

    def stop(self) -> list[tuple[int, int, bytes]]:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
        return self.packets


# --- our phone --------------------------------------------------------------------------------------

def phone(kam: Kamailio, user: str, password: str, **kw: object) -> Any:
    """One of our phones (firmware.phone.io_cpython.PhoneIo) with a verified TLS flow to `kam`;
    SRTCP every ~0.4 s so that short test calls exchange reports. Not yet registered."""
    from firmware.phone.io_cpython import PhoneIo
    from firmware.sip import ua as sipua

    cfg = sipua.UaConfig(user, "127.0.0.1", password, "TLS")
    kw.setdefault("rtcp_interval_ms", 400)
    return PhoneIo.open(cfg, "127.0.0.1", kam.tls_port, kam.ca, **kw)


def oracle(suite: str, key: bytes, salt: bytes) -> Any:
    """An SRTP session on libsrtp (pylibsrtp), independent of our code, to check wire packets."""
    from firmware.media.srtp import SrtpSession

    try:
        return SrtpSession(suite, key, salt, "libsrtp")
    except (ImportError, OSError):
        return SrtpSession(suite, key, salt, "pure")


# --- fixtures --------------------------------------------------------------------------------------

def _needs(baresip: bool) -> None:
    if not HAVE_KAMAILIO:
        pytest.skip("needs Debian kamailio + kamailio-tls-modules and openssl")
    if not IS_ROOT:
        pytest.skip("Kamailio runs as root in the foreground in this set-up")
    if baresip and not HAVE_BARESIP:
        pytest.skip("needs Debian baresip-core")


def _kamailio(algorithm: str) -> Iterator[Kamailio]:
    d = Path(tempfile.mkdtemp(prefix="kam-call-"))
    try:
        make_pki(d)
        k = Kamailio(d, algorithm)
        try:
            yield k
        finally:
            k.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="package")
def kam_md5() -> Iterator[Kamailio]:
    """Kamailio over TLS challenging with MD5 digest (users alice, bob, carol)."""
    _needs(False)
    yield from _kamailio("MD5")


@pytest.fixture(scope="package")
def kam_sha256() -> Iterator[Kamailio]:
    """A second Kamailio instance challenging with SHA-256 digest (RFC 8760)."""
    _needs(False)
    yield from _kamailio("SHA-256")


BARESIP_TONE_HZ = 600


@pytest.fixture(scope="package")
def baresip_bob(kam_md5: Kamailio) -> Iterator[Baresip]:
    """baresip registered as bob at kam_md5: auto-answers, plays a 600 Hz tone (aufile), records
    what it decodes (sndfile)."""
    _needs(True)
    from firmware.phone.tone import sine_pcm

    bs = Baresip(kam_md5.dir / ("bs-bob-%d" % os.getpid()), "bob", "bobpw", kam_md5,
                 source_pcm=sine_pcm(BARESIP_TONE_HZ, 60000, amplitude=6000), record=True)
    try:
        yield bs
    finally:
        bs.stop()
