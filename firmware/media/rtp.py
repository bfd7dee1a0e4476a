# RTP and RTCP packets (RFC 3550): parse() from bytes, serialize() back, byte-exact.
#
# Every length taken from the wire is checked against the bytes actually present before it is
# used; bad input raises firmware.errors.ParseError naming the field and offset.

import struct

from firmware.errors import ParseError

RTP_VERSION = 2
RTP_HEADER_SIZE = 12  # RFC 3550 §5.1: fixed header up to and including the SSRC
RTCP_HEADER_SIZE = 4  # V/P/count, packet type, length in 32-bit words minus one

# RFC 3550 §12.1 RTCP packet types.
RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204

# RFC 5761 §4: RTCP packet types 192-223 share the second octet with RTP marker+payload type, so
# a demultiplexer tells them apart by this range.
RTCP_TYPE_MIN = 192
RTCP_TYPE_MAX = 223


def is_rtcp(data):
    """True if the datagram looks like RTCP rather than RTP (RFC 5761 §4)."""
    return len(data) >= 2 and RTCP_TYPE_MIN <= data[1] <= RTCP_TYPE_MAX


def rtp_header_length(data):
    """Length of the RTP header (fixed part, CSRC list, extension) after checking it fits.

    Used by SRTP, which must know where the payload starts without building a packet object.
    """
    n = len(data)
    if n < RTP_HEADER_SIZE:
        raise ParseError("RTP packet length is less than %d bytes" % RTP_HEADER_SIZE,
                         offset=0, field="header")
    b0 = data[0]
    if b0 >> 6 != RTP_VERSION:
        raise ParseError("RTP packet has invalid version %d" % (b0 >> 6), offset=0, field="version")
    pos = RTP_HEADER_SIZE + 4 * (b0 & 0x0F)
    if pos > n:
        raise ParseError("RTP packet has truncated CSRC list", offset=RTP_HEADER_SIZE, field="csrc")
    if b0 & 0x10:
        if pos + 4 > n:
            raise ParseError("RTP packet has truncated extension header", offset=pos,
                             field="extension")
        ext_words = (data[pos + 2] << 8) | data[pos + 3]
        end = pos + 4 + 4 * ext_words
        if end > n:
            raise ParseError("RTP packet has truncated extension (%d bytes declared, %d present)"
                             % (4 * ext_words, n - pos - 4), offset=pos + 4, field="extension")
        pos = end
    return pos


