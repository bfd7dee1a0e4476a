# What both SRTP engines share (firmware.media.srtp's pure engine and
# firmware.media.srtp_libsrtp): the suite table, the typed errors, the drop accounting, the SRTCP
# header check and the master-key packet limits. Both import this module; neither imports the
# other's module at import time (srtp picks the libsrtp engine lazily).

from firmware.errors import ParseError
from firmware.media.rtp import RTP_VERSION


class SrtpError(ValueError):
    """A packet could not be protected or unprotected."""


class SrtpAuthError(SrtpError):
    """The authentication tag did not verify: the packet is forged, damaged or for another key."""


class SrtpReplayError(SrtpError):
    """The packet index was already received or is older than the replay window."""


class SrtpKeyExpired(SrtpError):
    """The master key protected or accepted as many packets as its lifetime allows (RFC 4568
    §6.1 lifetime, at most RFC 3711 §9.2's 2^48 SRTP / 2^31 SRTCP): the call must re-key."""


# name: (cipher, master key length, master salt length, auth key length, RTP tag, RTCP tag)
# RFC 4568 §6.2: the _32 suite shortens only the SRTP tag; SRTCP keeps 80 bits.
# RFC 7714 §12: AEAD_AES_128_GCM has a 96-bit salt and a 16-octet tag for both.
AES_CM = "AES_CM"
AES_GCM = "AES_GCM"
PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": (AES_CM, 16, 14, 20, 10, 10),
    "AES_CM_128_HMAC_SHA1_32": (AES_CM, 16, 14, 20, 4, 10),
    "AEAD_AES_128_GCM": (AES_GCM, 16, 12, 0, 16, 16),
}

# RFC 3711 §9.2: at most 2^48 SRTP and 2^31 SRTCP packets under one master key. An SDES
# lifetime (RFC 4568 §6.1) can only lower these.
MAX_SRTP_PACKETS = 1 << 48
MAX_SRTCP_PACKETS = 1 << 31

# Reasons under which unprotect/unprotect_rtcp drop packets (keys of SrtpSession.dropped);
# "other" is any other SrtpError (too many SSRCs, exhausted index space, an expired master key,
# a libsrtp failure).
DROP_REASONS = ("parse", "auth", "replay", "other")


def new_drop_counts():
    counts = {}
    for reason in DROP_REASONS:
        counts[reason] = 0
    return counts


def count_drop(dropped, e):
    """Count a refused inbound packet under its reason (see DROP_REASONS)."""
    if isinstance(e, SrtpReplayError):
        dropped["replay"] += 1
    elif isinstance(e, SrtpAuthError):
        dropped["auth"] += 1
    elif isinstance(e, ParseError):
        dropped["parse"] += 1
    else:
        dropped["other"] += 1


def rtcp_check(packet):
    """The sender SSRC of an RTCP compound, after the length and version checks SRTCP needs."""
    if len(packet) < 8:
        raise ParseError("RTCP packet length is less than 8 bytes", offset=0, field="header")
    if packet[0] >> 6 != RTP_VERSION:
        raise ParseError("RTCP packet has invalid version %d" % (packet[0] >> 6), offset=0,
                         field="version")
    return int.from_bytes(packet[4:8], "big")
