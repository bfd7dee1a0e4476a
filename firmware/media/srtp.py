# SRTP and SRTCP (RFC 3711) with the suites SDES offers (RFC 4568 names):
#   AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32 (RFC 3711 §4.1.1, §4.2.1)
#   AEAD_AES_128_GCM (RFC 7714)
#
# SrtpSession(profile, master_key, master_salt) protects what we send and unprotects what we
# receive; in a call each direction has its own master key, so a phone holds two sessions. State
# is kept per SSRC and separately for the sending and the receiving side, so one session can also
# loop back to itself in tests.
#
# Receive order, which is what makes forged and replayed packets harmless (RFC 3711 §3.3):
# parse lengths -> estimate the index -> replay check -> authenticate (constant time) ->
# decrypt -> only then update the rollover counter and replay window.
#
# AES and HMAC come only from firmware.compat. On CPython the session may run on libsrtp
# (pylibsrtp) instead (engine="libsrtp"), which must pass the same vectors; engine="pure" always
# selects the code below.

from firmware import compat
from firmware.errors import ParseError
from firmware.media.rtp import rtp_header_length
# The shared pieces live one level down (srtp_libsrtp imports them from there too); their
# names stay importable from here: they are part of this module's public interface.
from firmware.media.srtp_profiles import (  # noqa: F401
    AES_CM, AES_GCM, DROP_REASONS, MAX_SRTCP_PACKETS, MAX_SRTP_PACKETS, PROFILES, SrtpAuthError,
    SrtpError, SrtpKeyExpired, SrtpReplayError, count_drop, new_drop_counts, rtcp_check)

_rtcp_check = rtcp_check

# RFC 3711 §4.3.2 key derivation labels.
LABEL_RTP_ENCRYPTION = 0
LABEL_RTP_AUTH = 1
LABEL_RTP_SALT = 2
LABEL_RTCP_ENCRYPTION = 3
LABEL_RTCP_AUTH = 4
LABEL_RTCP_SALT = 5

REPLAY_WINDOW = 128  # RFC 3711 §3.3.2 asks for at least 64; libsrtp's default is 128
MAX_STREAMS = 64  # SSRCs per direction; new ones are only created after a packet authenticates
SRTCP_E_FLAG = 0x80000000
SRTCP_INDEX_MASK = 0x7FFFFFFF


def derive_key(master_key, master_salt, label, length, index_div_kdr=0):
    """RFC 3711 §4.3.1/§4.3.3: the AES-CM PRF keyed with the master key.

    x = (label || r) XOR master_salt, right-aligned in 112 bits; the keystream starts at x * 2^16.
    A 96-bit salt (RFC 7714 §11) is zero-padded on the right to 112 bits first.
    """
    salt = bytes(master_salt) + b"\x00" * (14 - len(master_salt))
    key_id = (label << 48) | index_div_kdr
    x = int.from_bytes(salt, "big") ^ key_id
    iv = (x << 16).to_bytes(16, "big")
    return compat.Aes(bytes(master_key)).ctr(iv, b"\x00" * length)


class _HmacSha1:
    """HMAC-SHA1 with the key's padded blocks hashed once (RFC 2104 §4 precomputation).

    Where the runtime's hash objects cannot be copied (MicroPython) it calls compat.hmac.
    """

    def __init__(self, key):
        self._key = bytes(key)
        inner = compat.new_hash("sha1")
        self._fast = hasattr(inner, "copy")
        if self._fast:
            block = self._key + b"\x00" * (64 - len(self._key))
            self._inner = compat.new_hash("sha1", bytes(b ^ 0x36 for b in block))
            self._outer = compat.new_hash("sha1", bytes(b ^ 0x5C for b in block))

    def digest(self, msg, trailer):
        if not self._fast:
            return compat.hmac("sha1", self._key, msg + trailer)
        h = self._inner.copy()
        h.update(msg)
        h.update(trailer)
        o = self._outer.copy()
        o.update(h.digest())
        return o.digest()


