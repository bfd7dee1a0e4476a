# SDP (RFC 4566) for one audio stream, offer/answer (RFC 3264) with SDES keys (RFC 4568).
# The phone only makes and accepts `RTP/SAVP` with `a=crypto`; plain RTP or keys over signalling
# that is not TLS are refused unless the caller passes insecure=True (a test mode).

import binascii

from firmware import compat
from firmware.sip.message import SipParseError

# RFC 4568 §6.2 and RFC 7714 §12: master key and salt lengths per suite (octets).
SUITES = {
    "AEAD_AES_128_GCM": (16, 12),
    "AES_CM_128_HMAC_SHA1_80": (16, 14),
    "AES_CM_128_HMAC_SHA1_32": (16, 14),
}
# Strongest first: AEAD beats encrypt-then-MAC; an 80-bit tag beats a 32-bit one.
PREFERENCE = ("AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
# RFC 3551 §6 static payload types this phone plays.
CODECS = {0: "PCMU", 8: "PCMA"}
MAX_SDP = 8192
MAX_LIFETIME = 1 << 48   # RFC 3711 §9.2 / RFC 4568 §6.1
# Attributes whose grammar (RFC 4566 §6, RFC 4568 §9.1, RFC 3605 §2.1) has a value after ':';
# one of these without a value is malformed, never a property attribute.
VALUE_ATTRIBUTES = ("rtpmap", "fmtp", "crypto", "ptime", "maxptime", "rtcp", "framerate",
                    "orient", "type", "charset", "sdplang", "lang", "quality", "cat", "keywds",
                    "tool")


class SdpError(SipParseError):
    """The SDP text does not parse (a ParseError). A UAS answers the INVITE 488 Not Acceptable
    Here with a Warning naming the line (RFC 3261 §21.4.26, §20.43); the offerer ends the call
    with BYE and a Reason."""

    def __init__(self, message, offset=None, field=None, status=488):
        SipParseError.__init__(self, message, offset=offset, field=field, status=status)


class NegotiationError(ValueError):
    """No acceptable media: the UA answers `status` (488 Not Acceptable Here, RFC 3261 §21.4.26)."""

    def __init__(self, message, status=488):
        super().__init__(message)
        self.status = status
        self.reason = message


class Media:
    def __init__(self, media, port, proto, formats, connection=None, attributes=None):
        self.media = media
        self.port = port
        self.proto = proto
        self.formats = formats
        self.connection = connection
        self.attributes = attributes if attributes is not None else []  # (name, value|None)
        self.bandwidths = []

    def attr(self, name):
        """The values of every `a=name:value` line. A value attribute is never handed out as
        None: parse() refuses `a=crypto`/`a=rtpmap`... without one, and a property attribute
        (`a=sendrecv`) asked for as a value is a typed error, not a None."""
        out = []
        for k, v in self.attributes:
            if k == name:
                if v is None:
                    raise SdpError("a=%s has no value" % name[:20], field="a=" + name[:20])
                out.append(v)
        return out

    def has(self, name):
        """True when a property attribute (`a=sendrecv`, RFC 4566 §6) is present."""
        for k, v in self.attributes:
            if k == name:
                return True
        return False


class SessionDescription:
    def __init__(self, origin, name="-", connection=None, timing="0 0"):
        self.version = 0
        self.origin = origin          # o= value text
        self.name = name
        self.connection = connection  # address text from c=IN IP4 <addr>
        self.timing = timing
        self.attributes = []
        self.media = []
        self.extra = []               # other session-level lines kept as (type, value)

    @classmethod
    def parse(cls, data):
        if isinstance(data, (bytes, bytearray)):
            if len(data) > MAX_SDP:
                raise SdpError("SDP larger than %d octets" % MAX_SDP, field="sdp")
            try:
                data = bytes(data).decode("utf-8")
            except UnicodeError:
                raise SdpError("SDP is not UTF-8", field="sdp")
        lines = data.replace("\r\n", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        sd = None
        cur = None
        seen = ""
        for i in range(len(lines)):
            line = lines[i]
            field = "line %d" % (i + 1)
            if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
                raise SdpError("expected '<type>=<value>', got %r" % line[:40], field=field)
            t, v = line[0], line[2:]
            if i == 0:
                if t != "v" or v != "0":
                    raise SdpError("SDP must start with v=0", field=field)
                sd = cls("")
                continue
            seen += t
            if t == "m":
                cur = _parse_m(v, field)
                sd.media.append(cur)
            elif t == "c":
                addr = _parse_c(v, field)
                if cur is None:
                    sd.connection = addr
                else:
                    cur.connection = addr
            elif t == "a":
                name, colon, val = v.partition(":")
                if not name:
                    raise SdpError("empty attribute name", field=field)
                if name in VALUE_ATTRIBUTES and (not colon or not val.strip()):
                    # RFC 4566 §6: these are value attributes; a bare `a=crypto` is malformed
                    raise SdpError("a=%s without a value" % name, field=field)
                if name == "rtpmap":
                    parse_rtpmap(val, field)
                (cur.attributes if cur is not None else sd.attributes).append((name, val if colon else None))
            elif cur is not None:
                if t == "b":
                    cur.bandwidths.append(v)
                elif t not in "ik":
                    raise SdpError("'%s=' line not allowed in a media section" % t, field=field)
            elif t == "o":
                if len(v.split(" ")) != 6:
                    raise SdpError("o= needs 6 fields", field=field)
                sd.origin = v
            elif t == "s":
                sd.name = v
            elif t == "t":
                sd.timing = v
            else:
                sd.extra.append((t, v))
        if sd is None:
            raise SdpError("empty SDP", field="sdp")
        if "o" not in seen or "s" not in seen:
            raise SdpError("SDP lacks o= or s=", field="sdp")
        return sd

    def serialize(self):
        out = ["v=0", "o=" + self.origin, "s=" + self.name]
        if self.connection:
            out.append("c=IN IP4 " + self.connection)
        for t, v in self.extra:
            out.append("%s=%s" % (t, v))
        out.append("t=" + self.timing)
        for k, v in self.attributes:
            out.append("a=" + k if v is None else "a=%s:%s" % (k, v))
        for m in self.media:
            out.append("m=%s %d %s %s" % (m.media, m.port, m.proto, " ".join(m.formats)))
            if m.connection:
                out.append("c=IN IP4 " + m.connection)
            for b in m.bandwidths:
                out.append("b=" + b)
            for k, v in m.attributes:
                out.append("a=" + k if v is None else "a=%s:%s" % (k, v))
        return ("\r\n".join(out) + "\r\n").encode()


def _parse_m(v, field):
    parts = v.split(" ")
    if len(parts) < 4:
        raise SdpError("m= needs media, port, proto and formats", field=field)
    port_text = parts[1].split("/")[0]
    if not port_text.isdigit() or int(port_text) > 65535:
        raise SdpError("bad port %r" % parts[1][:20], field=field)
    return Media(parts[0], int(port_text), parts[2], parts[3:])


def _parse_c(v, field):
    parts = v.split(" ")
    if len(parts) != 3 or parts[0] != "IN":
        raise SdpError("c= must be 'IN <addrtype> <address>'", field=field)
    if parts[1] != "IP4":
        raise SdpError("only IP4 connection addresses are supported", field=field)
    addr = parts[2].split("/")[0]
    octets = addr.split(".")
    if len(octets) != 4:
        raise SdpError("bad IPv4 address %r" % addr[:40], field=field)
    for o in octets:
        if not o.isdigit() or int(o) > 255:
            raise SdpError("bad IPv4 address %r" % addr[:40], field=field)
    return addr


# --- a=crypto (RFC 4568 §9.1) --------------------------------------------------------------------

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


class Crypto:
    def __init__(self, tag, suite, key, salt, lifetime=None, mki=None, mki_length=None,
                 session_params=None):
        self.session_params = session_params or []
        self.tag = tag
        self.suite = suite
        self.key = key
        self.salt = salt
        self.lifetime = lifetime
        self.mki = mki
        self.mki_length = mki_length

    @classmethod
    def parse(cls, value):
        f = "a=crypto"
        if not isinstance(value, str):
            raise SdpError("crypto attribute has no value", field=f)
        parts = value.split()
        if len(parts) < 3:
            raise SdpError("crypto needs tag, suite and key-params", field=f)
        tag_text, suite, keyp = parts[0], parts[1], parts[2]
        if not tag_text.isdigit() or len(tag_text) > 9:
            raise SdpError("bad crypto tag %r" % tag_text[:20], field=f)
        if ";" in keyp:
            raise SdpError("several keys per crypto line are not supported", field=f)
        if not keyp.startswith("inline:"):
            raise SdpError("key method must be inline", field=f)
        items = keyp[7:].split("|")
        b64 = items[0]
        if not b64 or len(b64) % 4 != 0:
            raise SdpError("key-salt is not padded base64", field=f)
        for ch in b64.rstrip("="):
            if ch not in _B64:
                raise SdpError("key-salt has a non-base64 character", field=f)
        try:
            raw = binascii.a2b_base64(b64)
        except ValueError:
            raise SdpError("key-salt is not base64", field=f)
        lifetime = mki = mki_len = None
        for it in items[1:]:
            if ":" in it:
                a, _, b = it.partition(":")
                if not a.isdigit() or not b.isdigit() or len(a) > 9 or not 1 <= int(b) <= 128:
                    raise SdpError("bad MKI %r" % it[:20], field=f)
                mki, mki_len = int(a), int(b)
            elif it.startswith("2^"):
                if not it[2:].isdigit() or len(it) > 4:
                    raise SdpError("bad lifetime %r" % it[:20], field=f)
                lifetime = _lifetime(1 << int(it[2:]), it, f)
            elif it.isdigit() and len(it) < 21:
                lifetime = _lifetime(int(it), it, f)
            else:
                raise SdpError("bad key parameter %r" % it[:20], field=f)
        key = salt = None
        if suite in SUITES:
            klen, slen = SUITES[suite]
            if len(raw) != klen + slen:
                raise SdpError("%s needs %d octets of key||salt, got %d" % (suite, klen + slen, len(raw)),
                               field=f)
            key, salt = raw[:klen], raw[klen:]
        return cls(int(tag_text), suite, key, salt, lifetime, mki, mki_len, parts[3:])

    def weakened(self):
        """RFC 4568 §6.3: UNENCRYPTED_SRTP/SRTCP, UNAUTHENTICATED_SRTP, KDR, FEC_ORDER change how
        the keys protect media; only the window-size hint (WSH) leaves protection as we run it."""
        for p in self.session_params:
            if not p.startswith("WSH="):
                return True
        return False

    def __str__(self):
        b64 = binascii.b2a_base64(self.key + self.salt).decode().strip()
        s = "%d %s inline:%s" % (self.tag, self.suite, b64)
        if self.lifetime is not None:
            s += "|%d" % self.lifetime
        if self.mki is not None:
            s += "|%d:%d" % (self.mki, self.mki_length)
        return s


def _lifetime(n, text, f):
    # RFC 4568 §6.1: a packet count, at most what SRTP allows (RFC 3711 §9.2: 2^48)
    if n < 1 or n > MAX_LIFETIME:
        raise SdpError("lifetime %s outside 1..2^48 packets" % text[:20], field=f)
    return n


def new_crypto(tag, suite):
    klen, slen = SUITES[suite]
    raw = compat.random_bytes(klen + slen)
    return Crypto(tag, suite, raw[:klen], raw[klen:])


# --- offer/answer --------------------------------------------------------------------------------

class LocalMedia:
    """What this phone can do for one call: where it receives RTP and what it accepts."""

    def __init__(self, address, port, suites=PREFERENCE, codecs=(0, 8), telephone_event=101,
                 insecure=False):
        self.address = address
        self.port = port
        self.suites = suites
        self.codecs = codecs
        self.telephone_event = telephone_event
        self.insecure = insecure


class MediaParams:
    """The negotiated stream: where to send, which codec, and SRTP keys each way (None = plain)."""

    def __init__(self, remote_address, remote_port, payload_type, telephone_event, suite,
                 tx_key, tx_salt, rx_key, rx_salt, tx_lifetime=None, rx_lifetime=None):
        self.remote_address = remote_address
        self.remote_port = remote_port
        self.payload_type = payload_type
        self.codec = CODECS.get(payload_type)
        self.telephone_event = telephone_event
        self.suite = suite
        self.tx_key = tx_key
        self.tx_salt = tx_salt
        self.rx_key = rx_key
        self.rx_salt = rx_salt
        # RFC 4568 §6.1: the packet lifetime each master key's a=crypto line gave (None: the
        # RFC 3711 §9.2 maximum)
        self.tx_lifetime = tx_lifetime
        self.rx_lifetime = rx_lifetime

    @property
    def secure(self):
        return self.suite is not None


def _session_id():
    return str(int.from_bytes(compat.random_bytes(6), "big"))


def _audio_media(local, proto, pt_list, cryptos):
    fmts = [str(p) for p in pt_list]
    attrs = []
    for p in pt_list:
        if p in CODECS:
            attrs.append(("rtpmap", "%d %s/8000" % (p, CODECS[p])))
    if local.telephone_event is not None and str(local.telephone_event) in fmts:
        attrs.append(("rtpmap", "%d telephone-event/8000" % local.telephone_event))
        attrs.append(("fmtp", "%d 0-15" % local.telephone_event))
    for c in cryptos:
        attrs.append(("crypto", str(c)))
    attrs.append(("sendrecv", None))
    return Media("audio", local.port, proto, fmts, None, attrs)


def create_offer(local, signalling_secure):
    """Returns (SessionDescription, offered Crypto list). Keys come from compat.random_bytes."""
    if not local.insecure and not signalling_secure:
        raise NegotiationError("SDES keys must not be sent over signalling that is not TLS")
    sd = SessionDescription("- %s 1 IN IP4 %s" % (_session_id(), local.address), "-", local.address)
    pts = list(local.codecs)
    if local.telephone_event is not None:
        pts.append(local.telephone_event)
    if local.insecure and not local.suites:
        cryptos = []
        proto = "RTP/AVP"
    else:
        cryptos = [new_crypto(i + 1, s) for i, s in enumerate(local.suites)]
        proto = "RTP/SAVP"
    sd.media.append(_audio_media(local, proto, pts, cryptos))
    return sd, cryptos


def parse_rtpmap(value, field="a=rtpmap"):
    """RFC 4566 §6: `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<parameters>]`.
    Returns (payload type text, lower-case "name/rate[/params]"); raises SdpError."""
    if not isinstance(value, str):
        raise SdpError("a=rtpmap without a value", field=field)
    pt, sp, enc = value.partition(" ")
    if not sp or not pt.isdigit() or len(pt) > 3 or int(pt) > 127:
        raise SdpError("a=rtpmap needs '<payload type 0-127> <encoding>/<rate>', got %r"
                       % value[:40], field=field)
    enc = enc.strip()
    parts = enc.split("/")
    if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1].isdigit() \
            or len(parts[1]) > 9:
        raise SdpError("a=rtpmap encoding must be '<name>/<clock rate>[/<params>]', got %r"
                       % enc[:40], field=field)
    return pt, enc.lower()


def _rtpmap(m):
    out = {}
    for v in m.attr("rtpmap"):
        pt, enc = parse_rtpmap(v)
        out[pt] = enc
    return out


def _pick_codec(m, local):
    maps = _rtpmap(m)
    for f in m.formats:
        if not f.isdigit():
            continue
        pt = int(f)
        if pt in local.codecs:
            name = maps.get(f)
            if name is None or name.startswith(CODECS[pt].lower() + "/8000"):
                return pt
    return None


def _pick_te(m, local):
    if local.telephone_event is None:
        return None
    for pt, enc in _rtpmap(m).items():
        if enc.startswith("telephone-event/8000") and pt in m.formats:
            return int(pt)
    return None


def _check_security(m, signalling_secure, insecure):
    if m.proto == "RTP/SAVP":
        if not signalling_secure and not insecure:
            raise NegotiationError("SDES keys over signalling that is not TLS are refused")
        return True
    if m.proto == "RTP/AVP":
        if not insecure:
            raise NegotiationError("plain RTP is refused (no insecure mode)")
        return False
    raise NegotiationError("unsupported media protocol %s" % m.proto)


def create_answer(offer, local, signalling_secure):
    """RFC 3264 §6: answer the first audio stream, reject the others (port 0).
    Returns (SessionDescription, MediaParams) or raises NegotiationError."""
    if not isinstance(offer, SessionDescription):
        offer = SessionDescription.parse(offer)
    chosen = None
    answer = SessionDescription("- %s 1 IN IP4 %s" % (_session_id(), local.address), "-", local.address)
    params = None
    for m in offer.media:
        if chosen is not None or m.media != "audio" or m.port == 0:
            answer.media.append(Media(m.media, 0, m.proto, m.formats[:1]))
            continue
        secure = _check_security(m, signalling_secure, local.insecure)
        pt = _pick_codec(m, local)
        if pt is None:
            raise NegotiationError("no common codec (offered %s)" % " ".join(m.formats)[:60])
        te = _pick_te(m, local)
        remote_addr = m.connection or offer.connection
        if remote_addr is None:
            raise NegotiationError("offer has no connection address")
        suite = tx = rx = None
        if secure:
            offered = {}
            for v in m.attr("crypto"):
                try:
                    c = Crypto.parse(v)
                except SdpError:
                    continue    # RFC 4568 §7.1.1: ignore crypto lines we cannot use
                if c.key is None or c.mki is not None or c.suite not in local.suites or c.weakened():
                    continue
                if c.suite not in offered:
                    offered[c.suite] = c
            for s in PREFERENCE:
                if s in offered:
                    rx = offered[s]
                    break
            if rx is None:
                raise NegotiationError("no acceptable a=crypto suite offered")
            suite = rx.suite
            tx = new_crypto(rx.tag, suite)
        pts = [pt] + ([te] if te is not None else [])
        lm = LocalMedia(local.address, local.port, local.suites, local.codecs, te, local.insecure)
        answer.media.append(_audio_media(lm, m.proto, pts, [tx] if tx else []))
        params = MediaParams(remote_addr, m.port, pt, te, suite, tx.key if tx else None,
                             tx.salt if tx else None, rx.key if rx else None, rx.salt if rx else None,
                             tx.lifetime if tx else None, rx.lifetime if rx else None)
        chosen = m
    if params is None:
        raise NegotiationError("offer has no audio stream")
    return answer, params


def accept_answer(answer, offered, local, signalling_secure):
    """Offerer side: check the answer against what we offered; returns MediaParams."""
    if not isinstance(answer, SessionDescription):
        answer = SessionDescription.parse(answer)
    for m in answer.media:
        if m.media != "audio" or m.port == 0:
            continue
        secure = _check_security(m, signalling_secure, local.insecure)
        pt = _pick_codec(m, local)
        if pt is None:
            raise NegotiationError("answer has no codec we offered")
        te = _pick_te(m, local)
        remote_addr = m.connection or answer.connection
        if remote_addr is None:
            raise NegotiationError("answer has no connection address")
        if not secure:
            return MediaParams(remote_addr, m.port, pt, te, None, None, None, None, None)
        lines = m.attr("crypto")
        if len(lines) != 1:
            raise NegotiationError("answer must carry exactly one a=crypto, got %d" % len(lines))
        c = Crypto.parse(lines[0])
        mine = None
        for o in offered:
            if o.tag == c.tag:
                mine = o
        if c.weakened():
            raise NegotiationError("answer's a=crypto weakens protection: %s" % " ".join(c.session_params)[:60])
        if mine is None or mine.suite != c.suite or c.key is None or c.mki is not None:
            raise NegotiationError("answer's crypto does not match an offered tag and suite")
        return MediaParams(remote_addr, m.port, pt, te, c.suite, mine.key, mine.salt, c.key, c.salt,
                           mine.lifetime, c.lifetime)
    raise NegotiationError("answer accepted no audio stream")
