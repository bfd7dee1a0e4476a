# SIP message bodies with more than one part (RFC 5621, over RFC 2046 §5.1 multipart/mixed), for
# carrying attestation evidence beside the SDP offer/answer. Sans-I/O: build() makes the body and
# its Content-Type value, split() takes a received body apart. Parsing trusts nothing: every problem
# raises BodyError naming what was wrong, with the status a UAS answers (400, or 415 for a part it
# must understand and does not, RFC 5621 §9.1).
#
# Why a body part and not a header: evidence is ~5-20 KB (quote, AK certificate, two event logs);
# proxies relay bodies untouched (RFC 3261 §16.6: a proxy does not modify the body) while large
# headers hit proxy limits. An ordinary UA that understands multipart/mixed finds the SDP part
# (disposition "session") and ignores the evidence part (handling=optional, RFC 3261 §20.11,
# RFC 5621 §3.2).

from firmware import compat
from firmware.sip.message import SipParseError, parse_params, get_param, is_token

SDP_TYPE = "application/sdp"
EVIDENCE_TYPE = "application/vnd.trusted-phone.evidence+json"
# RFC 3261 §20.11 allows extension disposition types; handling=optional tells a UA that does not
# know it to ignore the part instead of failing the request (RFC 5621 §3.2)
EVIDENCE_DISPOSITION = "attestation;handling=optional"
MAX_PARTS = 8          # more than any offer this phone accepts; bounds what a peer makes us parse
BOUNDARY_MAX = 70      # RFC 2046 §5.1.1: 1-70 characters


class BodyError(SipParseError):
    """A multipart body (or its Content-Type) is malformed; `status` is what a UAS answers."""

    def __init__(self, message, status=400):
        SipParseError.__init__(self, message, field="body", status=status)


class Part:
    def __init__(self, content_type, disposition, handling, content):
        self.content_type = content_type      # lowercase type/subtype, parameters dropped
        self.disposition = disposition        # lowercase disposition type or None
        self.handling = handling              # "optional" or "required" (RFC 3261 §20.11 default)
        self.content = content                # bytes


def new_boundary():
    # random: it must not occur in the parts (RFC 2046 §5.1.1); build() checks anyway
    return "tp-" + compat.random_bytes(12).hex()


def build(sdp, evidence, boundary=None):
    """(content_type, body) for an SDP body with an evidence part. `sdp` and `evidence` are bytes."""
    if boundary is None:
        boundary = new_boundary()
    if not 0 < len(boundary) <= BOUNDARY_MAX or not is_token(boundary):
        raise ValueError("multipart boundary %r is not a 1-70 character token" % boundary[:80])
    delim = ("--" + boundary).encode()
    if delim in sdp or delim in evidence:
        raise ValueError("multipart boundary occurs in a part")
    out = [delim, b"\r\nContent-Type: ", SDP_TYPE.encode(), b"\r\nContent-Disposition: session\r\n\r\n",
           sdp, b"\r\n", delim, b"\r\nContent-Type: ", EVIDENCE_TYPE.encode(),
           b"\r\nContent-Disposition: ", EVIDENCE_DISPOSITION.encode(), b"\r\n\r\n", evidence,
           b"\r\n", delim, b"--\r\n"]
    return "multipart/mixed;boundary=" + boundary, b"".join(out)


def media_type(content_type):
    """(lowercase "type/subtype", params) of a Content-Type value; BodyError when malformed."""
    text = content_type or ""
    semi = text.find(";")
    mtype = (text if semi < 0 else text[:semi]).strip().lower()
    kind, slash, sub = mtype.partition("/")
    if not slash or not is_token(kind) or not is_token(sub):
        raise BodyError("Content-Type %r is not type/subtype" % text[:60])
    try:
        params = parse_params(text[semi:].strip() if semi >= 0 else "", "Content-Type")
    except SipParseError as e:
        raise BodyError("Content-Type parameters: %s" % e.reason)
    return mtype, params


