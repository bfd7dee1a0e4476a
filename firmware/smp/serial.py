# The SMP serial transport (MCUmgr "SMP over console", as in Zephyr's mcumgr serial transport and
# the smp package's packet.py): a frame is sent as
#     base64( u16 length | frame | u16 CRC16 )     length = len(frame) + 2, big-endian
# cut into lines of at most `line_length` bytes (default 127); the first line starts with the bytes
# 06 09, each continuation line with 04 14, every line ends with "\n". CRC16 is CRC-16/XMODEM
# (poly 0x1021, init 0) over the frame. Because the delimiters are control characters no console
# text starts with, SMP lines and the `phone>` console share one serial line: `LineSplitter`
# hands a line to SMP or to the console by its first two bytes.

import binascii

from firmware.smp.errors import FramingError

START = b"\x06\x09"
CONTINUE = b"\x04\x14"
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
MAX_FRAME = 4096 + 8  # the largest frame the phone accepts (SMP header + CBOR); buffer bound


def crc16_xmodem(data, crc=0):
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def encode(frame, line_length=127):
    """The serial lines (each ending "\\n") that carry one SMP frame."""
    body = (len(frame) + 2).to_bytes(2, "big") + bytes(frame) + crc16_xmodem(frame).to_bytes(2, "big")
    b64 = binascii.b2a_base64(body).rstrip(b"\n")
    per_line = ((line_length - 4) // 4) * 4
    if per_line <= 0:
        raise ValueError("line length %d cannot carry base64" % line_length)
    lines = [START + b64[:per_line] + b"\n"]
    rest = b64[per_line:]
    while rest:
        lines.append(CONTINUE + rest[:per_line] + b"\n")
        rest = rest[per_line:]
    return lines


def is_smp_line(line):
    return line[:2] in (START, CONTINUE)


class Decoder:
    """Feed SMP lines (delimiter included, "\\n"/"\\r\\n" optional); `feed` returns the frame once
    complete, else None. A bad line raises FramingError and resets, so the next start line is a
    fresh frame (the client resends the request after its timeout)."""

    def __init__(self, max_frame=MAX_FRAME):
        self.max_frame = max_frame
        self._b64 = None

    def reset(self):
        self._b64 = None

    def feed(self, line):
        line = bytes(line).rstrip(b"\r\n")
        head, data = line[:2], line[2:]
        if head == START:
            self._b64 = bytearray()
        elif head == CONTINUE:
            if self._b64 is None:
                raise FramingError("continuation line without a start line", offset=0, field="delimiter")
        else:
            raise FramingError("line does not start with 06 09 or 04 14", offset=0, field="delimiter")
        for c in data:  # binascii skips what is not base64; a line of such bytes is damaged
            if c not in _B64:
                self.reset()
                raise FramingError("bad base64 byte 0x%02x in an SMP line" % c, field="body")
        self._b64 += data
        if len(self._b64) > (self.max_frame + 4) * 4 // 3 + 4:
            self.reset()
            raise FramingError("frame longer than %d bytes" % self.max_frame, field="length")
        return self._complete()

    def _complete(self):
        b64 = self._b64
        if len(b64) < 4:
            return None
        usable = len(b64) - len(b64) % 4
        try:
            first = binascii.a2b_base64(bytes(b64[:4]))
        except (ValueError, binascii.Error):
            self.reset()
            raise FramingError("bad base64 in the length field", offset=2, field="length")
        want = int.from_bytes(first[:2], "big")
        if want < 2 or want > self.max_frame + 2:
            self.reset()
            raise FramingError("frame length %d out of range" % want, offset=2, field="length")
        total_b64 = (want + 4) // 3 * 4  # base64 of the u16 length + `want` bytes, padded
        if usable < total_b64:
            return None
        if len(b64) > total_b64:
            self.reset()
            raise FramingError("%d base64 bytes after the frame" % (len(b64) - total_b64), field="length")
        try:
            raw = binascii.a2b_base64(bytes(b64))
        except (ValueError, binascii.Error):
            self.reset()
            raise FramingError("bad base64", field="body")
        self.reset()
        raw = raw[2:2 + want]
        if len(raw) != want:
            raise FramingError("frame shorter than its length field", field="length")
        frame, crc = raw[:-2], int.from_bytes(raw[-2:], "big")
        if crc16_xmodem(frame) != crc:
            raise FramingError("CRC16 mismatch (frame 0x%04x, trailer 0x%04x)" % (crc16_xmodem(frame), crc),
                               field="crc")
        return frame


class Splitter:
    """Splits the bytes arriving on the shared serial line into ("smp", frame) and
    ("text", line) items: SMP lines go through a Decoder, anything else is console input.
    `errors` collects FramingErrors (the request is dropped; the client resends)."""

    MAX_LINE = 4096

    def __init__(self, decoder=None):
        self.decoder = decoder or Decoder()
        self._buf = bytearray()
        self.errors = []

    def feed(self, data):
        self._buf += data
        out = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self.MAX_LINE:
                    self._buf = bytearray()
                    self.errors.append(FramingError("line longer than %d bytes" % self.MAX_LINE))
                    self.decoder.reset()
                return out
            line = bytes(self._buf[:nl + 1])
            self._buf = self._buf[nl + 1:]  # (MicroPython's bytearray has no slice deletion)
            if is_smp_line(line):
                try:
                    frame = self.decoder.feed(line)
                except FramingError as e:
                    self.errors.append(e)
                    continue
                if frame is not None:
                    out.append(("smp", frame))
            else:
                out.append(("text", line))
