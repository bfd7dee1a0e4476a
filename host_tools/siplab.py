"""A SIP lab on the host: Kamailio over TLS with db_text digest users, a baresip driven over its
ctrl_tcp interface, and the certificates they need.

Used by the interop and system tests and by ``python -m host_tools.demo``. Everything runs in a
directory the caller owns (a temp dir) and every process is stopped by its PID (terminate, wait
with a timeout, kill). Processes start in their own session so that a Ctrl-C on the caller's
terminal reaches the caller only, which then stops them in order.

Kamailio's configuration is ``tests/data/sip/kamailio`` (the project's working TLS registrar/proxy
set-up, users alice/bob/carol on realm 127.0.0.1; read as data, nothing is imported from tests/).
Needs Debian ``kamailio`` + ``kamailio-tls-modules``, ``openssl``, ``baresip-core``, and root
(Kamailio runs in the foreground as root in this set-up).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import wave
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from host_tools import ports

REPO = Path(__file__).resolve().parents[1]
KAMAILIO_CONFIG = REPO / "tests" / "data" / "sip" / "kamailio"
KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
TLS_MODULE = "/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so"
BARESIP = shutil.which("baresip")
MODULES = "/usr/lib/baresip/modules"
HAVE_BARESIP: bool = BARESIP is not None and os.path.exists(MODULES + "/srtp.so")
HAVE_KAMAILIO: bool = (os.path.exists(KAMAILIO) and os.path.exists(TLS_MODULE)
                       and shutil.which("openssl") is not None)
IS_ROOT: bool = os.geteuid() == 0
# The users of KAMAILIO_CONFIG/subscriber (realm 127.0.0.1).
USERS = {"alice": "alicepw", "bob": "bobpw", "carol": "carolpw", "dave": "davepw",
         "mallory": "mallorypw"}


class SipLabError(RuntimeError):
    """A lab process could not start or did not become ready (the message carries its log)."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    try:
        return ports.free_port(kind)
    except OSError as e:
        raise SipLabError(str(e)) from e


@contextlib.contextmanager
def port_lock(port: int, timeout: float = 3600.0) -> Iterator[None]:
    """Hold the machine-wide lock of 127.0.0.1:*port* (flock on a file in /tmp) while a fixed-port
    lab runs: the QEMU phones' signed device-config names 5061, so test modules on parallel
    workers (make test) and a `make demo` take turns instead of failing on a taken port."""
    path = Path(tempfile.gettempdir()) / f"trusted-phone-port-{port}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"127.0.0.1:{port} stayed locked by another lab for "
                                       f"{timeout:.0f} s ({path})") from None
                time.sleep(0.5)
        yield
    finally:
        os.close(fd)  # releases the lock