def split(content_type, body):
    """The parts of a multipart/mixed body, in order. BodyError names what is malformed."""
    mtype, params = media_type(content_type)
    if mtype != "multipart/mixed":
        raise BodyError("body is %s, not multipart/mixed" % mtype, 415)
    boundary = get_param(params, "boundary")
    if boundary and len(boundary) >= 2 and boundary[0] == '"' and boundary[-1] == '"':
        boundary = boundary[1:-1]
    if not boundary or len(boundary) > BOUNDARY_MAX:
        raise BodyError("multipart/mixed without a 1-70 character boundary")
    delim = b"--" + boundary.encode()
    body = bytes(body)
    # RFC 2046 §5.1.1: the CRLF before a delimiter belongs to the delimiter; the first one may
    # start the body
    if body.startswith(delim):
        pos = 0
    else:
        pos = body.find(b"\r\n" + delim)
        if pos < 0:
            raise BodyError("multipart body has no boundary line")
        pos += 2
    parts = []
    while True:
        after = pos + len(delim)
        if body[after:after + 2] == b"--":
            break                                   # close-delimiter: the epilogue is ignored
        eol = body.find(b"\r\n", after)
        if eol < 0 or body[after:eol].strip(b" \t"):
            raise BodyError("multipart boundary line has trailing characters")
        nxt = body.find(b"\r\n" + delim, eol)
        if nxt < 0:
            raise BodyError("multipart body has no close-delimiter")
        if len(parts) == MAX_PARTS:
            raise BodyError("multipart body has more than %d parts" % MAX_PARTS)
        parts.append(_part(body[eol + 2:nxt], len(parts) + 1))
        pos = nxt + 2
    if not parts:
        raise BodyError("multipart body has no parts")
    return parts


def _part(raw, n):
    # RFC 2046 §5.1.1: part headers, an empty line, then the content (no headers: CRLF at once)
    if raw.startswith(b"\r\n"):
        head, content = b"", raw[2:]
    else:
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            raise BodyError("multipart part %d has no empty line after its headers" % n)
        head, content = raw[:end], raw[end + 4:]
    try:
        text = head.decode("utf-8")
    except UnicodeError:
        raise BodyError("multipart part %d headers are not UTF-8" % n)
    ctype = "text/plain"                            # RFC 2046 §5.1: the default in multipart/mixed
    disposition = None
    handling = "required"                           # RFC 3261 §20.11: missing handling = required
    for line in text.split("\r\n") if text else []:
        name, colon, value = line.partition(":")
        if not colon:
            raise BodyError("multipart part %d has a malformed header line %r" % (n, line[:40]))
        name = name.strip().lower()
        value = value.strip()
        if name == "content-type":
            ctype = media_type(value)[0]
        elif name == "content-disposition":
            semi = value.find(";")
            dtype = (value if semi < 0 else value[:semi]).strip().lower()
            if not is_token(dtype):
                raise BodyError("multipart part %d: bad Content-Disposition %r" % (n, value[:40]))
            try:
                dparams = parse_params(value[semi:].strip() if semi >= 0 else "", "Content-Disposition")
            except SipParseError as e:
                raise BodyError("multipart part %d Content-Disposition: %s" % (n, e.reason))
            disposition = dtype
            h = get_param(dparams, "handling")
            if h is not None:
                handling = h.lower()
        elif name == "content-transfer-encoding":
            # RFC 5621 §3.1 allows only identity encodings in SIP (binary, 8bit, 7bit)
            if value.lower() not in ("binary", "8bit", "7bit"):
                raise BodyError("multipart part %d: Content-Transfer-Encoding %s is not supported"
                                % (n, value[:20]), 415)
    return Part(ctype, disposition, handling, content)


def sdp_and_evidence(content_type, body):
    """(sdp bytes or None, evidence bytes or None, content type) of a request or response body:
    a plain SDP body, or multipart/mixed with one SDP part and at most one evidence part. Parts we
    do not understand are ignored when optional and refused (415) when required (RFC 5621 §9.1)."""
    mtype = media_type(content_type)[0] if content_type else None
    if mtype != "multipart/mixed":
        return (body if mtype == SDP_TYPE else None), None, mtype
    sdp = evidence = None
    for p in split(content_type, body):
        if p.content_type == SDP_TYPE and p.disposition in (None, "session"):
            if sdp is not None:
                raise BodyError("multipart body has two SDP parts")
            sdp = p.content
        elif p.content_type == EVIDENCE_TYPE:
            if evidence is not None:
                raise BodyError("multipart body has two evidence parts")
            evidence = p.content
        elif p.handling != "optional":
            raise BodyError("multipart part %s (%s) is required and not understood"
                            % (p.content_type, p.disposition or "no disposition"), 415)
    return sdp, evidence, SDP_TYPE if sdp is not None else mtype
