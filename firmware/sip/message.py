# SIP messages (RFC 3261 §7, grammar §25): parse from bytes, serialise back, and the header values
# a user agent reads (URIs, name-addr, Via, CSeq). Parsing never trusts the peer: every problem
# raises SipParseError naming the field, and the UA answers requests that fail with `status`
# (400 Bad Request, 505 for a foreign version) and the message as reason (RFC 4475 §3.1.2).

from firmware.errors import ParseError

# §7.3.3 compact forms (plus the RFC 3265/3515/4028 ones a UA may meet).
COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via",
    "o": "Event", "r": "Refer-To", "u": "Allow-Events", "x": "Session-Expires",
}
# Canonical spelling, so lookups are case-insensitive and serialisation is stable.
_CANON = {}
for _n in ("Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Authentication-Info",
           "Authorization", "Call-ID", "Call-Info", "Contact", "Content-Disposition",
           "Content-Encoding", "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date",
           "Error-Info", "Expires", "From", "In-Reply-To", "Max-Forwards", "Min-Expires",
           "MIME-Version", "Organization", "Priority", "Proxy-Authenticate", "Proxy-Authorization",
           "Proxy-Require", "Record-Route", "Reply-To", "Require", "Retry-After", "Route", "Server",
           "Subject", "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning",
           "WWW-Authenticate", "Event", "Refer-To", "Allow-Events", "Session-Expires", "Reason",
           "Path", "Service-Route"):
    _CANON[_n.lower()] = _n

# Headers whose grammar is a comma-separated list (§7.3.1: may be split over several lines).
# Auth headers and Date contain commas inside one value and are not here.
LIST_HEADERS = ("Via", "Contact", "Route", "Record-Route", "Allow", "Supported", "Require",
                "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language",
                "Path", "Service-Route", "Allow-Events", "Warning", "In-Reply-To")

# §25.1 token characters besides alphanumerics.
_TOKEN_EXTRA = "-.!%*_+`'~"
MAX_MESSAGE = 65536          # larger than any message a phone needs; bounds what a peer can make us hold
MAX_CSEQ = (1 << 31) - 1     # §8.1.1.5: CSeq MUST be less than 2**31
MAX_DELTA = (1 << 32) - 1
SIP_VERSION = "SIP/2.0"


class SipParseError(ParseError):
    """A SIP message or header value is malformed; `status` is what a UAS answers with."""

    def __init__(self, message, offset=None, field=None, status=400):
        ParseError.__init__(self, message, offset=offset, field=field)
        self.status = status
        self.reason = message


def canonical_name(name):
    low = name.lower()
    if len(low) == 1 and low in COMPACT:
        return COMPACT[low]
    return _CANON.get(low, name)


def is_token(s):
    if not s:
        return False
    for ch in s:
        if not (("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9") or ch in _TOKEN_EXTRA):
            return False
    return True


def _strip_ws(s):
    return s.strip(" \t")


def parse_uint(text, field, limit):
    """A run of digits (§25.1 1*DIGIT) no larger than `limit`; overlarge values are malformed."""
    if not text or not text.isdigit():
        raise SipParseError("not a decimal number: %r" % text[:40], field=field)
    if len(text) > 12 or int(text) > limit:
        raise SipParseError("value %s exceeds %d" % (text[:40], limit), field=field)
    return int(text)


def split_list(value, field):
    """Split a list header on commas outside quotes and <>; empty elements are malformed."""
    parts = []
    cur = []
    quote = False
    angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if quote:
            if ch == "\\" and i + 1 < n:
                cur.append(ch)
                i += 1
                ch = value[i]
            elif ch == '"':
                quote = False
        elif ch == '"':
            quote = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == "," and not angle:
            parts.append(_strip_ws("".join(cur)))
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    if quote:
        raise SipParseError("unterminated quoted string", field=field)
    parts.append(_strip_ws("".join(cur)))
    for p in parts:
        if not p:
            raise SipParseError("empty element in list", field=field)
    return parts


# --- parameters (§25.1 generic-param) ----------------------------------------------------------

# RFC 3261 §25.1: parameters whose grammar is `name EQUAL value` (a flag form is malformed)
VALUE_PARAMS = ("tag", "branch", "expires", "q", "ttl", "maddr", "received", "transport", "user",
                "method")


