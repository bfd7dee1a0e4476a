# X.509 and ECDSA checks for the appraiser, through `cryptography` (OpenSSL). The phone's image
# ships python3-cryptography (host_tools/image/userland.py) and the host has it; MicroPython has
# neither an ASN.1 parser nor P-256, so there available() is False and the appraiser fails closed
# ("no X.509/ECDSA support on this runtime") rather than judging without checking.
#
# Written against cryptography 38 (Debian bookworm, the image) and newer (the host's venv).

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
except ImportError:  # MicroPython, or a CPython without cryptography
    x509 = None


class PkiError(ValueError):
    """A certificate or signature check failed; the message says which and why."""


def available():
    return x509 is not None


def _need():
    if x509 is None:
        raise PkiError("no X.509/ECDSA support on this runtime (cryptography is missing)")


def load_cert(pem, what):
    _need()
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii") if isinstance(pem, str) else pem)
    except (ValueError, UnicodeError) as e:
        raise PkiError("%s is not a PEM X.509 certificate (%s)" % (what, str(e)[:80]))


def _validity(cert):
    before = getattr(cert, "not_valid_before_utc", None)
    if before is None:  # cryptography < 42: naive datetimes in UTC
        return cert.not_valid_before.timestamp() if cert.not_valid_before.tzinfo else \
            _naive_utc(cert.not_valid_before), \
            cert.not_valid_after.timestamp() if cert.not_valid_after.tzinfo else \
            _naive_utc(cert.not_valid_after)
    return before.timestamp(), cert.not_valid_after_utc.timestamp()


def _naive_utc(dt):
    import calendar
    return calendar.timegm(dt.utctimetuple())


def _subject(cert):
    return cert.subject.rfc4514_string()


def _verify_cert_signature(cert, issuer_cert):
    """RFC 5280 §6.1.3 (a)(1): the issuer's key verifies the certificate's signature."""
    key = issuer_cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise PkiError("device CA '%s' does not have an EC key" % _subject(issuer_cert))
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    except InvalidSignature:
        raise PkiError("AK certificate signature does not verify with device CA '%s'"
                       % _subject(issuer_cert))


def _is_ca(cert):
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bool(bc.ca)


def chain(ak_cert_pem, ca_pems):
    """-> (ak certificate, issuing CA certificate, one-line detail) when the AK certificate is
    issued by one of the device CAs (issuer name, CA's basicConstraints, signature); validity
    in time is check_times'. PkiError otherwise, naming the reason."""
    cert = load_cert(ak_cert_pem, "ak_cert")
    reasons = []
    for i, pem in enumerate(ca_pems):
        ca = load_cert(pem, "device CA %d" % i)
        if cert.issuer != ca.subject:
            reasons.append("issuer '%s' is not device CA '%s'" % (cert.issuer.rfc4514_string(),
                                                                   _subject(ca)))
            continue
        if not _is_ca(ca):
            reasons.append("device CA '%s' lacks basicConstraints CA:true" % _subject(ca))
            continue
        try:
            _verify_cert_signature(cert, ca)
        except PkiError as e:
            reasons.append(str(e))
            continue
        return cert, ca, "issued by device CA '%s'" % _subject(ca)
    raise PkiError("AK certificate does not chain to a device CA: " + "; ".join(reasons))


def check_times(cert, ca, now):
    """PkiError unless both certificates are valid at `now` (seconds since the epoch; RFC 5280
    §4.1.2.5); `now` None checks nothing. -> the detail's suffix."""
    if now is None:
        return " (validity not checked: no time given)"
    for what, c in (("AK certificate", cert), ("device CA '%s'" % _subject(ca), ca)):
        lo, hi = _validity(c)
        if not lo <= now <= hi:
            raise PkiError("%s is not valid at this time" % what)
    return ""


def check_chain(ak_cert_pem, ca_pems, now=None):
    """chain() and, if `now` is given, both certificates within their validity:
    -> (ak certificate object, one-line detail); PkiError otherwise."""
    cert, ca, detail = chain(ak_cert_pem, ca_pems)
    return cert, detail + check_times(cert, ca, now)


def spki_der(public_key):
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_key_matches(cert, ak_pub_pem):
    """True when `ak_pub` is the certified key (DER SubjectPublicKeyInfo equal)."""
    _need()
    try:
        pub = serialization.load_pem_public_key(ak_pub_pem.encode("ascii"))
    except (ValueError, UnicodeError):
        return False
    return spki_der(pub) == spki_der(cert.public_key())


def check_p256(cert):
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise PkiError("the AK certificate's key is not ECC NIST P-256")
    return key


def verify_ecdsa_sha256(key, message, r, s):
    """ECDSA-SHA256 (FIPS 186-4) over `message` with the signature's r, s (big-endian bytes)."""
    sig = encode_dss_signature(int.from_bytes(bytes(r), "big"), int.from_bytes(bytes(s), "big"))
    try:
        key.verify(sig, bytes(message), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
