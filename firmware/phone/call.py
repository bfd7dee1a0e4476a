# One call's media plane, sans-I/O (aioquic style): G.711 <-> RTP <-> SRTP, a jitter buffer and
# SRTCP reports. Drive it with receive(data, addr, now), handle_timer(now) and send_pcm(pcm);
# collect datagrams with datagrams_to_send() and decoded audio with read_pcm().
#
# - Sending: one RTP packet every 20 ms of `now` (RFC 3551 §4.5: G.711 packets of 20 ms = 160
#   samples at 8 kHz), from queued PCM or, when none is queued, silence (the peer's jitter buffer
#   and NAT bindings expect a steady stream). Our master key protects what we send.
# - Receiving: the peer's master key unprotects; malformed, forged (bad tag) and replayed packets,
#   and payload types we did not negotiate, are dropped, counted in `dropped[reason]` and logged
#   through the injected `log` callback; the call goes on (RFC 3711 §3.3: authenticate before use).
# - RTCP (RFC 3550 §6): a compound SR + SDES CNAME protected as SRTCP every `rtcp_interval_ms`
#   (randomised 0.5-1.5x, §6.3.1), with a reception report for the peer's stream (§6.4.1, A.3, A.8).
# RTCP goes to the RTP port + 1 (RFC 3550 §11; the SDP layer does not negotiate rtcp-mux), but a
# datagram that looks like RTCP (RFC 5761 §4) is taken as RTCP on either port.

import struct

from firmware import compat
from firmware.errors import ParseError
from firmware.media import g711
from firmware.media.jitter import JitterBuffer
from firmware.media.rtp import (
    RTCP_BYE, RTCP_RR, RTCP_SDES, RTCP_SR, RtcpPacket, RtcpReportBlock, RtcpSenderReport, RtpPacket,
    is_rtcp, parse_rtcp, serialize_rtcp,
)
from firmware.media.srtp import SrtpAuthError, SrtpKeyExpired, SrtpReplayError, SrtpSession

CLOCK_RATE = 8000           # RFC 3551 §4.5.14: PCMU/PCMA sample at 8 kHz
FRAME_MS = 20
FRAME_SAMPLES = CLOCK_RATE * FRAME_MS // 1000
FRAME_BYTES = 2 * FRAME_SAMPLES   # 16-bit little-endian PCM
MAX_BEHIND_MS = 200         # after a stall, skip ahead instead of bursting stale packets
MAX_QUEUED_PCM = 8000 * 2 * 60    # one minute of outgoing audio
LOG_FIRST = 10              # per reason, log this many drops one by one, then every LOG_EVERY-th
LOG_EVERY = 100
NTP_UNIX_OFFSET = 2208988800  # seconds from 1900 (NTP era 0) to 1970 (RFC 868)
SDES_CNAME = 1              # RFC 3550 §6.5.1

# Why a received datagram was dropped (keys of CallMedia.dropped / rtcp_dropped).
DROP_REASONS = ("parse", "auth", "replay", "other", "payload_type")

_ENCODERS = {0: g711.ulaw_encode, 8: g711.alaw_encode}
_DECODERS = {0: g711.ulaw_decode, 8: g711.alaw_decode}


def _drop_counts():
    d = {}
    for r in DROP_REASONS:
        d[r] = 0
    return d


def _reason(e):
    if isinstance(e, SrtpReplayError):
        return "replay"
    if isinstance(e, SrtpAuthError):
        return "auth"
    if isinstance(e, ParseError):
        return "parse"
    return "other"


class _Receiver:
    """Reception statistics for the peer's SSRC (RFC 3550 Appendix A.3 and A.8)."""

    def __init__(self, ssrc, seq, arrival_ts, rtp_ts):
        self.ssrc = ssrc
        self.base = seq
        self.max_ext = seq
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter16 = 0           # jitter * 16, kept in integers as A.8 suggests
        self.transit = arrival_ts - rtp_ts

    def update(self, seq, arrival_ts, rtp_ts):
        delta = (seq - (self.max_ext & 0xFFFF)) & 0xFFFF
        if delta < 0x8000:
            self.max_ext += delta
        self.received += 1
        transit = arrival_ts - rtp_ts
        d = transit - self.transit
        self.transit = transit
        if d < 0:
            d = -d
        self.jitter16 += d - ((self.jitter16 + 8) >> 4)

    def report(self, lsr, dlsr):
        expected = self.max_ext - self.base + 1
        lost = expected - self.received
        exp_int = expected - self.expected_prior
        rec_int = self.received - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.received
        lost_int = exp_int - rec_int
        fraction = 0 if exp_int <= 0 or lost_int <= 0 else (lost_int << 8) // exp_int
        lost = max(-0x800000, min(0x7FFFFF, lost))
        return RtcpReportBlock(self.ssrc, min(fraction, 255), lost, self.max_ext & 0xFFFFFFFF,
                               self.jitter16 >> 4, lsr, dlsr)