def parse_params(text, field):
    """';name[=value]' pairs after a URI or header value -> list of (lowercase name, value|None)."""
    params = []
    if not text:
        return params
    if text[0] != ";":
        raise SipParseError("expected ';' before parameters, got %r" % text[:20], field=field)
    for item in _split_outside_quotes(text[1:], ";"):
        item = _strip_ws(item)
        if not item:
            raise SipParseError("empty parameter", field=field)
        if "=" in item:
            name, _, val = item.partition("=")
            name = _strip_ws(name)
            val = _strip_ws(val)
            if not val:
                raise SipParseError("parameter %s has an empty value" % name, field=field)
            if val[0] == '"':
                if len(val) < 2 or val[-1] != '"':
                    raise SipParseError("unterminated quoted parameter value", field=field)
            elif not _is_param_value(val):
                raise SipParseError("bad characters in parameter value %r" % val[:40], field=field)
        else:
            name = item
            val = None
            if name.lower() in VALUE_PARAMS:
                # §25.1: tag-param, via-branch, c-p-expires... are `name EQUAL value`; a bare
                # `;tag` is malformed, not an empty tag
                raise SipParseError("parameter %s needs a value" % name.lower(), field=field)
        if not is_token(name):
            raise SipParseError("bad parameter name %r" % name[:40], field=field)
        params.append((name.lower(), val))
    return params


def _is_param_value(v):
    # token / host (IPv6 reference) characters
    for ch in v:
        if not (is_token(ch) or ch in "[]:"):
            return False
    return True


def _split_outside_quotes(text, sep):
    out = []
    cur = []
    quote = False
    for ch in text:
        if ch == '"':
            quote = not quote
        if ch == sep and not quote:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def format_params(params):
    out = []
    for name, val in params:
        out.append(";" + name if val is None else ";%s=%s" % (name, val))
    return "".join(out)


def get_param(params, name, default=None):
    for k, v in params:
        if k == name:
            return "" if v is None else v
    return default


def set_param(params, name, value):
    for i in range(len(params)):
        if params[i][0] == name:
            params[i] = (name, value)
            return
    params.append((name, value))


# --- URIs (§19.1, §25.1) -----------------------------------------------------------------------

_URI_BAD = " \t\r\n<>\""


class SipUri:
    """sip:/sips: URI. `user` keeps escapes as received (§19.1.4 compares unescaped)."""

    def __init__(self, scheme, host, user=None, port=None, params=None, headers=None, password=None):
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = params if params is not None else []
        self.headers = headers

    @classmethod
    def parse(cls, text, field="uri"):
        for ch in text:
            if ch in _URI_BAD or ord(ch) < 0x21:
                raise SipParseError("illegal character %r in URI" % ch, field=field)
        scheme, colon, rest = text.partition(":")
        if not colon or not scheme:
            raise SipParseError("URI has no scheme: %r" % text[:60], field=field)
        scheme = scheme.lower()
        if scheme not in ("sip", "sips"):
            # Other schemes (tel:, http:) are kept opaque: a UA only routes with SIP URIs.
            return AbsoluteUri(scheme, rest)
        user = password = None
        if "@" in rest:
            # '@' cannot appear unescaped in params or headers, while the user part may hold
            # ';', '?' and ',' (RFC 4475 §3.1.1.2, §3.1.1.9): split at the last '@'.
            at = rest.rfind("@")
            userinfo, rest = rest[:at], rest[at + 1:]
            if not userinfo:
                raise SipParseError("empty user part before '@'", field=field)
            if ":" in userinfo:
                userinfo, _, password = userinfo.partition(":")
            user = userinfo
        headers = None
        if "?" in rest:
            rest, _, headers = rest.partition("?")
            if not headers:
                raise SipParseError("empty URI headers", field=field)
        hostport, semi, ptext = rest.partition(";")
        params = parse_params(semi + ptext, field) if semi else []
        host, port = parse_hostport(hostport, field)
        return cls(scheme, host, user, port, params, headers, password)

    def param(self, name, default=None):
        return get_param(self.params, name, default)

    def host_port(self):
        return format_hostport(self.host, self.port)

    def __str__(self):
        s = self.scheme + ":"
        if self.user is not None:
            s += self.user
            if self.password is not None:
                s += ":" + self.password
            s += "@"
        s += self.host_port() + format_params(self.params)
        if self.headers:
            s += "?" + self.headers
        return s

    def copy(self):
        return SipUri(self.scheme, self.host, self.user, self.port, list(self.params), self.headers,
                      self.password)


