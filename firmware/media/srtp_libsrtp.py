# libsrtp (through pylibsrtp's cffi binding) as an SrtpSession engine on CPython.
#
# Used only where pylibsrtp is importable (never on MicroPython, never in the phone image unless
# shipped). It must pass the same vectors as the pure engine (tests/interop/test_libsrtp*.py).
# Packets are validated by our own parsers first, so callers get the same ParseError texts from
# both engines; libsrtp's status codes are mapped to the same typed errors.
#
# libsrtp is called directly on one preallocated buffer per session: the per-packet cost is then
# one memmove and the libsrtp call, with no buffer allocation.

from pylibsrtp import ERRORS, Policy, Session
from pylibsrtp._binding import ffi, lib

from firmware.errors import ParseError
from firmware.media.rtp import rtp_header_length
from firmware.media.srtp_profiles import (
    PROFILES, SrtpAuthError, SrtpError, SrtpReplayError, count_drop, new_drop_counts)
from firmware.media.srtp_profiles import rtcp_check as _rtcp_check

_PROFILE_IDS = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
}

MAX_PACKET = 65535  # a UDP payload
_TRAILER = 4 + 16 + 128  # SRTCP index + longest tag + longest MKI (libsrtp's own bound)

# libsrtp srtp_err_status_t values (srtp.h).
_AUTH_FAIL = 7
_REPLAY_FAIL = 9
_REPLAY_OLD = 10


class LibsrtpEngine:
    name = "libsrtp"

    def __init__(self, profile, master_key, master_salt):
        _, _, _, _, self.rtp_tag, self.rtcp_tag = PROFILES[profile]
        key = bytes(master_key) + bytes(master_salt)
        prof = _PROFILE_IDS[profile]
        # Keep the Session objects: they own the srtp_t and free it when collected.
        self._tx_session = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                                          srtp_profile=prof))
        self._rx_session = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND,
                                          srtp_profile=prof))
        self._tx = self._tx_session._srtp[0]
        self._rx = self._rx_session._srtp[0]
        self._buf = ffi.new("unsigned char[]", MAX_PACKET + _TRAILER)
        self._view = ffi.buffer(self._buf)
        self._len = ffi.new("int *")
        self.dropped = new_drop_counts()

    def _run(self, func, ctx, packet, what):
        n = len(packet)
        if n > MAX_PACKET:
            raise ParseError("%s packet of %d bytes exceeds %d" % (what, n, MAX_PACKET),
                             offset=0, field="length")
        ffi.memmove(self._buf, packet, n)
        self._len[0] = n
        rc = func(ctx, self._buf, self._len)
        if rc:
            raise _error(rc, what)
        return self._view[0:self._len[0]]

    def protect(self, packet):
        rtp_header_length(packet)
        return self._run(lib.srtp_protect, self._tx, packet, "SRTP")

    def protect_rtcp(self, packet):
        _rtcp_check(packet)
        return self._run(lib.srtp_protect_rtcp, self._tx, packet, "SRTCP")

    # The receive paths are written out (no helper frame) because they are the hot ones.
    def unprotect(self, packet):
        try:
            hlen = rtp_header_length(packet)
            n = len(packet)
            if n < hlen + self.rtp_tag:
                raise ParseError("SRTP packet is shorter than its header and %d-byte tag"
                                 % self.rtp_tag, offset=hlen, field="auth tag")
            if n > MAX_PACKET:
                raise ParseError("SRTP packet of %d bytes exceeds %d" % (n, MAX_PACKET),
                                 offset=0, field="length")
            ffi.memmove(self._buf, packet, n)
            self._len[0] = n
            rc = lib.srtp_unprotect(self._rx, self._buf, self._len)
            if rc:
                raise _error(rc, "SRTP")
            return self._view[0:self._len[0]]
        except Exception as e:
            count_drop(self.dropped, e)
            raise

    def unprotect_rtcp(self, packet):
        try:
            if len(packet) < 8 + 4 + self.rtcp_tag:
                raise ParseError("SRTCP packet is shorter than header, index and %d-byte tag"
                                 % self.rtcp_tag, offset=0, field="length")
            _rtcp_check(packet)
            return self._run(lib.srtp_unprotect_rtcp, self._rx, packet, "SRTCP")
        except Exception as e:
            count_drop(self.dropped, e)
            raise


def _error(rc, what):
    """libsrtp's srtp_err_status_t as our typed errors."""
    if rc == _AUTH_FAIL:
        return SrtpAuthError("%s authentication tag mismatch (libsrtp)" % what)
    if rc == _REPLAY_FAIL or rc == _REPLAY_OLD:
        return SrtpReplayError("%s replay check failed (libsrtp: %s)" % (what, ERRORS[rc]))
    return SrtpError("libsrtp failed on %s packet: %s"
                     % (what, ERRORS[rc] if rc < len(ERRORS) else rc))