class _DirectionKeys:
    """Session keys of one packet kind (RTP or RTCP) for one master key."""

    def __init__(self, cipher, enc_key, salt, auth_key):
        self.aes = compat.Aes(enc_key)
        self.salt_int = int.from_bytes(salt, "big")
        if cipher == AES_CM:
            # RFC 3711 §4.1.1: the 112-bit salt sits above the 16-bit block counter.
            self.salt_int <<= 16
            self.mac = _HmacSha1(auth_key)
        else:
            self.mac = None


class ReplayWindow:
    """Sliding window over packet indices (RFC 3711 §3.3.2), as a bit mask below the highest."""

    def __init__(self, size=REPLAY_WINDOW):
        self.size = size
        self.highest = -1
        self.mask = 0  # bit i set: index highest - i was received

    def check(self, index):
        """Raise SrtpReplayError if `index` was seen or is too old; does not change state."""
        if index > self.highest:
            return
        delta = self.highest - index
        if delta >= self.size:
            raise SrtpReplayError("SRTP index %d is older than the replay window" % index)
        if (self.mask >> delta) & 1:
            raise SrtpReplayError("SRTP index %d was already received" % index)

    def accept(self, index):
        if index > self.highest:
            shift = index - self.highest
            # A jump past the whole window forgets it; never build a shift as wide as the jump
            # (an SRTCP index may leap by up to 2^31).
            if shift >= self.size:
                self.mask = 1
            else:
                self.mask = ((self.mask << shift) | 1) & ((1 << self.size) - 1)
            self.highest = index
        else:
            self.mask |= 1 << (self.highest - index)


class _RtpStream:
    """Per-SSRC SRTP state: rollover counter, highest sequence number, replay window."""

    def __init__(self, seq):
        self.roc = 0
        self.s_l = seq
        self.window = ReplayWindow()

    def estimate(self, seq):
        """RFC 3711 §3.3.1 / Appendix A: the ROC guess v for a received sequence number."""
        roc = self.roc
        if self.s_l < 32768:
            if seq - self.s_l > 32768:
                return roc - 1
            return roc
        if self.s_l - 32768 > seq:
            return roc + 1
        return roc

    def update(self, seq, v):
        # Appendix A: move s_l/ROC forward only; an older packet inside the window changes nothing.
        if v == self.roc:
            if seq > self.s_l:
                self.s_l = seq
        elif v == self.roc + 1:
            self.roc = v
            self.s_l = seq


class _RtcpStream:
    def __init__(self):
        self.next_index = 0  # RFC 3711 §3.3.2: zero before the first SRTCP packet
        self.window = ReplayWindow()