class AbsoluteUri:
    """A URI with a scheme this UA does not route on; kept as text."""

    def __init__(self, scheme, rest):
        self.scheme = scheme
        self.rest = rest
        self.params = []
        self.user = None
        self.host = None
        self.port = None
        self.headers = None

    def param(self, name, default=None):
        return default

    def __str__(self):
        return self.scheme + ":" + self.rest


def parse_hostport(text, field):
    if not text:
        raise SipParseError("missing host", field=field)
    port = None
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            raise SipParseError("unterminated IPv6 reference", field=field)
        host = text[:end + 1]
        rest = text[end + 1:]
        if rest:
            if rest[0] != ":":
                raise SipParseError("junk after IPv6 reference", field=field)
            port = parse_uint(rest[1:], field, 65535)
    else:
        host, colon, ptext = text.partition(":")
        if colon:
            port = parse_uint(ptext, field, 65535)
        for ch in host:
            if not (("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9") or ch in "-._"):
                raise SipParseError("illegal character %r in host" % ch, field=field)
        if not host:
            raise SipParseError("missing host", field=field)
    return host, port


def format_hostport(host, port):
    return host if port is None else "%s:%d" % (host, port)


# --- name-addr / addr-spec (§20.10, §25.1) -----------------------------------------------------

class NameAddr:
    """From/To/Contact/Route value: optional display name, URI, header parameters (tag, expires)."""

    def __init__(self, uri, display=None, params=None, angle=True):
        self.uri = uri
        self.display = display
        self.params = params if params is not None else []
        self.angle = angle

    @classmethod
    def parse(cls, text, field):
        text = _strip_ws(text)
        if not text:
            raise SipParseError("empty address", field=field)
        if text == "*":
            return cls(None, params=[], angle=False)
        display = None
        if text[0] == '"':
            end = _quoted_end(text, 0, field)
            display = text[:end + 1]
            text = _strip_ws(text[end + 1:])
            if not text.startswith("<"):
                raise SipParseError("quoted display name not followed by <URI>", field=field)
        lt = text.find("<")
        if lt >= 0:
            if display is None and lt > 0:
                disp = _strip_ws(text[:lt])
                # §25.1 display-name = *(token LWS) / quoted-string (RFC 4475 §3.1.2.15)
                for word in disp.split():
                    if not is_token(word):
                        raise SipParseError("display name %r has non-token characters; quote it"
                                            % disp[:40], field=field)
                display = disp
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError("missing '>' after URI", field=field)
            uri = SipUri.parse(text[lt + 1:gt], field)
            params = parse_params(_strip_ws(text[gt + 1:]), field)
            return cls(uri, display, params, True)
        # addr-spec without <>: §20 - then a ';' starts header parameters, and a URI with '?' or
        # ',' MUST have been enclosed (RFC 4475 §3.1.2.13, §3.1.2.14).
        uri_text, semi, ptext = text.partition(";")
        uri_text = _strip_ws(uri_text)
        if "?" in uri_text:
            raise SipParseError("URI with headers must be enclosed in <>", field=field)
        if " " in uri_text or "\t" in uri_text:
            raise SipParseError("whitespace inside addr-spec", field=field)
        uri = SipUri.parse(uri_text, field)
        params = parse_params(semi + ptext, field) if semi else []
        return cls(uri, None, params, False)

    def param(self, name, default=None):
        return get_param(self.params, name, default)

    @property
    def tag(self):
        return get_param(self.params, "tag")

    def __str__(self):
        if self.uri is None:
            return "*"
        s = ""
        if self.display:
            s = self.display + " "
        if self.angle or self.display:
            s += "<" + str(self.uri) + ">"
        else:
            s += str(self.uri)
        return s + format_params(self.params)


def _quoted_end(text, start, field):
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i
        i += 1
    raise SipParseError("unterminated quoted string", field=field)


# --- Via (§20.42) ------------------------------------------------------------------------------