class CallMedia:
    """The media of one call, from the negotiated `firmware.sip.sdp.MediaParams`.

    params    MediaParams (suite, keys both ways, payload type, remote address and port)
    now       current time in ms (the first packet is due at once)
    log       callable(line) for drops and other noteworthy media events (default: ignore)
    engine    SRTP engine: "auto" (libsrtp on CPython when present), "pure" or "libsrtp"
    insecure  allow params without a suite (plain RTP); only the UA's insecure test mode may
    """

    def __init__(self, params, now, log=None, engine="auto", insecure=False, ssrc=None,
                 jitter_delay_ms=60, rtcp_interval_ms=5000, cname=None, ntp_offset_ms=None,
                 name="call"):
        codec_pt = params.payload_type
        if codec_pt not in _ENCODERS:
            raise ValueError("payload type %r is not G.711 (0 PCMU or 8 PCMA)" % (codec_pt,))
        if params.suite is None and not insecure:
            raise ValueError("media without SRTP needs the insecure test mode")
        self.params = params
        self.name = name
        self._log = log
        self.payload_type = codec_pt
        self._encode = _ENCODERS[codec_pt]
        self._decode = _DECODERS[codec_pt]
        self.rtp_addr = (params.remote_address, params.remote_port)
        self.rtcp_addr = (params.remote_address, params.remote_port + 1)
        if params.suite is not None:
            # RFC 4568 §6.1: each side protects with the key it put in its own a=crypto
            # and each key's SDES lifetime bounds the packets under it (RFC 4568 §6.1)
            self.tx_srtp = SrtpSession(params.suite, params.tx_key, params.tx_salt, engine,
                                       getattr(params, "tx_lifetime", None))
            self.rx_srtp = SrtpSession(params.suite, params.rx_key, params.rx_salt, engine,
                                       getattr(params, "rx_lifetime", None))
            self.engine = self.tx_srtp.engine
        else:
            self.tx_srtp = self.rx_srtp = None
            self.engine = None
        r = compat.random_bytes(10)
        # RFC 3550 §5.1: random initial SSRC, sequence number and timestamp. The sequence number
        # starts below 2^15 so the first 16-bit wrap (a rollover-counter step every SRTP receiver
        # must estimate, RFC 3711 §3.3.1) is at least 2^15 packets (11 min) into the call.
        self.ssrc = ssrc if ssrc is not None else int.from_bytes(r[0:4], "big")
        self._seq = int.from_bytes(r[4:6], "big") & 0x7FFF
        self._ts = int.from_bytes(r[6:10], "big")
        self.cname = cname or ("phone-%s" % compat.random_bytes(6).hex())
        if ntp_offset_ms is None:
            ntp_offset_ms = int(compat.wall_time() * 1000) + NTP_UNIX_OFFSET * 1000 - now
        self._ntp_offset_ms = ntp_offset_ms
        self._tx_pcm = []
        self._tx_len = 0
        self._tx_partial = b""
        self._next_send = now
        self._first = True
        self._out = []
        self._rx_pcm = []
        self.jitter = JitterBuffer(capacity=16, delay_ms=jitter_delay_ms)
        self._receiver = None
        self._rtcp_interval = rtcp_interval_ms
        self._next_rtcp = now + self._rtcp_delay() // 2   # §6.2: the first report comes sooner
        self._last_sr = 0           # middle 32 bits of the peer's last SR NTP time (LSR)
        self._last_sr_at = None
        self.sent_packets = 0
        self.sent_octets = 0
        self.received_packets = 0
        self.played_frames = 0
        self.telephone_events = 0
        self.rtcp_sent = 0
        self.rtcp_received = 0
        self.remote_report = None   # the peer's last reception report about our stream
        self.remote_bye = False
        self.dropped = _drop_counts()
        self.rtcp_dropped = _drop_counts()
        self.closed = False
        # set when a master key reached its lifetime: the call must end (re-keying needs a
        # re-INVITE, which this phone does not send)
        self.key_expired = None

    # --- API -------------------------------------------------------------------------------------

    def send_pcm(self, pcm):
        """Queue 16-bit little-endian 8 kHz mono PCM for sending (sent in 20 ms packets)."""
        if len(pcm) % 2:
            raise ValueError("16-bit PCM must have an even number of bytes, got %d" % len(pcm))
        if self._tx_len + len(pcm) > MAX_QUEUED_PCM:
            raise ValueError("more than %d bytes of PCM queued" % MAX_QUEUED_PCM)
        self._tx_pcm.append(bytes(pcm))
        self._tx_len += len(pcm)

    def queued_pcm(self):
        """Bytes of PCM still waiting to be sent."""
        return self._tx_len + len(self._tx_partial)

    def read_pcm(self):
        """The PCM decoded so far (16-bit little-endian, 8 kHz mono), then forgotten."""
        out = b"".join(self._rx_pcm)
        self._rx_pcm = []
        return out

    def datagrams_to_send(self):
        """[(kind, data, (host, port))], kind "rtp" (from our RTP socket to the peer's RTP port)
        or "rtcp" (from our RTCP socket to the peer's RTCP port)."""
        out = self._out
        self._out = []
        return out

    def get_timer(self):
        if self.closed:
            return None
        return min(self._next_send, self._next_rtcp)

    def handle_timer(self, now):
        if self.closed:
            return
        if now - self._next_send > MAX_BEHIND_MS:
            # we were stalled: the lost time is skipped in the timestamp, not sent in a burst
            missed = (now - self._next_send) // FRAME_MS
            self._ts = (self._ts + missed * FRAME_SAMPLES) & 0xFFFFFFFF
            self._next_send += missed * FRAME_MS
            self._first = True      # §5.1: marker on the first packet after a silence
        while self._next_send <= now:
            self._send_frame()
            self._next_send += FRAME_MS
        self._play(now)
        if self._next_rtcp <= now:
            self._send_rtcp(now)
            self._next_rtcp = now + self._rtcp_delay()

    def receive(self, data, addr, now, rtcp=None):
        """A datagram from one of our media sockets (rtcp=True: it came to the RTCP port; None:
        tell by its second octet, RFC 5761 §4). Never raises for what the peer sends."""
        if self.closed:
            return
        if rtcp or (rtcp is None and is_rtcp(data)):
            self._receive_rtcp(data, addr, now)
        else:
            self._receive_rtp(data, addr, now)

    def close(self, now):
        """End of call: send a final SR and an RTCP BYE (RFC 3550 §6.6), then stop."""
        if self.closed:
            return
        self._send_rtcp(now, bye=True)
        self.closed = True

    def stats(self):
        rx = self._receiver
        return {"engine": self.engine, "suite": self.params.suite, "codec": self.params.codec,
                "sent": self.sent_packets, "received": self.received_packets,
                "played": self.played_frames, "lost": self.jitter.lost,
                "jitter": (rx.jitter16 >> 4) if rx is not None else 0,
                "rtcp_sent": self.rtcp_sent, "rtcp_received": self.rtcp_received,
                "dropped": dict(self.dropped), "rtcp_dropped": dict(self.rtcp_dropped)}

    # --- sending ---------------------------------------------------------------------------------

    def _take_frame(self):
        buf = self._tx_partial
        while len(buf) < FRAME_BYTES and self._tx_pcm:
            chunk = self._tx_pcm.pop(0)
            self._tx_len -= len(chunk)
            buf += chunk
        if not buf:
            return None
        if len(buf) < FRAME_BYTES:
            buf += b"\x00" * (FRAME_BYTES - len(buf))
        self._tx_partial = buf[FRAME_BYTES:]
        return buf[:FRAME_BYTES]

    def _send_frame(self):
        pcm = self._take_frame()
        if pcm is None:
            pcm = b"\x00" * FRAME_BYTES
        self.send_rtp(self._encode(pcm))

    def send_rtp(self, payload):
        """Packetise one encoded frame as the next RTP packet (normally called by the timer)."""
        pkt = RtpPacket(self.payload_type, self._seq, self._ts, self.ssrc, payload,
                        marker=self._first).serialize()
        self._first = False
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + FRAME_SAMPLES) & 0xFFFFFFFF
        if self.tx_srtp is not None:
            try:
                pkt = self.tx_srtp.protect(pkt)
            except SrtpKeyExpired as e:
                self._expired(str(e))
                return None
        self.sent_packets += 1
        self.sent_octets += len(payload)
        self._out.append(("rtp", pkt, self.rtp_addr))
        return pkt

    def _rtcp_delay(self):
        # RFC 3550 §6.3.1: randomise to 0.5-1.5 of the interval so reports do not synchronise
        r = compat.random_bytes(1)[0]
        return self._rtcp_interval // 2 + (self._rtcp_interval * r) // 255

    def _ntp(self, now):
        ms = now + self._ntp_offset_ms
        sec = (ms // 1000) & 0xFFFFFFFF
        frac = ((ms % 1000) << 32) // 1000
        return (sec << 32) | frac

    def _send_rtcp(self, now, bye=False):
        reports = []
        rx = self._receiver
        if rx is not None:
            dlsr = 0
            if self._last_sr_at is not None:
                # §6.4.1 DLSR in units of 1/65536 s
                dlsr = ((now - self._last_sr_at) * 65536) // 1000
            reports.append(rx.report(self._last_sr, dlsr & 0xFFFFFFFF))
        # the RTP timestamp that corresponds to this NTP time (§6.4.1)
        rtp_ts = (self._ts + (now - self._next_send) * CLOCK_RATE // 1000) & 0xFFFFFFFF
        packets = [RtcpSenderReport(self.ssrc, self._ntp(now), rtp_ts,
                                    self.sent_packets & 0xFFFFFFFF, self.sent_octets & 0xFFFFFFFF,
                                    reports)]
        packets.append(RtcpPacket(RTCP_SDES, 1, _sdes_cname(self.ssrc, self.cname)))
        if bye:
            packets.append(RtcpPacket(RTCP_BYE, 1, struct.pack("!I", self.ssrc)))
        data = serialize_rtcp(packets)
        if self.tx_srtp is not None:
            try:
                data = self.tx_srtp.protect_rtcp(data)
            except SrtpKeyExpired as e:
                self._expired(str(e))
                return
        self.rtcp_sent += 1
        self._out.append(("rtcp", data, self.rtcp_addr))

    # --- receiving -------------------------------------------------------------------------------

    def _expired(self, why):
        if self.key_expired is None:
            self.key_expired = why
            if self._log is not None:
                self._log("media %s: stopped sending: %s" % (self.name, why))

    def _drop(self, counts, what, reason, addr, detail):
        counts[reason] += 1
        n = counts[reason]
        if self._log is not None and (n <= LOG_FIRST or n % LOG_EVERY == 0):
            self._log("media %s: dropped %s packet from %s (%s, %d so far): %s"
                      % (self.name, what, _addr_text(addr), reason, n, detail))

    def _receive_rtp(self, data, addr, now):
        what = "SRTP" if self.rx_srtp is not None else "RTP"
        try:
            plain = self.rx_srtp.unprotect(data) if self.rx_srtp is not None else bytes(data)
            pkt = RtpPacket.parse(plain)
        except ValueError as e:     # ParseError and the SRTP errors are ValueErrors
            if isinstance(e, SrtpKeyExpired):
                self._expired(str(e))
            self._drop(self.dropped, what, _reason(e), addr, str(e))
            return
        if pkt.payload_type != self.payload_type:
            if pkt.payload_type == self.params.telephone_event:
                self.telephone_events += 1   # DTMF (RFC 4733) is authenticated but not played
                return
            self._drop(self.dropped, what, "payload_type", addr,
                       "payload type %d was not negotiated (expected %d)"
                       % (pkt.payload_type, self.payload_type))
            return
        self.received_packets += 1
        arrival_ts = now * (CLOCK_RATE // 1000)
        rx = self._receiver
        if rx is None or rx.ssrc != pkt.ssrc:
            # the first authenticated stream, or the peer restarted its stream with a new SSRC
            rx = self._receiver = _Receiver(pkt.ssrc, pkt.sequence_number, arrival_ts,
                                            pkt.timestamp)
            self.jitter = JitterBuffer(self.jitter.capacity, self.jitter.delay_ms)
        rx.update(pkt.sequence_number, arrival_ts, pkt.timestamp)
        self.jitter.push(pkt, now)
        self._play(now)

    def _play(self, now):
        while True:
            pkt = self.jitter.pop(now)
            if pkt is None:
                return
            self._rx_pcm.append(self._decode(pkt.payload))
            self.played_frames += 1

    def _receive_rtcp(self, data, addr, now):
        what = "SRTCP" if self.rx_srtp is not None else "RTCP"
        try:
            plain = self.rx_srtp.unprotect_rtcp(data) if self.rx_srtp is not None else bytes(data)
            packets = parse_rtcp(plain)
        except ValueError as e:
            self._drop(self.rtcp_dropped, what, _reason(e), addr, str(e))
            return
        self.rtcp_received += 1
        for p in packets:
            if p.packet_type == RTCP_SR:
                self._last_sr = (p.ntp_timestamp >> 16) & 0xFFFFFFFF
                self._last_sr_at = now
            if p.packet_type in (RTCP_SR, RTCP_RR):
                for block in p.reports:
                    if block.ssrc == self.ssrc:
                        self.remote_report = block
            elif p.packet_type == RTCP_BYE:
                self.remote_bye = True


def _sdes_cname(ssrc, cname):
    text = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, SDES_CNAME, len(text)) + text + b"\x00"
    # §6.5: the item list ends with a null octet and pads the chunk to a 32-bit boundary
    return chunk + b"\x00" * (-len(chunk) % 4)


def _addr_text(addr):
    if addr is None:
        return "?"
    return "%s:%d" % (addr[0], addr[1])
