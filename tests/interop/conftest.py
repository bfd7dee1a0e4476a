# mypy: disable-error-code="no-untyped-call"
# (firmware/ is the untyped MicroPython subset; its calls are checked by the tests themselves)
"""Shared real peers for the SIP/media interop tests: baresip driven over ctrl_tcp, a loopback
packet capture (AF_PACKET raw socket on `lo`, root only), and session-scoped Kamailio instances
(TLS, db_text digest users; MD5 and SHA-256).

Kamailio, baresip and their PKI come from host_tools.siplab (`Kamailio`, `Baresip`, `make_pki`).
Every process started here is stopped by its PID (terminate, wait with timeout, kill).
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

# The launchers live in host_tools.siplab (the demo uses them too); re-exported here for the
# tests that import them from this module.
from host_tools.siplab import HAVE_BARESIP, HAVE_KAMAILIO, IS_ROOT, make_pki
from host_tools.siplab import MODULES as MODULES, Baresip as Baresip, Kamailio as Kamailio
from host_tools.siplab import read_wav as read_wav


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
    """An SRTP session on libsrtp (pylibsrtp), independent of our code, to check wire packets.
    Without libsrtp there is no oracle: the test fails (our own engine cannot judge itself)."""
    from firmware.media.srtp import SrtpSession

    try:
        s = SrtpSession(suite, key, salt, "libsrtp")
    except (ImportError, OSError) as e:
        pytest.fail("the SRTP oracle is libsrtp (pylibsrtp, host_tools/requirements.txt) and it "
                    "does not load: %s" % e)
    assert s.engine == "libsrtp", s.engine
    return s


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