class Via:
    def __init__(self, transport, host, port=None, params=None):
        self.transport = transport
        self.host = host
        self.port = port
        self.params = params if params is not None else []

    @classmethod
    def parse(cls, text, field="Via"):
        text = _strip_ws(text)
        proto, _, rest = _split_ws(text)
        parts = [_strip_ws(p) for p in proto.split("/")]
        if len(parts) != 3 or parts[0].upper() != "SIP" or parts[1] != "2.0" or not is_token(parts[2]):
            raise SipParseError("bad sent-protocol %r" % proto[:40], field=field)
        sent_by, semi, ptext = rest.partition(";")
        host, port = parse_hostport(_strip_ws(sent_by), field)
        params = parse_params(semi + ptext, field) if semi else []
        return cls(parts[2].upper(), host, port, params)

    @property
    def branch(self):
        return get_param(self.params, "branch")

    def param(self, name, default=None):
        return get_param(self.params, name, default)

    def __str__(self):
        return "SIP/2.0/%s %s%s" % (self.transport, format_hostport(self.host, self.port),
                                    format_params(self.params))


def _split_ws(text):
    # sent-protocol LWS sent-by: LWS may surround the '/' too (RFC 4475 §3.1.1.1)
    i = 0
    n = len(text)
    # advance over the protocol, allowing spaces next to '/'
    while i < n:
        if text[i] in " \t":
            j = i
            while j < n and text[j] in " \t":
                j += 1
            if (j < n and text[j] == "/") or (i > 0 and text[i - 1] == "/"):
                i = j
                continue
            return text[:i], " ", _strip_ws(text[j:])
        i += 1
    raise SipParseError("missing sent-by", field="Via")


class CSeq:
    def __init__(self, seq, method):
        self.seq = seq
        self.method = method

    @classmethod
    def parse(cls, text):
        parts = text.split()
        if len(parts) != 2:
            raise SipParseError("expected 'number method', got %r" % text[:40], field="CSeq")
        seq = parse_uint(parts[0], "CSeq", MAX_CSEQ)
        if not is_token(parts[1]):
            raise SipParseError("bad method %r" % parts[1][:40], field="CSeq")
        return cls(seq, parts[1])

    def __str__(self):
        return "%d %s" % (self.seq, self.method)


# --- messages -----------------------------------------------------------------------------------

class Message:
    """Common part of requests and responses: ordered headers and a body."""

    def __init__(self, headers=None, body=b""):
        self.headers = headers if headers is not None else []  # list of [name, value]
        self.body = body

    def get(self, name, default=None):
        name = canonical_name(name)
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def get_all(self, name):
        """All values of a header; list headers are split on commas (§7.3.1)."""
        name = canonical_name(name)
        out = []
        for k, v in self.headers:
            if k == name:
                if name in LIST_HEADERS:
                    out.extend(split_list(v, name))
                else:
                    out.append(v)
        return out

    def add(self, name, value):
        self.headers.append([canonical_name(name), str(value)])

    def set(self, name, value):
        name = canonical_name(name)
        self.remove(name)
        self.headers.append([name, str(value)])

    def remove(self, name):
        name = canonical_name(name)
        self.headers = [h for h in self.headers if h[0] != name]

    # typed accessors (each raises SipParseError on a malformed value)
    @property
    def call_id(self):
        return self.get("Call-ID")

    @property
    def cseq(self):
        return CSeq.parse(self.get("CSeq", ""))

    @property
    def from_(self):
        return NameAddr.parse(self.get("From", ""), "From")

    @property
    def to(self):
        return NameAddr.parse(self.get("To", ""), "To")

    @property
    def vias(self):
        return [Via.parse(v) for v in self.get_all("Via")]

    @property
    def via(self):
        vals = self.get_all("Via")
        if not vals:
            raise SipParseError("missing Via", field="Via")
        return Via.parse(vals[0])

    def contacts(self):
        return [NameAddr.parse(v, "Contact") for v in self.get_all("Contact")]

    def _serialize(self, start):
        out = [start, "\r\n"]
        body = self.body or b""
        for k, v in self.headers:
            if k == "Content-Length":
                continue
            out.append("%s: %s\r\n" % (k, v))
        out.append("Content-Length: %d\r\n\r\n" % len(body))
        return "".join(out).encode() + body

    def __bytes__(self):
        return self.serialize()


class Request(Message):
    def __init__(self, method, uri, headers=None, body=b""):
        Message.__init__(self, headers, body)
        self.method = method
        self.uri = uri

    def serialize(self):
        return self._serialize("%s %s %s" % (self.method, self.uri, SIP_VERSION))

    def __repr__(self):
        return "<Request %s %s>" % (self.method, self.uri)


