# Thin CPython I/O for the sans-I/O UA core: one TLS connection to the registrar/proxy, server
# certificate verified against the provisioned CA bundle and the expected host name (RFC 5922
# §7: a SIP client checks the server identity), and a select() loop that feeds the core.
# Everything SIP happens in firmware.sip.ua; this file only moves bytes and time.

import select
import socket
import ssl
import time


class TlsFlow:
    """A verified TLS connection. Raises ssl.SSLCertVerificationError for a wrong CA or name."""

    def __init__(self, host, port, cafile, server_hostname=None, timeout=5.0):
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        raw = socket.create_connection((host, port), timeout=timeout)
        # SIP messages are small writes answered at once: Nagle + delayed ACK would add ~40 ms
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname or host)
        except BaseException:
            raw.close()
            raise
        self.sock.setblocking(False)
        self.local_host, self.local_port = self.sock.getsockname()[:2]
        self.closed = False

    def fileno(self):
        return self.sock.fileno()

    def send(self, data):
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)

    def recv(self):
        """Bytes available now; b"" when the peer closed; None when nothing is ready."""
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            return None
        if not data:
            self.closed = True
        return data

    def pending(self):
        return self.sock.pending()

    def close(self):
        try:
            self.sock.close()
        finally:
            self.closed = True


def now_ms():
    return int(time.monotonic() * 1000)


class Runner:
    """Drives UA cores over their flows until a condition holds. Events go to `events[name]`."""

    def __init__(self):
        self.parts = {}     # name -> (ua, flow)
        self.events = {}

    def add(self, name, ua, flow):
        ua.config.local_host = flow.local_host
        ua.config.local_port = flow.local_port
        self.parts[name] = (ua, flow)
        self.events[name] = []

    def reconnect(self, name, flow):
        """Replace a broken flow (NAT rebinding, server restart): the UA forgets the old one and
        registers again from the new local address, so calls reach it over the new connection."""
        ua, old = self.parts[name]
        old.close()
        now = now_ms()
        ua.connection_lost(now)
        ua.config.local_host = flow.local_host
        ua.config.local_port = flow.local_port
        self.parts[name] = (ua, flow)
        ua.register(now)

    def step(self, max_wait_ms):
        now = now_ms()
        for name, (ua, flow) in self.parts.items():
            for data in ua.data_to_send():
                if not flow.closed:
                    flow.send(data)
        timers = [ua.get_timer() for ua, _ in self.parts.values()]
        timers = [t for t in timers if t is not None]
        wait = max_wait_ms
        if timers:
            wait = max(0, min(wait, min(timers) - now))
        ready = [f for _, f in self.parts.values() if not f.closed and f.pending()]
        if not ready:
            socks = [f for _, f in self.parts.values() if not f.closed]
            ready = select.select(socks, [], [], wait / 1000.0)[0] if socks else []
        now = now_ms()
        for name, (ua, flow) in self.parts.items():
            if flow in ready:
                data = flow.recv()
                if data:
                    ua.receive(data, now)
                elif data == b"":
                    ua.connection_lost(now)
            t = ua.get_timer()
            if t is not None and t <= now:
                ua.handle_timer(now)
            for data in ua.data_to_send():
                if not flow.closed:
                    flow.send(data)
            while True:
                e = ua.next_event()
                if e is None:
                    break
                self.events[name].append(e)

    def wait_for(self, name, kind, timeout_s=10.0):
        """Run until UA `name` reports an event of class `kind`; returns it (earlier events stay)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for e in self.events[name]:
                if isinstance(e, kind):
                    self.events[name].remove(e)
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("%s: no %s within %.1f s; events %r"
                                   % (name, kind.__name__, timeout_s, self.events[name]))
            self.step(min(left * 1000, 200))

    def close(self):
        for _, flow in self.parts.values():
            flow.close()
