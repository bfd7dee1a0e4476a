# firmware.sip.digest against the published examples. Runs under pytest and MicroPython.
from firmware.sip import digest
from firmware.sip.message import SipParseError
from tests.unit.firmware.check import raises


def test_rfc2617_md5_example():
    # RFC 2617 §3.5
    r = digest.compute_response("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life", "GET",
                                "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "auth",
                                "00000001", "0a4f113b")
    assert r == "6629fae49393a05397450978507c4ef1"


def test_rfc7616_sha256_and_md5_examples():
    # RFC 7616 §3.9.1
    args = ("Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "auth", "00000001",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    assert digest.compute_response("SHA-256", *args) == \
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    assert digest.compute_response("MD5", *args) == "8ca523f5e9506fed4657c9700eebdbec"


def test_kamailio_db_ha1_matches_our_ha1():
    # the ha1 column of the example db_text subscriber table: MD5(user:realm:password)
    from firmware import compat
    assert compat.digest("md5", b"alice:127.0.0.1:alicepw").hex() == "2edb2c1af97b498960b7f50592ec157a"


def test_parse_challenge_and_choose_strongest():
    md5 = digest.parse_challenge('Digest realm="127.0.0.1", nonce="abc,def", qop="auth", algorithm=MD5')
    sha = digest.parse_challenge('Digest realm="127.0.0.1", nonce="n2", qop="auth,auth-int", '
                                 'algorithm=SHA-256, opaque="o\\"q", stale=TRUE')
    assert md5.nonce == "abc,def" and md5.qops() == ["auth"]
    assert sha.algorithm == "SHA-256" and sha.opaque == 'o"q' and sha.stale
    other = digest.parse_challenge('Digest realm="r", nonce="n", algorithm=SHA-512-256')
    # RFC 8760 §2.4: answer the strongest algorithm we support
    assert digest.choose([md5, other, sha]) is sha
    assert digest.choose([other]) is None


def test_authorization_round_trip_with_verify():
    ch = digest.parse_challenge('Digest realm="127.0.0.1", nonce="5f3a", qop="auth", algorithm=SHA-256')
    cred = digest.authorization(ch, "alice", "alicepw", "REGISTER", "sip:127.0.0.1", 1, "0a4f113b")
    assert cred.startswith('Digest username="alice", realm="127.0.0.1", nonce="5f3a", '
                           'uri="sip:127.0.0.1", response="')
    assert cred.endswith('algorithm=SHA-256, qop=auth, nc=00000001, cnonce="0a4f113b"')
    lookup = lambda u, r: "alicepw" if (u, r) == ("alice", "127.0.0.1") else None
    assert digest.verify(cred, "REGISTER", lookup, "5f3a") == "alice"
    assert digest.verify(cred, "INVITE", lookup, "5f3a") is None      # method is bound
    assert digest.verify(cred, "REGISTER", lookup, "other") is None   # stale nonce
    bad = lambda u, r: "wrong"
    assert digest.verify(cred, "REGISTER", bad, "5f3a") is None


def test_malformed_challenges_are_typed_errors():
    e = raises(SipParseError, digest.parse_challenge, 'Digest realm="x')
    assert "unterminated" in str(e) and e.field == "WWW-Authenticate"
    e = raises(SipParseError, digest.parse_challenge, 'Digest nonce="x"')
    assert "realm" in str(e)
    e = raises(SipParseError, digest.parse_challenge, 'Digest realm="a" nonce="b"')
    assert "expected ','" in str(e)
    e = raises(SipParseError, digest.parse_challenge, 'Digest realm="a", realm="b", nonce="c"')
    assert "repeated" in str(e)
    ch = digest.parse_challenge('Digest realm="a", nonce="b", qop="auth-int"')
    e = raises(ValueError, digest.authorization, ch, "u", "p", "REGISTER", "sip:a")
    assert "auth-int" in str(e)
