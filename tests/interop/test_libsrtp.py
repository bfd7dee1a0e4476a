# libsrtp (pylibsrtp, libsrtp 2) as the oracle for firmware.media.srtp, both ways, every suite:
# random keys, payload lengths and header shapes, sequence numbers across the 16-bit wrap (so the
# rollover counter moves), RTP and RTCP; replayed and forged packets dropped and counted. Also
# checks that the libsrtp engine of SrtpSession passes the same vectors as the pure engine.
import random
import struct
from typing import Any

import pytest

from firmware.errors import ParseError
from firmware.media.srtp import SrtpAuthError, SrtpReplayError, SrtpSession

try:
    import pylibsrtp
except ImportError as e:    # the oracle is missing: that is a failure, never a skip
    pytest.fail("pylibsrtp (host_tools/requirements.txt) is the independent SRTP oracle and does "
                "not import: %s" % e, pytrace=False)

SUITES = {
    "AES_CM_128_HMAC_SHA1_80": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 14),
    "AES_CM_128_HMAC_SHA1_32": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 14),
    "AEAD_AES_128_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 12),
}
ENGINES = ["pure", "libsrtp"]


def libsrtp_session(profile: str, key: bytes, salt: bytes, inbound: bool) -> Any:
    pid = SUITES[profile][0]
    kind = pylibsrtp.Policy.SSRC_ANY_INBOUND if inbound else pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key + salt, ssrc_type=kind, srtp_profile=pid))


def random_rtp(rng: random.Random, seq: int, ssrc: int) -> bytes:
    """An RTP packet with random payload length and, sometimes, CSRCs, a header extension and
    padding."""
    cc = rng.choice([0, 0, 0, 1, 3])
    ext = rng.random() < 0.3
    b0 = 0x80 | cc | (0x10 if ext else 0)
    out = struct.pack("!BBHII", b0, rng.randrange(128), seq, rng.getrandbits(32), ssrc)
    out += b"".join(struct.pack("!I", rng.getrandbits(32)) for _ in range(cc))
    if ext:
        words = rng.randrange(4)
        out += struct.pack("!HH", 0xBEDE, words) + rng.randbytes(4 * words)
    out += rng.randbytes(rng.choice([0, 1, 15, 16, 17, 160, rng.randrange(1200)]))
    if rng.random() < 0.2:  # RFC 3550 §5.1 padding: encrypted and authenticated with the payload
        pad = rng.randrange(1, 32)
        out = bytes([out[0] | 0x20]) + out[1:] + bytes(pad - 1) + bytes([pad])
    return out


