# Thin CPython I/O for the phone core: the verified TLS flow from firmware.sip.io_cpython (TCP_NODELAY
# set there), one UDP socket pair for RTP/RTCP, and a select() loop that feeds PhoneApp bytes and
# time. Nothing about SIP or media is decided here.

import select
import ssl
import time

from firmware.phone.app import PhoneApp
from firmware.phone.sockets import bind_media_pair  # noqa: F401  (re-exported)
from firmware.sip.io_cpython import TlsFlow, now_ms
from firmware.sip.ua import FlowFailed, UaConfig  # noqa: F401  (UaConfig re-exported for callers)

RECONNECT_FIRST_MS = 1000
RECONNECT_MAX_MS = 60000


class PhoneIo:
    """One phone: a PhoneApp with its TLS flow and media sockets. Events collect in `events`."""

    def __init__(self, app, flow, rtp_sock, rtcp_sock, connect=None):
        self.app = app
        self.flow = flow
        self.rtp = rtp_sock
        self.rtcp = rtcp_sock
        self.events = []
        # connect() -> a new verified TlsFlow: when the flow breaks (peer closed it, or no
        # keep-alive pong, RFC 5626 §4.4.1) the phone reconnects with backoff and registers again
        self._connect = connect
        self.reconnect_at = None
        self._backoff = RECONNECT_FIRST_MS
        self.reconnects = 0

    @classmethod
    def open(cls, config, server, port, cafile, media_host="127.0.0.1", server_hostname=None,
             media_bind=None, media_port=None, media_socks=None, **app_kw):
        """Connect the TLS flow (certificate and host name verified, else ssl raises), bind the
        media ports and build the PhoneApp. `config` is a UaConfig; its local address is set from
        the flow. `media_host` is the address the SDP advertises; `media_bind` (default the same)
        the address the sockets bind, and `media_port` a fixed even RTP port: behind a NAT that
        forwards fixed ports (QEMU user networking with hostfwd) they differ from what peers use.
        `media_socks`: an (rtp, rtcp) pair bound beforehand (bind_media_pair), kept across
        reconnects; the caller closes it if this raises."""
        flow = TlsFlow(server, port, cafile, server_hostname)
        if media_socks is not None:
            rtp, rtcp = media_socks
        else:
            try:
                rtp, rtcp = bind_media_pair(media_bind or media_host, port=media_port)
            except BaseException:
                flow.close()
                raise
        config.local_host = flow.local_host
        config.local_port = flow.local_port
        app = PhoneApp(config, media_host, rtp.getsockname()[1], now_ms(), tls_verified=True,
                       **app_kw)
        return cls(app, flow, rtp, rtcp,
                   lambda: TlsFlow(server, port, cafile, server_hostname))

    def reconnect(self, flow):
        """A new verified flow after the old one broke: register again over it."""
        self.flow.close()
        now = now_ms()
        self.app.connection_lost(now)
        self.flow = flow
        self.app.flow_up(flow.local_host, flow.local_port, True)
        self.app.register(now)

    def _flow_lost(self, now, why):
        if not self.flow.closed:
            self.flow.close()
        self.app.log("sip: connection lost (%s)%s" % (
            why, "; reconnecting in %d ms" % self._backoff if self._connect else ""))
        self.app.connection_lost(now)
        if self._connect is not None and self.reconnect_at is None:
            self.reconnect_at = now + self._backoff

    def _try_reconnect(self, now):
        self.reconnect_at = None
        try:
            flow = self._connect()
        except (OSError, ssl.SSLError) as e:
            # a refused certificate is an ssl.SSLError: never fall back to an unverified flow
            self._backoff = min(2 * self._backoff, RECONNECT_MAX_MS)
            self.reconnect_at = now + self._backoff
            self.app.log("sip: reconnect failed (%s); next try in %d ms" % (e, self._backoff))
            return
        self._backoff = RECONNECT_FIRST_MS
        self.reconnects += 1
        self.reconnect(flow)

    def next_deadline(self):
        times = [self.app.get_timer(), self.reconnect_at]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def sockets(self):
        out = [self.rtp, self.rtcp]
        if not self.flow.closed:
            out.append(self.flow)
        return out

    def flush(self):
        for data in self.app.sip_to_send():
            if self.flow.closed:
                continue    # no flow: the UA registers again (and retries) once one is up
            try:
                self.flow.send(data)
            except OSError as e:
                self._flow_lost(now_ms(), str(e))
        for kind, data, addr in self.app.datagrams_to_send():
            sock = self.rtcp if kind == "rtcp" else self.rtp
            try:
                sock.sendto(data, addr)
            except OSError as e:
                # ICMP port unreachable from an earlier datagram, a full buffer: media is lossy
                self.app.log("media: send to %s:%d failed: %s" % (addr[0], addr[1], e))

    def handle_ready(self, ready, now):
        app = self.app
        if self.flow in ready or (not self.flow.closed and self.flow.pending()):
            try:
                data = self.flow.recv()
            except OSError as e:     # a reset connection, a TLS alert
                data = None
                self._flow_lost(now, str(e))
            if data:
                app.receive_sip(data, now)
            elif data == b"":
                self._flow_lost(now, "closed by the server")
        for sock, is_rtcp in ((self.rtp, False), (self.rtcp, True)):
            if sock not in ready:
                continue
            for _ in range(64):   # drain what is queued, bounded so one socket cannot starve
                try:
                    data, addr = sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break   # ICMP errors surface here on Linux; nothing to read
                app.receive_media(data, addr, now, is_rtcp)
        t = app.get_timer()
        if t is not None and t <= now:
            app.handle_timer(now)
        while True:
            e = app.next_event()
            if e is None:
                break
            self.events.append(e)
            if isinstance(e, FlowFailed) and not self.flow.closed:
                self._flow_lost(now, e.reason)
        if self.reconnect_at is not None and self.reconnect_at <= now:
            self._try_reconnect(now)
        self.flush()

    def close(self):
        for s in (self.rtp, self.rtcp):
            s.close()
        self.flow.close()


