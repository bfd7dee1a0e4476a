# SRTP/SRTCP (RFC 3711, RFC 7714) on the pure engine: spec vectors byte-exact, libsrtp's own
# reference packets, rollover, replay and forgery handling. Runs under pytest and MicroPython.
from firmware.errors import ParseError
from firmware.media.srtp import (
    ReplayWindow, SrtpAuthError, SrtpError, SrtpReplayError, SrtpSession, derive_key)
from tests.unit.firmware.check import raises, unhex

CM80 = "AES_CM_128_HMAC_SHA1_80"
CM32 = "AES_CM_128_HMAC_SHA1_32"
GCM = "AEAD_AES_128_GCM"

# RFC 3711 B.3 master key and salt (libsrtp's srtp_validate uses the same pair).
B3_KEY = unhex("E1F97A0D3E018BE0D64FA32C06DE4139")
B3_SALT = unhex("0EC675AD498AFEEBB6960B3AABE6")


def rtp(seq, ssrc=0xCAFEBABE, payload=b"\xab" * 16, ts=0xDECAFBAD):
    return bytes([0x80, 0x0F, seq >> 8, seq & 0xFF]) + ts.to_bytes(4, "big") + \
        ssrc.to_bytes(4, "big") + payload


def test_rfc3711_b3_key_derivation():
    # RFC 3711 B.3
    assert derive_key(B3_KEY, B3_SALT, 0, 16) == unhex("C61E7A93744F39EE10734AFE3FF7A087")
    assert derive_key(B3_KEY, B3_SALT, 2, 14) == unhex("30CBBC08863D8C85D49DB34A9AE1")
    assert derive_key(B3_KEY, B3_SALT, 1, 94) == unhex(
        "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE"
        "E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25"
        "6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2")


def test_rfc3711_b2_aes_cm_keystream():
    # RFC 3711 B.2: session key/salt, SSRC 0, index 0 -> IV F0F1...FD0000; a zero payload
    # encrypts to the keystream itself.
    key = unhex("2B7E151628AED2A6ABF7158809CF4F3C")
    salt = unhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD")
    s = SrtpSession.from_session_keys(CM80, key, salt, b"\x00" * 20, key, salt, b"\x00" * 20)
    out = s.protect(rtp(0, ssrc=0, payload=b"\x00" * 48))
    assert out[12:60] == unhex("E03EAD0935C95E80E166B16DD92B4EB4"
                               "D23513162B02D0F72A43A2FE4A5F97AB"
                               "41E95B3BB0A2E8DD477901E4FCA894C0")
    assert len(out) == 70


# RFC 7714 §16 and §17: AEAD_AES_128_GCM with the session key and salt given directly.
GCM_KEY = unhex("000102030405060708090a0b0c0d0e0f")
GCM_SALT = unhex("517569642070726f2071756f")  # "Quid pro quo"
RFC7714_RTP = unhex("8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973"
                    "20646976 69736120 696e2070 61727465 73207472 6573")
RFC7714_SRTP = unhex("8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5"
                     "0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439"
                     "0cce")
RFC7714_RTCP = unhex("81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61"
                     "deadbeef deadbeef deadbeef deadbeef deadbeef")
RFC7714_SRTCP = unhex("81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d"
                      "c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872"
                      "45d9eade 800005d4")


def _rfc7714_session():
    return SrtpSession.from_session_keys(GCM, GCM_KEY, GCM_SALT, b"", GCM_KEY, GCM_SALT, b"")


def test_rfc7714_16_srtp_gcm():
    s = _rfc7714_session()
    assert s.protect(RFC7714_RTP) == RFC7714_SRTP
    assert _rfc7714_session().unprotect(RFC7714_SRTP) == RFC7714_RTP


def test_rfc7714_17_srtcp_gcm():
    s = _rfc7714_session()
    s._set_tx_rtcp_index(0x4D617273, 0x5D4)  # the example's SRTCP index
    assert s.protect_rtcp(RFC7714_RTCP) == RFC7714_SRTCP
    r = _rfc7714_session()
    assert r.unprotect_rtcp(RFC7714_SRTCP) == RFC7714_RTCP
    forged = bytearray(RFC7714_SRTCP)
    forged[-5] ^= 1  # last tag octet
    e = raises(SrtpAuthError, _rfc7714_session().unprotect_rtcp, bytes(forged))
    assert str(e) == "SRTCP authentication tag mismatch (SSRC 4d617273 index 1492)"