class RtpPacket:
    """One RTP packet (RFC 3550 §5.1)."""

    def __init__(self, payload_type=0, sequence_number=0, timestamp=0, ssrc=0, payload=b"",
                 marker=False, csrc=None, extension_profile=None, extension=b"", padding_size=0):
        self.payload_type = payload_type
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.payload = payload
        self.marker = marker
        self.csrc = list(csrc) if csrc else []
        # None means "no header extension"; otherwise the 16-bit profile value (RFC 3550 §5.3.1).
        self.extension_profile = extension_profile
        self.extension = extension
        self.padding_size = padding_size

    def __repr__(self):
        return "RtpPacket(seq=%d, ts=%d, pt=%d, ssrc=%08x, %d bytes payload)" % (
            self.sequence_number, self.timestamp, self.payload_type, self.ssrc, len(self.payload))

    @classmethod
    def parse(cls, data):
        data = bytes(data)
        end_of_header = rtp_header_length(data)
        b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data, 0)
        cc = b0 & 0x0F
        csrc = list(struct.unpack_from("!%dI" % cc, data, RTP_HEADER_SIZE)) if cc else []
        ext_profile = None
        extension = b""
        if b0 & 0x10:
            pos = RTP_HEADER_SIZE + 4 * cc
            ext_profile = (data[pos] << 8) | data[pos + 1]
            extension = data[pos + 4:end_of_header]
        end = len(data)
        padding = 0
        if b0 & 0x20:
            # RFC 3550 §5.1 P bit: the last octet counts the padding octets, itself included.
            padding = data[-1]
            if padding == 0 or padding > end - end_of_header:
                raise ParseError("RTP packet padding length %d is invalid" % padding,
                                 offset=end - 1, field="padding")
            end -= padding
        return cls(payload_type=b1 & 0x7F, sequence_number=seq, timestamp=ts, ssrc=ssrc,
                   payload=data[end_of_header:end], marker=bool(b1 & 0x80), csrc=csrc,
                   extension_profile=ext_profile, extension=extension, padding_size=padding)

    def serialize(self):
        if len(self.csrc) > 15:
            raise ValueError("RTP packet can carry at most 15 CSRCs, got %d" % len(self.csrc))
        if len(self.extension) % 4:
            raise ValueError("RTP header extension length must be a multiple of 4 bytes")
        if not 0 <= self.padding_size <= 255:
            raise ValueError("RTP padding must be 0..255 bytes")
        b0 = (RTP_VERSION << 6) | len(self.csrc)
        if self.padding_size:
            b0 |= 0x20
        if self.extension_profile is not None:
            b0 |= 0x10
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        out = [struct.pack("!BBHII", b0, b1, self.sequence_number & 0xFFFF,
                           self.timestamp & 0xFFFFFFFF, self.ssrc & 0xFFFFFFFF)]
        for c in self.csrc:
            out.append(struct.pack("!I", c))
        if self.extension_profile is not None:
            out.append(struct.pack("!HH", self.extension_profile, len(self.extension) // 4))
            out.append(bytes(self.extension))
        out.append(bytes(self.payload))
        if self.padding_size:
            out.append(b"\x00" * (self.padding_size - 1) + bytes([self.padding_size]))
        return b"".join(out)

    __bytes__ = serialize


# --- RTCP ------------------------------------------------------------------------------------------

class RtcpReportBlock:
    """A reception report block (RFC 3550 §6.4.1), 24 bytes."""

    SIZE = 24

    def __init__(self, ssrc=0, fraction_lost=0, packets_lost=0, highest_sequence=0, jitter=0,
                 lsr=0, dlsr=0):
        self.ssrc = ssrc
        self.fraction_lost = fraction_lost
        self.packets_lost = packets_lost  # signed 24-bit cumulative count
        self.highest_sequence = highest_sequence
        self.jitter = jitter
        self.lsr = lsr
        self.dlsr = dlsr

    @classmethod
    def parse(cls, data, offset=0):
        if len(data) - offset < cls.SIZE:
            raise ParseError("RTCP report block is truncated", offset=offset, field="report block")
        ssrc, lost_word, highest, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", data, offset)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)

    def serialize(self):
        if not -0x800000 <= self.packets_lost <= 0x7FFFFF:
            raise ValueError("RTCP cumulative packets lost out of 24-bit range")
        lost = ((self.fraction_lost & 0xFF) << 24) | (self.packets_lost & 0xFFFFFF)
        return struct.pack("!IIIIII", self.ssrc, lost, self.highest_sequence, self.jitter,
                           self.lsr, self.dlsr)

    def __eq__(self, other):
        return isinstance(other, RtcpReportBlock) and self.serialize() == other.serialize()


class RtcpPacket:
    """One RTCP packet inside a compound datagram.

    SR and RR are decoded (sender info, report blocks, profile extension); other types (SDES, BYE,
    APP, feedback) keep their body as bytes so they re-serialize byte-exact.
    """

    def __init__(self, packet_type, count=0, body=b"", padding_size=0):
        self.packet_type = packet_type
        self.count = count
        self.body = body
        self.padding_size = padding_size

    def serialize(self):
        body = self._body()
        if len(body) % 4:
            raise ValueError("RTCP packet body must be a multiple of 4 bytes")
        if not 0 <= self.padding_size <= 255 or self.padding_size % 4:
            raise ValueError("RTCP padding must be a multiple of 4 bytes up to 252")
        count = self._count()
        if not 0 <= count <= 31:
            raise ValueError("RTCP count field must be 0..31, got %d" % count)
        total = RTCP_HEADER_SIZE + len(body) + self.padding_size
        b0 = (RTP_VERSION << 6) | count | (0x20 if self.padding_size else 0)
        out = struct.pack("!BBH", b0, self.packet_type, total // 4 - 1) + body
        if self.padding_size:
            out += b"\x00" * (self.padding_size - 1) + bytes([self.padding_size])
        return out

    __bytes__ = serialize

    def _body(self):
        return bytes(self.body)

    def _count(self):
        return self.count


class RtcpSenderReport(RtcpPacket):
    """RFC 3550 §6.4.1 SR: sender SSRC, NTP and RTP timestamps, counts, report blocks."""

    def __init__(self, ssrc=0, ntp_timestamp=0, rtp_timestamp=0, packet_count=0, octet_count=0,
                 reports=None, extension=b"", padding_size=0):
        RtcpPacket.__init__(self, RTCP_SR, padding_size=padding_size)
        self.ssrc = ssrc
        self.ntp_timestamp = ntp_timestamp
        self.rtp_timestamp = rtp_timestamp
        self.packet_count = packet_count
        self.octet_count = octet_count
        self.reports = list(reports) if reports else []
        self.extension = extension  # profile-specific extension (RFC 3550 §6.4.1)

    def _count(self):
        return len(self.reports)

    def _body(self):
        out = struct.pack("!IQIII", self.ssrc, self.ntp_timestamp, self.rtp_timestamp,
                          self.packet_count, self.octet_count)
        return out + b"".join(r.serialize() for r in self.reports) + bytes(self.extension)


class RtcpReceiverReport(RtcpPacket):
    """RFC 3550 §6.4.2 RR: reporter SSRC and report blocks."""

    def __init__(self, ssrc=0, reports=None, extension=b"", padding_size=0):
        RtcpPacket.__init__(self, RTCP_RR, padding_size=padding_size)
        self.ssrc = ssrc
        self.reports = list(reports) if reports else []
        self.extension = extension

    def _count(self):
        return len(self.reports)

    def _body(self):
        return (struct.pack("!I", self.ssrc) + b"".join(r.serialize() for r in self.reports)
                + bytes(self.extension))


_SR_SENDER_INFO = 24  # SSRC + NTP(8) + RTP ts + packet count + octet count


def _parse_reports(body, start, count, base):
    reports = []
    pos = start
    for _ in range(count):
        if pos + RtcpReportBlock.SIZE > len(body):
            raise ParseError("RTCP packet has truncated report block list (%d declared)" % count,
                             offset=base + pos, field="report block")
        reports.append(RtcpReportBlock.parse(body, pos))
        pos += RtcpReportBlock.SIZE
    return reports, pos


def parse_rtcp(data):
    """Parse a compound RTCP datagram (RFC 3550 §6.1) into a list of packets."""
    data = bytes(data)
    packets = []
    pos = 0
    n = len(data)
    if n < RTCP_HEADER_SIZE:
        raise ParseError("RTCP packet length is less than %d bytes" % RTCP_HEADER_SIZE,
                         offset=0, field="header")
    while pos < n:
        if n - pos < RTCP_HEADER_SIZE:
            raise ParseError("RTCP compound packet has trailing bytes", offset=pos, field="header")
        b0, pt, words = struct.unpack_from("!BBH", data, pos)
        if b0 >> 6 != RTP_VERSION:
            raise ParseError("RTCP packet has invalid version %d" % (b0 >> 6), offset=pos,
                             field="version")
        length = 4 * (words + 1)
        if pos + length > n:
            raise ParseError("RTCP packet length %d exceeds the %d bytes present" % (length, n - pos),
                             offset=pos + 2, field="length")
        end = pos + length
        padding = 0
        if b0 & 0x20:
            # RFC 3550 §6.4.1: only the last packet of a compound may be padded.
            if end != n:
                raise ParseError("RTCP padding is only allowed on the last packet", offset=pos,
                                 field="padding")
            padding = data[end - 1]
            if padding == 0 or padding > length - RTCP_HEADER_SIZE:
                raise ParseError("RTCP packet padding length %d is invalid" % padding,
                                 offset=end - 1, field="padding")
        body = data[pos + RTCP_HEADER_SIZE:end - padding]
        count = b0 & 0x1F
        base = pos + RTCP_HEADER_SIZE
        if pt == RTCP_SR:
            if len(body) < _SR_SENDER_INFO:
                raise ParseError("RTCP sender report is truncated", offset=base,
                                 field="sender info")
            ssrc, ntp, rtp_ts, pcount, ocount = struct.unpack_from("!IQIII", body, 0)
            reports, used = _parse_reports(body, _SR_SENDER_INFO, count, base)
            pkt = RtcpSenderReport(ssrc, ntp, rtp_ts, pcount, ocount, reports, body[used:],
                                   padding)
        elif pt == RTCP_RR:
            if len(body) < 4:
                raise ParseError("RTCP receiver report is truncated", offset=base, field="ssrc")
            ssrc = struct.unpack_from("!I", body, 0)[0]
            reports, used = _parse_reports(body, 4, count, base)
            pkt = RtcpReceiverReport(ssrc, reports, body[used:], padding)
        else:
            pkt = RtcpPacket(pt, count, body, padding)
        packets.append(pkt)
        pos = end
    return packets


def serialize_rtcp(packets):
    """Serialize a list of RTCP packets as one compound datagram."""
    return b"".join(p.serialize() for p in packets)