def port_free(port: int) -> bool:
    """True when a server can listen on 127.0.0.1:port (TCP) now. SO_REUSEADDR as Kamailio sets
    it: connections of a stopped server in TIME-WAIT do not count, another listener does."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_pair() -> int:
    """A port P with P and P+1 free over TCP and UDP (baresip binds TLS on P+1)."""
    for _ in range(50):
        p = free_port()
        ok = True
        for port in (p, p + 1):
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as t:
                    try:
                        t.bind(("127.0.0.1", port))
                    except OSError:
                        ok = False
        if ok:
            ports.reserve(p + 1)
            return p
    raise SipLabError("no free port pair")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate, wait, kill if it does not exit: by this process's PID only."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


# --- certificates ----------------------------------------------------------------------------------

def _openssl(cwd: Path, *args: str) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise SipLabError("openssl %s failed: %s" % (args[0], proc.stderr.decode(errors="replace")))


def _server_ext(d: Path, sans: str) -> None:
    # A TLS server leaf (RFC 5280 §4.2.1.9/.3/.12): not a CA, signs handshakes, serverAuth.
    (d / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=%s\n" % sans)


def make_pki(d: Path, prefix: str = "") -> None:
    """A P-256 test CA (PREFIXca.pem/.key) and, without a prefix, a server certificate for
    127.0.0.1 / localhost (server.pem/.key) issued by it."""
    ca, key = prefix + "ca.pem", prefix + "ca.key"
    _openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-days", "30", "-subj", "/CN=Test SIP CA " + prefix, "-keyout", key, "-out", ca,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    if prefix:
        return
    _openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    _server_ext(d, "IP:127.0.0.1,DNS:localhost")
    _openssl(d, "x509", "-req", "-in", "server.csr", "-CA", ca, "-CAkey", key, "-CAcreateserial",
             "-days", "30", "-extfile", "server.ext", "-out", "server.pem")


# What a booted phone accepts: it sees the host as 10.0.2.2 (QEMU user networking) and checks
# that name against the certificate (docs/calling.md).
PHONE_SANS = "IP:10.0.2.2,IP:127.0.0.1,DNS:localhost"


def make_server_cert(d: Path, ca_pem: Path, ca_key: Path, sans: str = PHONE_SANS) -> None:
    """ca.pem (a copy of `ca_pem`) and server.pem/server.key issued by that CA for `sans`
    (e.g. "IP:10.0.2.2,IP:127.0.0.1,DNS:localhost"): a Kamailio the booted phone trusts through
    the image's own CA bundle."""
    shutil.copy(ca_pem, d / "ca.pem")
    _openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    _server_ext(d, sans)
    _openssl(d, "x509", "-req", "-in", "server.csr", "-CA", str(ca_pem), "-CAkey", str(ca_key),
             "-CAcreateserial", "-CAserial", str(d / "ca.srl"), "-days", "2",
             "-extfile", "server.ext", "-out", "server.pem")


# --- Kamailio --------------------------------------------------------------------------------------