# libsrtp test/srtp_driver.c srtp_validate / srtp_validate_gcm reference packets: they also
# exercise key derivation (B.3 master key; a 96-bit GCM salt zero-padded for the PRF).
LIBSRTP_RTP = unhex("800f1234decafbadcafebabe abababababababababababababababab")
LIBSRTP_RTCP = unhex("81c8000bcafebabe abababababababababababababababab")


def test_libsrtp_reference_aes_cm_80():
    s = SrtpSession(CM80, B3_KEY, B3_SALT, engine="pure")
    srtp = unhex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb")
    assert s.protect(LIBSRTP_RTP) == srtp
    # libsrtp numbers SRTCP packets from 1.
    s._set_tx_rtcp_index(0xCAFEBABE, 1)
    srtcp = unhex("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798")
    assert s.protect_rtcp(LIBSRTP_RTCP) == srtcp
    r = SrtpSession(CM80, B3_KEY, B3_SALT, engine="pure")
    assert r.unprotect(srtp) == LIBSRTP_RTP
    assert r.unprotect_rtcp(srtcp) == LIBSRTP_RTCP


def test_libsrtp_reference_gcm():
    key = unhex("000102030405060708090a0b0c0d0e0f")
    salt = unhex("a0a1a2a3a4a5a6a7a8a9aaab")
    s = SrtpSession(GCM, key, salt, engine="pure")
    srtp = unhex("800f1234decafbadcafebabe c5002ede04cfdd2eb91159e0880aa06e"
                 "d2976826f796b201df3131a127e8a392")
    assert s.protect(LIBSRTP_RTP) == srtp
    s._set_tx_rtcp_index(0xCAFEBABE, 1)
    srtcp = unhex("81c8000bcafebabe c98b8b5df0392a55852b6c21ac8e7025"
                  "c52c6fbea2b3b446ea31123ba88ce61e 80000001")
    assert s.protect_rtcp(LIBSRTP_RTCP) == srtcp
    r = SrtpSession(GCM, key, salt, engine="pure")
    assert r.unprotect(srtp) == LIBSRTP_RTP
    assert r.unprotect_rtcp(srtcp) == LIBSRTP_RTCP


def test_tag_lengths():
    for profile, rtp_tag, rtcp_trailer in ((CM80, 10, 14), (CM32, 4, 14), (GCM, 16, 20)):
        salt = B3_SALT[:12] if profile == GCM else B3_SALT
        s = SrtpSession(profile, B3_KEY, salt, engine="pure")
        assert len(s.protect(LIBSRTP_RTP)) == len(LIBSRTP_RTP) + rtp_tag
        assert len(s.protect_rtcp(LIBSRTP_RTCP)) == len(LIBSRTP_RTCP) + rtcp_trailer


def test_rollover_across_sequence_wrap():
    # RFC 3711 §3.3.1: the ROC increments when the sequence number wraps; the receiver's index
    # estimate follows, including a packet from before the wrap arriving after it.
    for profile in (CM32, GCM):
        salt = B3_SALT[:12] if profile == GCM else B3_SALT
        tx = SrtpSession(profile, B3_KEY, salt, engine="pure")
        rx = SrtpSession(profile, B3_KEY, salt, engine="pure")
        sent = [(seq, tx.protect(rtp(seq))) for seq in (65533, 65534, 65535, 0, 1)]
        order = [0, 1, 3, 2, 4]  # 65535 arrives after 0
        for i in order:
            assert rx.unprotect(sent[i][1]) == rtp(sent[i][0])
        # Packet 0 after the wrap was protected with ROC 1: a sender started at ROC 1 agrees.
        ref = SrtpSession(profile, B3_KEY, salt, engine="pure")
        ref._set_tx_roc(0xCAFEBABE, 0, 1)
        assert ref.protect(rtp(0)) == sent[3][1]