class Response(Message):
    def __init__(self, status, reason="", headers=None, body=b""):
        Message.__init__(self, headers, body)
        self.status = status
        self.reason = reason

    def serialize(self):
        return self._serialize("%s %d %s" % (SIP_VERSION, self.status, self.reason))

    def __repr__(self):
        return "<Response %d %s>" % (self.status, self.reason)


def parse_message(data, stream=False):
    """Parse one complete message. For datagrams the body is framed by Content-Length when present
    and octets after it are ignored (RFC 3261 §18.3, RFC 4475 §3.1.1.8)."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError("message larger than %d octets" % MAX_MESSAGE, field="message")
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise SipParseError("no empty line after the headers", field="message")
    try:
        head = bytes(data[:end]).decode("utf-8")
    except UnicodeError:
        raise SipParseError("headers are not UTF-8", field="message")
    msg = _parse_head(head)
    rest = bytes(data[end + 4:])
    cl = msg.get("Content-Length")
    if cl is None:
        if stream:
            raise SipParseError("Content-Length is mandatory on stream transports", field="Content-Length")
        msg.body = rest
    else:
        n = _content_length(msg)
        if n > len(rest):
            raise SipParseError("Content-Length %d larger than the %d octets of body" % (n, len(rest)),
                                field="Content-Length")
        msg.body = rest[:n]
    _validate(msg)
    return msg


def _content_length(msg):
    vals = [v for k, v in msg.headers if k == "Content-Length"]
    if len(vals) != 1:
        raise SipParseError("%d Content-Length headers" % len(vals), field="Content-Length")
    return parse_uint(_strip_ws(vals[0]), "Content-Length", MAX_MESSAGE)


def _parse_head(head):
    # §7.3.1: a line starting with whitespace continues the previous header (folding).
    lines = head.split("\r\n")
    start = lines[0]
    msg = _parse_start_line(start)
    offset = len(start) + 2
    for line in lines[1:]:
        if not line:
            raise SipParseError("empty line inside the headers", offset=offset, field="header")
        if line[0] in " \t":
            if not msg.headers:
                raise SipParseError("continuation line before any header", offset=offset, field="header")
            _check_controls(line, msg.headers[-1][0], offset)
            msg.headers[-1][1] = _strip_ws(msg.headers[-1][1] + " " + _strip_ws(line))
        else:
            name, colon, value = line.partition(":")
            name = _strip_ws(name)
            if not colon or not is_token(name):
                raise SipParseError("malformed header line %r" % line[:40], offset=offset, field="header")
            _check_controls(value, name, offset)
            msg.headers.append([canonical_name(name), _strip_ws(value)])
        offset += len(line) + 2
    return msg


def _check_controls(value, name, offset):
    prev = ""
    for ch in value:
        # §25.1 quoted-pair may escape any octet but CR/LF (RFC 4475 §3.1.1.2)
        if ord(ch) < 0x20 and ch != "\t" and prev != "\\":
            raise SipParseError("control character in header %s" % name, offset=offset, field=name)
        prev = ch


def _parse_start_line(line):
    if line.startswith(SIP_VERSION + " ") or line.startswith("SIP/") and not line.startswith("SIP/2.0/"):
        ver, sp, rest = line.partition(" ")
        if ver != SIP_VERSION:
            raise SipParseError("unsupported version %r" % ver[:20], offset=0, field="status-line")
        code, sp2, reason = rest.partition(" ")
        if len(code) != 3 or not code.isdigit() or code[0] not in "123456" or not sp2:
            raise SipParseError("bad status code %r" % code[:20], offset=len(ver) + 1, field="status-line")
        for ch in reason:
            if ord(ch) < 0x20 and ch != "\t":
                raise SipParseError("control character in reason phrase", field="status-line")
        return Response(int(code), reason)
    # §7.1 Request-Line = Method SP Request-URI SP SIP-Version CRLF: exactly single spaces
    # (RFC 4475 §3.1.2.8-10 reject extra or trailing whitespace).
    parts = line.split(" ")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise SipParseError("request line must be 'METHOD URI SIP/2.0' with single spaces",
                            offset=0, field="request-line")
    method, uri_text, version = parts
    if not is_token(method):
        raise SipParseError("bad method %r" % method[:20], offset=0, field="request-line")
    if version != SIP_VERSION:
        raise SipParseError("unsupported version %r" % version[:20], offset=len(method) + len(uri_text) + 2,
                            field="request-line", status=505)
    if uri_text[0] == "<":
        raise SipParseError("Request-URI must not be enclosed in <>", offset=len(method) + 1,
                            field="request-line")
    uri = SipUri.parse(uri_text, "Request-URI")
    if uri.headers is not None:
        # §19.1.1 table: the headers component is not allowed in a Request-URI (RFC 4475 §3.1.2.11)
        raise SipParseError("Request-URI must not carry headers", offset=len(method) + 1, field="Request-URI")
    return Request(method, uri)


_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")


def _validate(msg):
    """Check the fields the UA relies on (§8.1.1, §8.2), so a bad value fails here, once."""
    for name in _REQUIRED:
        if msg.get(name) is None:
            raise SipParseError("missing mandatory header", field=name)
    for name in ("Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length", "Expires"):
        if len([1 for k, _ in msg.headers if k == name]) > 1:
            raise SipParseError("header appears more than once", field=name)
    cseq = msg.cseq
    if isinstance(msg, Request) and cseq.method != msg.method:
        raise SipParseError("CSeq method %s does not match %s" % (cseq.method, msg.method), field="CSeq")
    if not msg.call_id or " " in msg.call_id:
        raise SipParseError("bad Call-ID", field="Call-ID")
    msg.from_
    msg.to
    for v in msg.vias:
        pass
    mf = msg.get("Max-Forwards")
    if mf is not None:
        parse_uint(mf, "Max-Forwards", 255)
    exp = msg.get("Expires")
    if exp is not None:
        parse_uint(exp, "Expires", MAX_DELTA)
    for c in msg.contacts():
        e = c.param("expires")
        if e is not None:
            parse_uint(e, "Contact", MAX_DELTA)
    date = msg.get("Date")
    if date is not None:
        _check_date(date)
    for w in msg.get_all("Warning"):
        code = w.split(" ", 1)[0]
        if len(code) != 3 or not code.isdigit():
            raise SipParseError("warn-code must be 3 digits", field="Warning")
    ra = msg.get("Retry-After")
    if ra is not None:
        parse_uint(ra.split(";")[0].split("(")[0].strip(), "Retry-After", MAX_DELTA)


def _check_date(value):
    # §25.1 SIP-date = rfc1123-date, always "GMT" (RFC 4475 §3.1.2.12)
    parts = value.split()
    if len(parts) != 6 or parts[5] != "GMT" or not parts[0].endswith(","):
        raise SipParseError("Date must be an RFC 1123 date in GMT", field="Date")


class StreamFramer:
    """Splits a TLS/TCP byte stream into messages by Content-Length (§18.3).

    CRLF keep-alives between messages are consumed (RFC 5626 §3.5.1): a double CRLF "ping" is
    reported so the UA can answer with a single CRLF "pong"; a lone CRLF is a pong.
    """

    def __init__(self):
        self._buf = b""

    def feed(self, data):
        """Returns a list of items: ("message", Message), ("ping", None), ("pong", None).
        Raises SipParseError when the stream is corrupt (the connection must then be closed)."""
        self._buf += bytes(data)
        out = []
        while True:
            if self._buf.startswith(b"\r\n\r\n"):
                self._buf = self._buf[4:]
                out.append(("ping", None))
                continue
            if self._buf.startswith(b"\r\n"):
                if len(self._buf) < 4 and b"\r\n\r\n".startswith(self._buf):
                    # could be the start of a ping; wait unless the peer stops here
                    if self._buf == b"\r\n":
                        self._buf = b""
                        out.append(("pong", None))
                    break
                self._buf = self._buf[2:]
                out.append(("pong", None))
                continue
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_MESSAGE:
                    raise SipParseError("header section exceeds %d octets" % MAX_MESSAGE, field="stream")
                break
            head = self._buf[:end]
            clen = _stream_content_length(head)
            total = end + 4 + clen
            if len(self._buf) < total:
                break
            raw = self._buf[:total]
            self._buf = self._buf[total:]
            out.append(("message", raw))
        return out


def _stream_content_length(head):
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        n = name.strip().lower()
        if colon and (n == b"content-length" or n == b"l"):
            v = value.strip()
            if not v.isdigit() or len(v) > 6 or int(v) > MAX_MESSAGE:
                raise SipParseError("bad Content-Length on stream", field="Content-Length")
            return int(v)
    raise SipParseError("Content-Length is mandatory on stream transports", field="Content-Length")