def random_rtcp(rng: random.Random, ssrc: int) -> bytes:
    """A sender report with random report blocks (RFC 3550 §6.4.1)."""
    n = rng.randrange(4)
    body = struct.pack("!IQIII", ssrc, rng.getrandbits(64), rng.getrandbits(32), 7, 1120)
    body += rng.randbytes(24 * n)
    return struct.pack("!BBH", 0x80 | n, 200, len(body) // 4) + body


def sequence_run(rng: random.Random, count: int) -> list[int]:
    """Increasing extended sequence numbers that cross at least one 16-bit wrap, with gaps."""
    seq = 65536 - rng.randrange(1, count // 2)
    out = []
    for _ in range(count):
        out.append(seq)
        seq += rng.choice([1, 1, 1, 2, 5])
    assert out[0] < 65536 < out[-1]
    return out


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("profile", list(SUITES))
def test_we_protect_libsrtp_unprotects(profile: str, engine: str) -> None:
    rng = random.Random("%s-%s-out" % (profile, engine))
    for trial in range(3):
        key, salt = rng.randbytes(16), rng.randbytes(SUITES[profile][1])
        ours = SrtpSession(profile, key, salt, engine=engine)
        theirs = libsrtp_session(profile, key, salt, inbound=True)
        ssrcs = [rng.getrandbits(32) for _ in range(2)]
        for ext_seq in sequence_run(rng, 120):
            ssrc = rng.choice(ssrcs)
            rtp = random_rtp(rng, ext_seq & 0xFFFF, ssrc)
            assert theirs.unprotect(ours.protect(rtp)) == rtp
            if rng.random() < 0.2:
                rtcp = random_rtcp(rng, ssrc)
                assert theirs.unprotect_rtcp(ours.protect_rtcp(rtcp)) == rtcp


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("profile", list(SUITES))
def test_libsrtp_protects_we_unprotect(profile: str, engine: str) -> None:
    rng = random.Random("%s-%s-in" % (profile, engine))
    for trial in range(3):
        key, salt = rng.randbytes(16), rng.randbytes(SUITES[profile][1])
        theirs = libsrtp_session(profile, key, salt, inbound=False)
        ours = SrtpSession(profile, key, salt, engine=engine)
        ssrcs = [rng.getrandbits(32) for _ in range(2)]
        pending = []
        for ext_seq in sequence_run(rng, 120):
            ssrc = rng.choice(ssrcs)
            rtp = random_rtp(rng, ext_seq & 0xFFFF, ssrc)
            pending.append((theirs.protect(rtp), rtp))
            # Deliver with a little reordering (within the replay window).
            if len(pending) >= 3 or rng.random() < 0.5:
                rng.shuffle(pending)
                for srtp, plain in pending:
                    assert ours.unprotect(srtp) == plain
                pending = []
            if rng.random() < 0.2:
                rtcp = random_rtcp(rng, ssrc)
                assert ours.unprotect_rtcp(theirs.protect_rtcp(rtcp)) == rtcp
        for srtp, plain in pending:
            assert ours.unprotect(srtp) == plain
        assert ours.dropped == {"parse": 0, "auth": 0, "replay": 0, "other": 0}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("profile", list(SUITES))
def test_replayed_and_forged_packets_from_libsrtp_are_dropped(profile: str, engine: str) -> None:
    rng = random.Random("%s-%s-bad" % (profile, engine))
    key, salt = rng.randbytes(16), rng.randbytes(SUITES[profile][1])
    theirs = libsrtp_session(profile, key, salt, inbound=False)
    ours = SrtpSession(profile, key, salt, engine=engine)
    good = [theirs.protect(random_rtp(rng, seq, 0x1234)) for seq in range(65530, 65536)]
    good += [theirs.protect(random_rtp(rng, seq, 0x1234)) for seq in range(0, 4)]
    rtcp = [theirs.protect_rtcp(random_rtcp(rng, 0x1234)) for _ in range(3)]
    for p in good:
        ours.unprotect(p)
    for p in rtcp:
        ours.unprotect_rtcp(p)
    for p in good[-3:] + good[:1]:
        with pytest.raises(SrtpReplayError):
            ours.unprotect(p)
    with pytest.raises(SrtpReplayError):
        ours.unprotect_rtcp(rtcp[1])
    fresh = theirs.protect(random_rtp(rng, 4, 0x1234))
    fresh_rtcp = theirs.protect_rtcp(random_rtcp(rng, 0x1234))
    for i in (0, 5, 13, len(fresh) - 1):  # header, payload and tag bits
        forged = bytearray(fresh)
        forged[i if i else 1] ^= 0x04
        with pytest.raises(SrtpAuthError):
            ours.unprotect(bytes(forged))
    forged = bytearray(fresh_rtcp)
    forged[10] ^= 0x80
    with pytest.raises(SrtpAuthError):
        ours.unprotect_rtcp(bytes(forged))
    with pytest.raises(SrtpAuthError):  # another key
        SrtpSession(profile, rng.randbytes(16), salt, engine=engine).unprotect(fresh)
    with pytest.raises(ParseError):
        ours.unprotect(fresh[:11])
    assert ours.unprotect(fresh)[:4] == fresh[:4]  # the genuine packet still passes
    assert ours.unprotect_rtcp(fresh_rtcp)[:8] == fresh_rtcp[:8]
    assert ours.dropped == {"parse": 1, "auth": 5, "replay": 5, "other": 0}


# libsrtp test/srtp_driver.c reference packets (srtp_validate, srtp_validate_gcm): the libsrtp
# engine must produce them too (the pure engine's copy of this test is in tests/unit/firmware).
@pytest.mark.parametrize(
    "profile,key,salt,srtp,srtcp",
    [("AES_CM_128_HMAC_SHA1_80", "e1f97a0d3e018be0d64fa32c06de4139", "0ec675ad498afeebb6960b3aabe6",
      "800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb",
      "81c8000bcafebabe7128035be487b9bdbef89041f977a5a880000001993e08cd54d6c1230798"),
     ("AEAD_AES_128_GCM", "000102030405060708090a0b0c0d0e0f", "a0a1a2a3a4a5a6a7a8a9aaab",
      "800f1234decafbadcafebabec5002ede04cfdd2eb91159e0880aa06ed2976826f796b201df3131a127e8a392",
      "81c8000bcafebabec98b8b5df0392a55852b6c21ac8e7025c52c6fbea2b3b446ea31123ba88ce61e80000001")])
def test_both_engines_pass_libsrtp_reference_packets(profile: str, key: str, salt: str,
                                                     srtp: str, srtcp: str) -> None:
    rtp = bytes.fromhex("800f1234decafbadcafebabe" + "ab" * 16)
    rtcp = bytes.fromhex("81c8000bcafebabe" + "ab" * 16)
    for engine in ENGINES:
        s = SrtpSession(profile, bytes.fromhex(key), bytes.fromhex(salt), engine=engine)
        assert s.engine == engine
        assert s.protect(rtp).hex() == srtp
        if engine == "pure":
            s._set_tx_rtcp_index(0xCAFEBABE, 1)  # libsrtp counts SRTCP from 1
        assert s.protect_rtcp(rtcp).hex() == srtcp
        r = SrtpSession(profile, bytes.fromhex(key), bytes.fromhex(salt), engine=engine)
        assert r.unprotect(bytes.fromhex(srtp)) == rtp
        assert r.unprotect_rtcp(bytes.fromhex(srtcp)) == rtcp


@pytest.mark.parametrize("profile", list(SUITES))
def test_engines_agree_byte_for_byte(profile: str) -> None:
    rng = random.Random(profile + "-parity")
    key, salt = rng.randbytes(16), rng.randbytes(SUITES[profile][1])
    pure = SrtpSession(profile, key, salt, engine="pure")
    lib = SrtpSession(profile, key, salt, engine="libsrtp")
    for ext_seq in sequence_run(rng, 200):
        rtp = random_rtp(rng, ext_seq & 0xFFFF, 0xABCD)
        assert pure.protect(rtp) == lib.protect(rtp)
    pure._set_tx_rtcp_index(0xABCD, 1)
    for _ in range(20):
        rtcp = random_rtcp(rng, 0xABCD)
        assert pure.protect_rtcp(rtcp) == lib.protect_rtcp(rtcp)


def test_auto_engine_is_libsrtp_on_cpython_when_present() -> None:
    assert SrtpSession("AEAD_AES_128_GCM", bytes(16), bytes(12)).engine == "libsrtp"
    assert SrtpSession("AEAD_AES_128_GCM", bytes(16), bytes(12), engine="pure").engine == "pure"


def test_engine_errors_have_the_same_types_and_texts() -> None:
    key, salt = bytes(16), bytes(14)
    for engine in ENGINES:
        s = SrtpSession("AES_CM_128_HMAC_SHA1_80", key, salt, engine=engine)
        with pytest.raises(ParseError, match=r"^RTP packet has truncated CSRC list"):
            s.unprotect(bytes.fromhex("8f00000000000000000000000000000000000000"))
        with pytest.raises(ParseError, match="shorter than its header and 10-byte tag"):
            s.unprotect(bytes.fromhex("800000000000000000000000" + "00" * 9))
        with pytest.raises(ParseError, match="RTCP packet has invalid version 1"):
            s.unprotect_rtcp(bytes.fromhex("41c80006" + "00" * 30))
        assert s.dropped["parse"] == 3
        # Both refuse to seal a second packet under an index already used (keystream reuse).
        s.protect(bytes.fromhex("800000010000000000000001") + b"a")
        with pytest.raises(SrtpReplayError):
            s.protect(bytes.fromhex("800000010000000000000001") + b"b")