def test_replay_and_forgery_are_dropped_and_counted():
    tx = SrtpSession(CM80, B3_KEY, B3_SALT, engine="pure")
    rx = SrtpSession(CM80, B3_KEY, B3_SALT, engine="pure")
    p1 = tx.protect(rtp(100))
    assert rx.unprotect(p1) == rtp(100)
    e = raises(SrtpReplayError, rx.unprotect, p1)
    assert str(e) == "SRTP index 100 was already received"
    forged = bytearray(tx.protect(rtp(101)))
    forged[14] ^= 0x01  # one payload bit
    e = raises(SrtpAuthError, rx.unprotect, bytes(forged))
    assert str(e) == "SRTP authentication tag mismatch (SSRC cafebabe seq 101)"
    # Nothing was learned from the forgery: the genuine packet still goes through.
    forged[14] ^= 0x01
    assert rx.unprotect(bytes(forged)) == rtp(101)
    # A packet far ahead moves the window; one more than the window behind is too old.
    for seq in (300, 301):
        rx.unprotect(tx.protect(rtp(seq)))
    old = SrtpSession(CM80, B3_KEY, B3_SALT, engine="pure")
    old_pkt = old.protect(rtp(150))
    e = raises(SrtpReplayError, rx.unprotect, old_pkt)
    assert str(e) == "SRTP index 150 is older than the replay window"
    # SRTCP has its own window.
    c = tx.protect_rtcp(LIBSRTP_RTCP)
    assert rx.unprotect_rtcp(c) == LIBSRTP_RTCP
    raises(SrtpReplayError, rx.unprotect_rtcp, c)
    bad = bytearray(tx.protect_rtcp(LIBSRTP_RTCP))
    bad[9] ^= 0x80
    raises(SrtpAuthError, rx.unprotect_rtcp, bytes(bad))
    e = raises(ParseError, rx.unprotect, rtp(5)[:11])
    assert str(e) == "RTP packet length is less than 12 bytes (field header at offset 0)"
    e = raises(ParseError, rx.unprotect, rtp(5, payload=b"")[:12] + b"\x00" * 9)
    assert str(e) == ("SRTP packet is shorter than its header and 10-byte tag"
                      " (field auth tag at offset 12)")
    e = raises(ParseError, rx.unprotect_rtcp, LIBSRTP_RTCP[:20])
    assert str(e) == ("SRTCP packet is shorter than header, index and 10-byte tag"
                      " (field length at offset 0)")
    assert rx.dropped == {"parse": 3, "auth": 2, "replay": 3, "other": 0}


def test_unknown_ssrc_forgery_creates_no_stream():
    rx = SrtpSession(GCM, B3_KEY, B3_SALT[:12], engine="pure")
    junk = rtp(7, ssrc=0x11111111, payload=b"\x00" * 40)
    raises(SrtpAuthError, rx.unprotect, junk)
    assert rx._engine.rx == {}


def test_session_arguments():
    e = raises(ValueError, SrtpSession, "AES_CM_256_HMAC_SHA1_80", B3_KEY, B3_SALT)
    assert str(e) == "unknown SRTP profile 'AES_CM_256_HMAC_SHA1_80'"
    e = raises(ValueError, SrtpSession, GCM, B3_KEY, B3_SALT)
    assert str(e) == "AEAD_AES_128_GCM needs a 12-byte master salt, got 14"
    e = raises(ValueError, SrtpSession, CM80, B3_KEY[:15], B3_SALT)
    assert str(e) == "AES_CM_128_HMAC_SHA1_80 needs a 16-byte master key, got 15"
    raises(ValueError, SrtpSession, CM80, B3_KEY, B3_SALT, "openssl")
    assert issubclass(SrtpAuthError, SrtpError) and issubclass(SrtpReplayError, SrtpError)


def test_replay_window():
    w = ReplayWindow(64)
    for i in (10, 12, 11, 75):
        w.check(i)
        w.accept(i)
    raises(SrtpReplayError, w.check, 11)
    raises(SrtpReplayError, w.check, 10)
    w.check(13)  # never seen, inside the window
    raises(SrtpReplayError, w.check, 75 - 64)  # exactly one window behind
    w.check(76)
    w.accept(75 + (1 << 31))  # a leap far past the window (SRTCP allows 2^31) forgets it
    assert w.mask == 1
    raises(SrtpReplayError, w.check, 75)


def test_sender_refuses_keystream_reuse_and_exhaustion():
    tx = SrtpSession(CM80, B3_KEY, B3_SALT, engine="pure")
    tx.protect(rtp(7))
    # The same index twice would encrypt two payloads with one keystream (RFC 3711 §9.1).
    e = raises(SrtpReplayError, tx.protect, rtp(7, payload=b"other"))
    assert str(e) == "SRTP index 7 was already sent; keystream reuse refused"
    tx._set_tx_rtcp_index(0xCAFEBABE, 0x7FFFFFFF)
    tx.protect_rtcp(LIBSRTP_RTCP)  # the last SRTCP index this master key may use
    e = raises(SrtpError, tx.protect_rtcp, LIBSRTP_RTCP)
    assert str(e) == "SRTCP index space of this master key is exhausted; rekey"
    tx._set_tx_roc(0xCAFEBABE, 65535, 0xFFFFFFFF)
    e = raises(SrtpError, tx.protect, rtp(0))
    assert str(e) == "SRTP index space of this master key is exhausted; rekey"