class _PureEngine:
    """SRTP in Python over firmware.compat (runs on CPython and MicroPython)."""

    name = "pure"

    def __init__(self, profile, master_key, master_salt, session_keys=None):
        cipher, key_len, salt_len, auth_len, rtp_tag, rtcp_tag = PROFILES[profile]
        self.cipher = cipher
        self.rtp_tag = rtp_tag
        self.rtcp_tag = rtcp_tag
        if session_keys is None:
            session_keys = (
                derive_key(master_key, master_salt, LABEL_RTP_ENCRYPTION, key_len),
                derive_key(master_key, master_salt, LABEL_RTP_SALT, salt_len),
                derive_key(master_key, master_salt, LABEL_RTP_AUTH, auth_len),
                derive_key(master_key, master_salt, LABEL_RTCP_ENCRYPTION, key_len),
                derive_key(master_key, master_salt, LABEL_RTCP_SALT, salt_len),
                derive_key(master_key, master_salt, LABEL_RTCP_AUTH, auth_len),
            )
        self.rtp = _DirectionKeys(cipher, session_keys[0], session_keys[1], session_keys[2])
        self.rtcp = _DirectionKeys(cipher, session_keys[3], session_keys[4], session_keys[5])
        self.tx = {}
        self.rx = {}
        self.tx_rtcp = {}
        self.rx_rtcp = {}
        self.dropped = new_drop_counts()

    # -- SRTP ---------------------------------------------------------------------------------

    def protect(self, packet):
        hlen = rtp_header_length(packet)
        seq = (packet[2] << 8) | packet[3]
        ssrc = int.from_bytes(packet[8:12], "big")
        stream = self.tx.get(ssrc)
        if stream is None:
            if len(self.tx) >= MAX_STREAMS:
                raise SrtpError("too many sending SSRCs (limit %d)" % MAX_STREAMS)
            stream = self.tx[ssrc] = _RtpStream(seq)
        v = stream.estimate(seq)
        if v < 0:
            raise SrtpError("SRTP sequence number %d precedes the stream start" % seq)
        if v > 0xFFFFFFFF:
            # RFC 3711 §9.2: at most 2^48 packets per master key; the ROC must not wrap.
            raise SrtpError("SRTP index space of this master key is exhausted; rekey")
        index = (v << 16) | seq
        # Sealing two packets under one index would reuse keystream (RFC 3711 §9.1), so the
        # sender keeps a replay window too and refuses repeats, as libsrtp does by default.
        try:
            stream.window.check(index)
        except SrtpReplayError:
            raise SrtpReplayError("SRTP index %d was already sent; keystream reuse refused" % index)
        stream.window.accept(index)
        stream.update(seq, v)
        return self._seal_rtp(packet, hlen, ssrc, index, v)

    def _seal_rtp(self, packet, hlen, ssrc, index, roc):
        keys = self.rtp
        header = bytes(packet[:hlen])
        payload = bytes(packet[hlen:])
        if self.cipher == AES_CM:
            # RFC 3711 §4.1.1: IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)
            iv = (keys.salt_int ^ (ssrc << 64) ^ (index << 16)).to_bytes(16, "big")
            m = header + keys.aes.ctr(iv, payload)
            # RFC 3711 §4.2: the tag covers the packet and the ROC.
            return m + keys.mac.digest(m, roc.to_bytes(4, "big"))[:self.rtp_tag]
        # RFC 7714 §8.1: IV = (00 00 || SSRC || ROC || SEQ) XOR salt; AAD = the RTP header.
        iv = (keys.salt_int ^ (ssrc << 48) ^ index).to_bytes(12, "big")
        return header + keys.aes.gcm_encrypt(iv, payload, header)

    def unprotect(self, packet):
        try:
            return self._unprotect(packet)
        except Exception as e:
            count_drop(self.dropped, e)
            raise

    def unprotect_rtcp(self, packet):
        try:
            return self._unprotect_rtcp(packet)
        except Exception as e:
            count_drop(self.dropped, e)
            raise

    def _unprotect(self, packet):
        hlen = rtp_header_length(packet)
        tag_len = self.rtp_tag
        if len(packet) < hlen + tag_len:
            raise ParseError("SRTP packet is shorter than its header and %d-byte tag" % tag_len,
                             offset=hlen, field="auth tag")
        seq = (packet[2] << 8) | packet[3]
        ssrc = int.from_bytes(packet[8:12], "big")
        stream = self.rx.get(ssrc)
        new_stream = stream is None
        if new_stream:
            if len(self.rx) >= MAX_STREAMS:
                raise SrtpError("too many receiving SSRCs (limit %d)" % MAX_STREAMS)
            stream = _RtpStream(seq)
        v = stream.estimate(seq)
        if v < 0:
            raise SrtpReplayError("SRTP sequence number %d precedes the stream start" % seq)
        if v > 0xFFFFFFFF:
            raise SrtpError("SRTP index space of this master key is exhausted; rekey")
        index = (v << 16) | seq
        stream.window.check(index)
        keys = self.rtp
        packet = bytes(packet)
        if self.cipher == AES_CM:
            m = packet[:-tag_len]
            expected = keys.mac.digest(m, v.to_bytes(4, "big"))[:tag_len]
            if not compat.constant_time_equal(expected, packet[-tag_len:]):
                raise SrtpAuthError("SRTP authentication tag mismatch (SSRC %08x seq %d)"
                                    % (ssrc, seq))
            iv = (keys.salt_int ^ (ssrc << 64) ^ (index << 16)).to_bytes(16, "big")
            plain = m[:hlen] + keys.aes.ctr(iv, m[hlen:])
        else:
            header = packet[:hlen]
            iv = (keys.salt_int ^ (ssrc << 48) ^ index).to_bytes(12, "big")
            try:
                plain = header + keys.aes.gcm_decrypt(iv, packet[hlen:], header)
            except compat.AuthenticationError:
                raise SrtpAuthError("SRTP authentication tag mismatch (SSRC %08x seq %d)"
                                    % (ssrc, seq))
        stream.update(seq, v)
        stream.window.accept(index)
        if new_stream:
            self.rx[ssrc] = stream
        return plain

    # -- SRTCP (RFC 3711 §3.4) ----------------------------------------------------------------

    def protect_rtcp(self, packet):
        ssrc = _rtcp_check(packet)
        stream = self.tx_rtcp.get(ssrc)
        if stream is None:
            if len(self.tx_rtcp) >= MAX_STREAMS:
                raise SrtpError("too many sending RTCP SSRCs (limit %d)" % MAX_STREAMS)
            stream = self.tx_rtcp[ssrc] = _RtcpStream()
        index = stream.next_index
        if index > SRTCP_INDEX_MASK:
            # RFC 3711 §9.2: at most 2^31 SRTCP packets per master key; never wrap the index.
            raise SrtpError("SRTCP index space of this master key is exhausted; rekey")
        stream.next_index = index + 1
        return self._seal_rtcp(packet, ssrc, index)

    def _seal_rtcp(self, packet, ssrc, index):
        keys = self.rtcp
        packet = bytes(packet)
        header = packet[:8]
        e_index = (SRTCP_E_FLAG | index).to_bytes(4, "big")
        if self.cipher == AES_CM:
            iv = (keys.salt_int ^ (ssrc << 64) ^ (index << 16)).to_bytes(16, "big")
            m = header + keys.aes.ctr(iv, packet[8:]) + e_index
            return m + keys.mac.digest(m, b"")[:self.rtcp_tag]
        # RFC 7714 §9.1: IV = (00 00 || SSRC || 00 00 || 0 || index) XOR salt; AAD = the first
        # 8 octets and E||index; the trailer E||index follows the tag.
        iv = (keys.salt_int ^ (ssrc << 48) ^ index).to_bytes(12, "big")
        return header + keys.aes.gcm_encrypt(iv, packet[8:], header + e_index) + e_index

    def _unprotect_rtcp(self, packet):
        packet = bytes(packet)
        tag_len = self.rtcp_tag
        if len(packet) < 8 + 4 + tag_len:
            raise ParseError("SRTCP packet is shorter than header, index and %d-byte tag"
                             % tag_len, offset=0, field="length")
        ssrc = _rtcp_check(packet)
        keys = self.rtcp
        if self.cipher == AES_CM:
            e_index = packet[-tag_len - 4:-tag_len]
        else:
            e_index = packet[-4:]
        word = int.from_bytes(e_index, "big")
        index = word & SRTCP_INDEX_MASK
        encrypted = bool(word & SRTCP_E_FLAG)
        stream = self.rx_rtcp.get(ssrc)
        new_stream = stream is None
        if new_stream:
            if len(self.rx_rtcp) >= MAX_STREAMS:
                raise SrtpError("too many receiving RTCP SSRCs (limit %d)" % MAX_STREAMS)
            stream = _RtcpStream()
        stream.window.check(index)
        if self.cipher == AES_CM:
            m = packet[:-tag_len]
            expected = keys.mac.digest(m, b"")[:tag_len]
            if not compat.constant_time_equal(expected, packet[-tag_len:]):
                raise SrtpAuthError("SRTCP authentication tag mismatch (SSRC %08x index %d)"
                                    % (ssrc, index))
            body = m[8:-4]
            if encrypted:
                iv = (keys.salt_int ^ (ssrc << 64) ^ (index << 16)).to_bytes(16, "big")
                body = keys.aes.ctr(iv, body)
            plain = packet[:8] + body
        else:
            iv = (keys.salt_int ^ (ssrc << 48) ^ index).to_bytes(12, "big")
            try:
                if encrypted:
                    plain = packet[:8] + keys.aes.gcm_decrypt(iv, packet[8:-4],
                                                              packet[:8] + e_index)
                else:
                    # RFC 7714 §9.2: unencrypted SRTCP authenticates everything as AAD.
                    keys.aes.gcm_decrypt(iv, packet[-4 - tag_len:-4],
                                         packet[:-4 - tag_len] + e_index)
                    plain = packet[:-4 - tag_len]
            except compat.AuthenticationError:
                raise SrtpAuthError("SRTCP authentication tag mismatch (SSRC %08x index %d)"
                                    % (ssrc, index))
        stream.window.accept(index)
        if new_stream:
            self.rx_rtcp[ssrc] = stream
        return plain