class Kamailio:
    """`kamailio -DD -E` with KAMAILIO_CONFIG in `d` (which must hold ca.pem, server.pem and
    server.key: make_pki or make_server_cert), ready once a verified TLS handshake succeeds.
    algorithm: "MD5" or "SHA-256" (every challenge SHA-256, RFC 8760)."""

    def __init__(self, d: Path, algorithm: str, tls_port: int | None = None,
                 config: Path = KAMAILIO_CONFIG, defines: tuple[str, ...] = ()) -> None:
        """tls_port: a fixed TLS port (the booted phone's signed device-config names 5061);
        default a free one. defines: extra `-A` names for kamailio.cfg (e.g.
        WITH_TRUSTED_CALLERS: INVITEs relayed without a digest challenge)."""
        self.dir = d
        self.algorithm = algorithm
        defines = (("WITH_SHA256",) if algorithm == "SHA-256" else ()) + tuple(defines)
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tls_port = tls_port if tls_port is not None else free_port(socket.SOCK_STREAM)
        self.ca = str(d / "ca.pem")
        self.log = d / "kamailio.log"
        (d / "db").mkdir()
        shutil.copy(config / "subscriber", d / "db" / "subscriber")
        shutil.copy(config / "version", d / "db" / "version")
        for name in ("kamailio.cfg", "tls.cfg"):
            text = (config / name).read_text()
            text = text.replace("@DIR@", str(d)).replace("@UDP_PORT@", str(self.udp_port))
            text = text.replace("@TLS_PORT@", str(self.tls_port))
            (d / name).write_text(text)
        args = [KAMAILIO, "-DD", "-E", "-m", "32", "-M", "8", "-f", str(d / "kamailio.cfg")]
        for define in defines:
            args += ["-A", define]
        self.t0 = time.monotonic()
        self._logf: IO[bytes] = open(self.log, "wb")
        self.proc = subprocess.Popen(args, stdout=self._logf, stderr=subprocess.STDOUT, cwd=d,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self.ready_ms = self._wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def _wait_ready(self) -> float:
        # Ready means a verified TLS handshake: Kamailio binds before it may still exit on a bad
        # certificate path.
        ctx = ssl.create_default_context(cafile=self.ca)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SipLabError("kamailio exited %s:\n%s" % (self.proc.returncode,
                                                               self.log_text()[-3000:]))
            try:
                with socket.create_connection(("127.0.0.1", self.tls_port), timeout=1) as raw:
                    with ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
                        return (time.monotonic() - self.t0) * 1000
            except OSError:
                time.sleep(0.02)
        raise SipLabError("kamailio not TLS-ready:\n" + self.log_text()[-3000:])

    def stop(self) -> None:
        try:
            stop_process(self.proc)
        finally:
            self._logf.close()


# --- WAV files -------------------------------------------------------------------------------------

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


# --- baresip ---------------------------------------------------------------------------------------

class Baresip:
    """baresip 1.0 (`baresip-core`) registered over TLS at `kam` with `mediaenc=srtp-mand`.

    source_pcm: what it sends in calls (aufile; baresip ends a call when the file ends), default
    30 s of silence. record=True loads `sndfile`, which writes what baresip encodes and what it
    decoded in each call to dump-<time>-enc.wav / -dec.wav in its directory."""

    def __init__(self, d: Path, user: str, password: str, kam: Kamailio, source_pcm: bytes | None = None,
                 record: bool = False, answermode: str = "auto") -> None:
        if BARESIP is None:
            raise SipLabError("baresip is not installed (Debian baresip-core)")
        d.mkdir()
        self.dir = d
        self.sip_port = free_pair()
        self.ctrl_port = free_port()
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
        self._logf: IO[bytes] = open(self.log, "wb")
        self.proc = subprocess.Popen([BARESIP, "-f", str(d), "-v"], stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=subprocess.STDOUT, cwd=d,
                                     start_new_session=True)
        self._buf = b""
        self.pending: list[dict[str, Any]] = []
        self.ctrl: socket.socket | None = None
        try:
            self.ctrl = self._connect_ctrl()
            self.wait_log("200 OK", 10)   # registered at Kamailio
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _connect_ctrl(self) -> socket.socket:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SipLabError("baresip exited:\n" + self.log_text()[-2000:])
            try:
                return socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
            except OSError:
                time.sleep(0.05)
        raise SipLabError("baresip ctrl_tcp not up:\n" + self.log_text()[-2000:])

    def _ctrl(self) -> socket.socket:
        if self.ctrl is None:
            raise SipLabError("baresip's ctrl_tcp is not connected")
        return self.ctrl

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SipLabError("baresip log lacks %r:\n%s" % (text, self.log_text()[-2000:]))
            time.sleep(0.05)

    def command(self, command: str, params: str = "") -> None:
        """One ctrl_tcp command (netstring JSON), e.g. ("dial", "sip:alice@127.0.0.1")."""
        body = json.dumps({"command": command, "params": params, "token": "t"}).encode()
        self._ctrl().sendall(b"%d:%s," % (len(body), body))

    def events(self) -> list[dict[str, Any]]:
        """Netstring JSON messages received so far on ctrl_tcp."""
        ctrl = self._ctrl()
        ctrl.setblocking(False)
        try:
            while True:
                chunk = ctrl.recv(65536)
                if not chunk:
                    break
                self._buf += chunk
        except BlockingIOError:
            pass
        finally:
            ctrl.setblocking(True)
        out: list[dict[str, Any]] = []
        while b":" in self._buf:
            n_text, _, rest = self._buf.partition(b":")
            if not n_text.isdigit() or len(rest) < int(n_text) + 1:
                break
            n = int(n_text)
            msg = json.loads(rest[:n])
            if isinstance(msg, dict):
                out.append(msg)
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
            if self.ctrl is not None:
                self.ctrl.close()
        finally:
            try:
                stop_process(self.proc)
            finally:
                self._logf.close()
