# Typed errors of the SMP core. Each names what was wrong; none carries request payload bytes.

from firmware.errors import ParseError


class SmpError(ParseError):
    """Bytes from an SMP client do not form a valid frame, header or payload."""


class CborError(SmpError):
    """A CBOR payload is malformed or uses something this subset refuses (RFC 8949)."""


class FramingError(SmpError):
    """A serial-transport line or frame is malformed (bad base64, length, CRC or delimiter)."""