def _make_engine(engine, profile, master_key, master_salt):
    if engine in (None, "auto"):
        engine = "pure"
        if not compat.IS_MICROPYTHON:
            try:
                import firmware.media.srtp_libsrtp  # noqa: F401
                engine = "libsrtp"
            except (ImportError, OSError):  # no pylibsrtp, or its libsrtp does not load
                pass
    if engine == "pure":
        return _PureEngine(profile, master_key, master_salt)
    if engine == "libsrtp":
        from firmware.media.srtp_libsrtp import LibsrtpEngine

        return LibsrtpEngine(profile, master_key, master_salt)
    raise ValueError("unknown SRTP engine %r (expected 'pure', 'libsrtp' or 'auto')" % (engine,))


class SrtpSession:
    """One master key's SRTP/SRTCP context for both directions of packets.

    profile: an SDP crypto-suite name (RFC 4568 §6.2, RFC 7714 §14.1), a key of PROFILES.
    engine: "pure" (always available), "libsrtp" (CPython with pylibsrtp) or "auto" (libsrtp when
    importable on CPython, else pure).

    unprotect/unprotect_rtcp raise ParseError, SrtpReplayError, SrtpAuthError or SrtpError and
    count each drop in `dropped[reason]`.
    """

    def __init__(self, profile, master_key, master_salt, engine="auto", lifetime=None):
        """lifetime: the master key's SDES lifetime (RFC 4568 §6.1), a packet count; None means
        RFC 3711 §9.2's own limits, which both engines enforce already."""
        if profile not in PROFILES:
            raise ValueError("unknown SRTP profile %r" % (profile,))
        _, key_len, salt_len, _, _, _ = PROFILES[profile]
        if len(master_key) != key_len:
            raise ValueError("%s needs a %d-byte master key, got %d"
                             % (profile, key_len, len(master_key)))
        if len(master_salt) != salt_len:
            raise ValueError("%s needs a %d-byte master salt, got %d"
                             % (profile, salt_len, len(master_salt)))
        if lifetime is not None and (not isinstance(lifetime, int) or
                                     not 1 <= lifetime <= MAX_SRTP_PACKETS):
            raise ValueError("SDES key lifetime must be 1..2^48 packets, got %r" % (lifetime,))
        self.profile = profile
        self.lifetime = lifetime
        # packets this master key protected / accepted, per kind (RFC 4568 §6.1 counts both)
        self.packets = {"srtp_out": 0, "srtp_in": 0, "srtcp_out": 0, "srtcp_in": 0}
        self._use(_make_engine(engine, profile, bytes(master_key), bytes(master_salt)))

    def _use(self, engine):
        self._engine = engine
        self.engine = engine.name
        self.dropped = engine.dropped
        if self.lifetime is None:
            # The engine's methods are bound straight onto the session (one call layer less per
            # packet); the methods below only document the interface.
            self.protect = engine.protect
            self.protect_rtcp = engine.protect_rtcp
            self.unprotect = engine.unprotect
            self.unprotect_rtcp = engine.unprotect_rtcp
            return
        rtp_limit = min(self.lifetime, MAX_SRTP_PACKETS)
        rtcp_limit = min(self.lifetime, MAX_SRTCP_PACKETS)
        self.protect = self._counted(engine.protect, "srtp_out", rtp_limit, False)
        self.protect_rtcp = self._counted(engine.protect_rtcp, "srtcp_out", rtcp_limit, False)
        self.unprotect = self._counted(engine.unprotect, "srtp_in", rtp_limit, True)
        self.unprotect_rtcp = self._counted(engine.unprotect_rtcp, "srtcp_in", rtcp_limit, True)

    def _counted(self, fn, kind, limit, inbound):
        """fn, refused once `limit` packets of `kind` went through under this master key."""
        packets = self.packets
        dropped = self.dropped

        def run(packet):
            if packets[kind] >= limit:
                e = SrtpKeyExpired("master key lifetime of %d packets reached (%s; RFC 4568 §6.1):"
                                   " re-key" % (limit, kind))
                if inbound:
                    count_drop(dropped, e)
                raise e
            out = fn(packet)
            packets[kind] += 1
            return out
        return run

    @classmethod
    def from_session_keys(cls, profile, rtp_key, rtp_salt, rtp_auth_key, rtcp_key, rtcp_salt,
                          rtcp_auth_key):
        """A pure-engine session from already derived session keys (RFC 7714 §16-17 vectors)."""
        _, key_len, salt_len, _, _, _ = PROFILES[profile]
        # Built the ordinary way (MicroPython has no cls.__new__), then given the supplied keys.
        self = cls(profile, b"\x00" * key_len, b"\x00" * salt_len, engine="pure")
        self._use(_PureEngine(profile, None, None, (rtp_key, rtp_salt, rtp_auth_key,
                                                    rtcp_key, rtcp_salt, rtcp_auth_key)))
        return self

    def protect(self, rtp_packet):
        """RTP packet bytes -> SRTP packet bytes."""
        return self._engine.protect(rtp_packet)

    def protect_rtcp(self, rtcp_packet):
        """RTCP compound bytes -> SRTCP packet bytes."""
        return self._engine.protect_rtcp(rtcp_packet)

    def unprotect(self, srtp_packet):
        """SRTP packet bytes -> RTP packet bytes; a refused packet is counted in `dropped`."""
        return self._engine.unprotect(srtp_packet)

    def unprotect_rtcp(self, srtcp_packet):
        """SRTCP packet bytes -> RTCP compound bytes; refusals are counted likewise."""
        return self._engine.unprotect_rtcp(srtcp_packet)

    # Test and diagnostic hooks: where a stream's index stands.
    def _set_tx_rtcp_index(self, ssrc, index):
        eng = self._engine
        stream = eng.tx_rtcp.get(ssrc)
        if stream is None:
            stream = eng.tx_rtcp[ssrc] = _RtcpStream()
        stream.next_index = index

    def _set_tx_roc(self, ssrc, seq, roc):
        """Start the sending stream of `ssrc` at (roc, seq) — lets tests and vectors use ROC > 0."""
        stream = _RtpStream(seq)
        stream.roc = roc
        self._engine.tx[ssrc] = stream