class PhoneLoop:
    """A select() loop over any number of phones (one on the device, two in tests)."""

    def __init__(self, *phones):
        self.phones = list(phones)
        self.hooks = []     # callables(now) run every step (tests: feed a tone, read audio)
        self.readers = []   # (file object, callable(now)): e.g. the serial console's input

    def add_reader(self, fileobj, callback):
        """Call callback(now) whenever `fileobj` (anything with fileno()) is readable, so one
        select() serves the phone and, say, the console line reader."""
        self.readers.append((fileobj, callback))

    def add(self, phone):
        self.phones.append(phone)
        return phone

    def step(self, max_wait_ms=200):
        for p in self.phones:
            p.flush()
        now = now_ms()
        wait = max_wait_ms
        for p in self.phones:
            t = p.next_deadline()
            if t is not None:
                wait = min(wait, t - now)
        wait = max(0, wait)
        socks = [f for f, _ in self.readers]
        for p in self.phones:
            socks.extend(p.sockets())
        pending = [p.flow for p in self.phones if not p.flow.closed and p.flow.pending()]
        if pending:
            ready = pending
        else:
            ready = select.select(socks, [], [], wait / 1000.0)[0] if socks else []
        now = now_ms()
        for f, callback in self.readers:
            if f in ready:
                callback(now)
        for p in self.phones:
            p.handle_ready(ready, now)
        for h in self.hooks:
            h(now)

    def run_forever(self):
        """The device's main loop."""
        while True:
            self.step(1000)

    def run_until(self, cond, timeout_s=10.0, what="condition"):
        deadline = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > deadline:
                raise TimeoutError("%s not reached within %.1f s" % (what, timeout_s))
            self.step(50)

    def run_for(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.step(min(50, max(0, (end - time.monotonic()) * 1000)))

    def wait_event(self, phone, kind, timeout_s=10.0):
        """Run until `phone` reports an event of class `kind`; return it (others stay queued)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for e in phone.events:
                if isinstance(e, kind):
                    phone.events.remove(e)
                    return e
            if time.monotonic() > deadline:
                raise TimeoutError("no %s within %.1f s; events %r"
                                   % (kind.__name__, timeout_s, phone.events))
            self.step(50)

    def close(self):
        for p in self.phones:
            p.close()
