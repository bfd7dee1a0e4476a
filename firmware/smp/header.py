# The SMP header (MCUmgr SMP specification, "SMP frame"): 8 bytes, big-endian,
#   byte 0: Res (3 bits) | Version (2 bits) | OP (3 bits); byte 1: Flags;
#   bytes 2-3: data length; bytes 4-5: group ID; byte 6: sequence number; byte 7: command ID.
# Version 0 is SMP v1, 1 is SMP v2 (errors as {"err": {"group", "rc"}}).

import struct

from firmware.smp.errors import SmpError

SIZE = 8
OP_READ, OP_READ_RSP, OP_WRITE, OP_WRITE_RSP = 0, 1, 2, 3
V1, V2 = 0, 1

GROUP_OS = 0
GROUP_IMAGE = 1
GROUP_FS = 8  # file management
FS_FILE = 0   # file download (read) / upload (write)
OS_ECHO, OS_RESET, OS_MCUMGR_PARAMS = 0, 5, 6
IMG_STATE, IMG_UPLOAD, IMG_ERASE = 0, 1, 5


class Header:
    __slots__ = ("op", "version", "flags", "length", "group", "seq", "command")

    def __init__(self, op, version, flags, length, group, seq, command):
        self.op, self.version, self.flags, self.length = op, version, flags, length
        self.group, self.seq, self.command = group, seq, command

    def pack(self):
        return struct.pack(">BBHHBB", (self.version & 3) << 3 | (self.op & 7), self.flags,
                           self.length, self.group, self.seq, self.command)

    def response(self, length):
        """The header of the answer to this request: OP + 1, same group, sequence and command."""
        return Header(self.op + 1, self.version, 0, length, self.group, self.seq, self.command)

    def __repr__(self):
        return "Header(op=%d, v=%d, len=%d, group=%d, seq=%d, cmd=%d)" % (
            self.op, self.version, self.length, self.group, self.seq, self.command)


def parse(frame):
    """(Header, payload bytes) of one SMP frame; the length field must match what follows."""
    if len(frame) < SIZE:
        raise SmpError("frame of %d bytes is shorter than the 8-byte SMP header" % len(frame),
                       offset=0, field="header")
    b0, flags, length, group, seq, command = struct.unpack(">BBHHBB", bytes(frame[:SIZE]))
    if b0 >> 5:
        raise SmpError("reserved header bits set (0x%02x)" % b0, offset=0, field="header.res")
    h = Header(b0 & 7, (b0 >> 3) & 3, flags, length, group, seq, command)
    if h.version > V2:
        raise SmpError("SMP version %d is unknown" % h.version, offset=0, field="header.version")
    if length != len(frame) - SIZE:
        raise SmpError("header says %d payload bytes, frame has %d" % (length, len(frame) - SIZE),
                       offset=2, field="header.length")
    return h, bytes(frame[SIZE:])