class _CountingAes:
    """Wraps the session's real AES to count keystream use (instrumentation, not a mock)."""

    def __init__(self, aes):
        self.aes = aes
        self.calls = 0

    def ctr(self, iv, data):
        self.calls += 1
        return self.aes.ctr(iv, data)

    def gcm_decrypt(self, iv, data, aad, tag_len=16):
        self.calls += 1
        return self.aes.gcm_decrypt(iv, data, aad, tag_len)


def test_authentication_is_checked_before_decryption():
    # RFC 3711 §3.3 step 5 before step 6: a forged AES-CM packet never reaches the cipher.
    tx = SrtpSession(CM80, B3_KEY, B3_SALT, engine="pure")
    rx = SrtpSession(CM80, B3_KEY, B3_SALT, engine="pure")
    spy = rx._engine.rtp.aes = _CountingAes(rx._engine.rtp.aes)
    rtcp_spy = rx._engine.rtcp.aes = _CountingAes(rx._engine.rtcp.aes)
    forged = bytearray(tx.protect(rtp(1)))
    forged[-1] ^= 1
    raises(SrtpAuthError, rx.unprotect, bytes(forged))
    forged = bytearray(tx.protect_rtcp(LIBSRTP_RTCP))
    forged[-1] ^= 1
    raises(SrtpAuthError, rx.unprotect_rtcp, bytes(forged))
    assert spy.calls == 0 and rtcp_spy.calls == 0
    assert rx.unprotect(tx.protect(rtp(2))) == rtp(2)
    assert spy.calls == 1


def _lifetime_engines():
    from firmware import compat

    return ("pure",) if compat.IS_MICROPYTHON else ("pure", "libsrtp")


def test_sdes_lifetime_refuses_the_packet_after_the_last():
    # RFC 4568 §6.1: a master key with lifetime 3 protects 3 SRTP packets, and 3 SRTCP; the 4th
    # is refused with SrtpKeyExpired (the call re-keys or ends); the receiver accepts 3 and drops
    # the 4th under "other"
    from firmware.media.srtp import SrtpKeyExpired

    for engine in _lifetime_engines():
        tx = SrtpSession(CM80, B3_KEY, B3_SALT, engine, lifetime=3)
        rx = SrtpSession(CM80, B3_KEY, B3_SALT, engine, lifetime=3)
        free = SrtpSession(CM80, B3_KEY, B3_SALT, engine)
        wire = [tx.protect(rtp(i)) for i in range(3)]
        e = raises(SrtpKeyExpired, tx.protect, rtp(3))
        assert str(e) == "master key lifetime of 3 packets reached (srtp_out; RFC 4568 §6.1): re-key"
        assert tx.packets["srtp_out"] == 3
        # byte-exact: the counted session sends what an unlimited one sends
        assert wire == [free.protect(rtp(i)) for i in range(3)]
        fourth = free.protect(rtp(3))
        assert [rx.unprotect(w) for w in wire] == [rtp(i) for i in range(3)]
        raises(SrtpKeyExpired, rx.unprotect, fourth)
        assert rx.dropped["other"] == 1
        rtcp = bytes([0x80, 200, 0, 6]) + (0xCAFEBABE).to_bytes(4, "big") + bytes(20)
        for i in range(3):
            tx.protect_rtcp(rtcp)
        e = raises(SrtpKeyExpired, tx.protect_rtcp, rtcp)
        assert "srtcp_out" in str(e)


def test_lifetime_bounds():
    e = raises(ValueError, SrtpSession, CM80, B3_KEY, B3_SALT, "pure", 0)
    assert "1..2^48" in str(e)
    raises(ValueError, SrtpSession, CM80, B3_KEY, B3_SALT, "pure", (1 << 48) + 1)
    s = SrtpSession(CM80, B3_KEY, B3_SALT, "pure", 1 << 48)
    assert s.lifetime == 1 << 48
