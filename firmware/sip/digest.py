# HTTP Digest authentication as SIP uses it (RFC 3261 §22.4; computation RFC 2617 §3.2.2 and
# RFC 7616 §3.4.1; SHA-256 for SIP per RFC 8760). Only qop=auth (or no qop, RFC 2069 style) is
# supported: auth-int is not offered by the registrars we meet and is refused explicitly.

from firmware import compat
from firmware.sip.message import SipParseError, is_token

# RFC 8760 §2.1 / RFC 7616 §6.1 algorithm names -> compat hash names.
ALGORITHMS = {"MD5": "md5", "SHA-256": "sha256"}
# Stronger first: when a server offers several challenges we answer the best one (RFC 8760 §2.4).
PREFERENCE = ("SHA-256", "MD5")


class Challenge:
    """A parsed WWW-Authenticate / Proxy-Authenticate value (unverified input from the peer)."""

    def __init__(self, scheme, params):
        self.scheme = scheme
        self.params = params  # dict, lowercase keys, unquoted values

    @property
    def realm(self):
        return self.params.get("realm")

    @property
    def nonce(self):
        return self.params.get("nonce")

    @property
    def algorithm(self):
        return self.params.get("algorithm", "MD5").upper()

    @property
    def opaque(self):
        return self.params.get("opaque")

    @property
    def stale(self):
        return self.params.get("stale", "").lower() == "true"

    def qops(self):
        q = self.params.get("qop")
        if q is None:
            return []
        return [x.strip().lower() for x in q.split(",") if x.strip()]


def parse_auth_params(text, field):
    """'name=value, name="quoted"' pairs (RFC 7235 §2.1 auth-param) -> dict."""
    params = {}
    i = 0
    n = len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise SipParseError("auth-param without '='", field=field)
        name = text[i:eq].strip().lower()
        if not is_token(name):
            raise SipParseError("bad auth-param name %r" % name[:30], field=field)
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            val = []
            while True:
                if i >= n:
                    raise SipParseError("unterminated quoted auth-param %s" % name, field=field)
                ch = text[i]
                if ch == "\\" and i + 1 < n:
                    val.append(text[i + 1])
                    i += 2
                    continue
                if ch == '"':
                    i += 1
                    break
                val.append(ch)
                i += 1
            value = "".join(val)
        else:
            j = i
            while j < n and text[j] != ",":
                j += 1
            value = text[i:j].strip()
            if not is_token(value):
                raise SipParseError("bad auth-param value for %s" % name, field=field)
            i = j
        if name in params:
            raise SipParseError("auth-param %s repeated" % name, field=field)
        params[name] = value
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] != ",":
            raise SipParseError("expected ',' after auth-param %s" % name, field=field)
    return params


def parse_challenge(value, field="WWW-Authenticate"):
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if not is_token(scheme):
        raise SipParseError("bad auth scheme", field=field)
    ch = Challenge(scheme, parse_auth_params(rest, field))
    if scheme.lower() == "digest":
        if not ch.realm or ch.nonce is None:
            raise SipParseError("Digest challenge without realm or nonce", field=field)
    return ch


def _h(alg, text):
    if isinstance(text, str):
        text = text.encode()
    return compat.digest(ALGORITHMS[alg], text).hex()


def compute_response(algorithm, username, realm, password, method, uri, nonce, qop=None,
                     nc=None, cnonce=None):
    """The request-digest (RFC 7616 §3.4.1); hex string."""
    alg = algorithm.upper()
    if alg not in ALGORITHMS:
        raise ValueError("unsupported digest algorithm %s" % algorithm)
    ha1 = _h(alg, "%s:%s:%s" % (username, realm, password))
    return response_from_ha1(alg, ha1, method, uri, nonce, qop, nc, cnonce)


def response_from_ha1(algorithm, ha1, method, uri, nonce, qop=None, nc=None, cnonce=None):
    alg = algorithm.upper()
    ha2 = _h(alg, "%s:%s" % (method, uri))
    if qop is None:
        return _h(alg, "%s:%s:%s" % (ha1, nonce, ha2))
    if qop != "auth":
        raise ValueError("unsupported qop %s" % qop)
    return _h(alg, "%s:%s:%s:%s:%s:%s" % (ha1, nonce, nc, cnonce, qop, ha2))


def choose(challenges):
    """Pick the challenge to answer: Digest, an algorithm we know, a qop we can do (none, or
    "auth" among those offered: RFC 7616 §3.3), strongest first; None if none can be answered."""
    best = None
    for ch in challenges:
        if ch.scheme.lower() != "digest" or ch.algorithm not in ALGORITHMS:
            continue
        qops = ch.qops()
        if qops and "auth" not in qops:
            continue    # authorization() could not answer it (fuzzing: qop="a{th" escaped receive)
        if best is None or PREFERENCE.index(ch.algorithm) < PREFERENCE.index(best.algorithm):
            best = ch
    return best


def new_cnonce():
    return compat.random_bytes(12).hex()


def authorization(challenge, username, password, method, uri, nc=1, cnonce=None):
    """Credentials for `challenge` (RFC 3261 §22.4): the Authorization/Proxy-Authorization value."""
    qops = challenge.qops()
    qop = None
    if qops:
        if "auth" not in qops:
            raise ValueError("server requires qop %s; only auth is supported" % ",".join(qops))
        qop = "auth"
        if cnonce is None:
            cnonce = new_cnonce()
    alg = challenge.algorithm
    nc_text = "%08x" % nc
    resp = compute_response(alg, username, challenge.realm, password, method, uri, challenge.nonce,
                            qop, nc_text, cnonce)
    parts = ['username="%s"' % _q(username), 'realm="%s"' % _q(challenge.realm),
             'nonce="%s"' % _q(challenge.nonce), 'uri="%s"' % _q(uri), 'response="%s"' % resp,
             "algorithm=%s" % alg]
    if challenge.opaque is not None:
        parts.append('opaque="%s"' % _q(challenge.opaque))
    if qop:
        parts.append("qop=%s" % qop)
        parts.append("nc=%s" % nc_text)
        parts.append('cnonce="%s"' % _q(cnonce))
    return "Digest " + ", ".join(parts)


def _q(s):
    return s.replace("\\", "\\\\").replace('"', '\\"')


def verify(credentials_value, method, password_lookup, expected_nonce, field="Authorization"):
    """Server side (used by test registrars): parse credentials and check the response.
    `password_lookup(username, realm)` returns the password or None. Returns the username."""
    scheme, _, rest = credentials_value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipParseError("not Digest credentials", field=field)
    p = parse_auth_params(rest, field)
    for k in ("username", "realm", "nonce", "uri", "response"):
        if k not in p:
            raise SipParseError("credentials lack %s" % k, field=field)
    if p["nonce"] != expected_nonce:
        return None
    pw = password_lookup(p["username"], p["realm"])
    if pw is None:
        return None
    alg = p.get("algorithm", "MD5").upper()
    if alg not in ALGORITHMS:
        return None
    want = compute_response(alg, p["username"], p["realm"], pw, method, p["uri"], p["nonce"],
                            p.get("qop"), p.get("nc"), p.get("cnonce"))
    if not compat.constant_time_equal(want.encode(), p["response"].lower().encode()):
        return None
    return p["username"]
