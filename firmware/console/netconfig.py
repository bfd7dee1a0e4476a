# The phone's SIP and media settings from the signed device-config component (JSON; measured into
# PCR 14 with the rest of the bundle). Parse first, with a ValueError that names the field; the
# phone starts only from settings that parsed. Sans-I/O, MicroPython-compatible.
#
# device-config fields used here (board/qemu-x86_64/device-config.json):
#   sip.registrar        host/IP of the registrar (TLS), e.g. "10.0.2.2" (the host under QEMU)
#   sip.port             its TLS port (default 5061)
#   sip.domain           the SIP domain of the account (To/From host)
#   sip.tls_server_name  the name the server certificate must carry (default: sip.registrar)
#   sip.srtp_profiles    suites offered, strongest first (subset of firmware.sip.sdp.PREFERENCE)
#   sip.keepalive_s      CRLF keep-alive interval (RFC 5626 §4.4.1; default: the UA's)
#   media.bind / media.port / media.advertise
#                        where RTP binds (fixed even port, RTCP +1) and the address the SDP gives
#   network.address_map  {"address in a peer's SDP": "address to send media to"}: a board quirk
#                        (QEMU user networking: the host's 127.0.0.1 is 10.0.2.2 in the guest)
#   min_remote_integrity the least integrity level a call's remote party must show (one of
#                        firmware.attest.levels; default "unattested": ordinary SIP phones work,
#                        evidence that fails does not; docs/attestation.md)

from firmware.sip.sdp import PREFERENCE

DEFAULT_TLS_PORT = 5061


def _field(d, key, kind, where, default=None, required=False):
    if key not in d:
        if required:
            raise ValueError("device-config: %s.%s is missing" % (where, key))
        return default
    v = d[key]
    if kind is int and (not isinstance(v, int) or isinstance(v, bool)):
        raise ValueError("device-config: %s.%s must be an integer, got %r" % (where, key, v))
    if kind is str and (not isinstance(v, str) or not v):
        raise ValueError("device-config: %s.%s must be a non-empty string" % (where, key))
    if kind is dict and not isinstance(v, dict):
        raise ValueError("device-config: %s.%s must be an object" % (where, key))
    if kind is list and not isinstance(v, list):
        raise ValueError("device-config: %s.%s must be a list" % (where, key))
    return v


def _port(v, what):
    if not 0 < v < 65536:
        raise ValueError("device-config: %s %d is not a port number" % (what, v))
    return v


def phone_settings(config):
    """A dict of ready-to-use settings from the parsed device-config JSON object."""
    if not isinstance(config, dict):
        raise ValueError("device-config: not a JSON object")
    sip = _field(config, "sip", dict, "device-config", required=True)
    media = _field(config, "media", dict, "device-config", {})
    net = _field(config, "network", dict, "device-config", {})
    out = {}
    out["registrar"] = _field(sip, "registrar", str, "sip", required=True)
    out["port"] = _port(_field(sip, "port", int, "sip", DEFAULT_TLS_PORT), "sip.port")
    out["domain"] = _field(sip, "domain", str, "sip", required=True)
    out["tls_server_name"] = _field(sip, "tls_server_name", str, "sip", out["registrar"])
    transport = _field(sip, "transport", str, "sip", "tls")
    if transport.lower() != "tls":
        # SDES keys travel in the signalling: only TLS is acceptable on a device (RFC 4568 §8.1)
        raise ValueError("device-config: sip.transport %r: the phone signals over TLS only"
                         % transport)
    suites = _field(sip, "srtp_profiles", list, "sip", list(PREFERENCE))
    if not suites:
        raise ValueError("device-config: sip.srtp_profiles is empty")
    for s in suites:
        if s not in PREFERENCE:
            raise ValueError("device-config: sip.srtp_profiles: unknown suite %r" % (s,))
    out["suites"] = tuple(suites)
    ka = _field(sip, "keepalive_s", int, "sip", None)
    if ka is not None and not 5 <= ka <= 3600:
        raise ValueError("device-config: sip.keepalive_s %d outside 5..3600" % ka)
    out["keepalive_ms"] = ka * 1000 if ka is not None else None
    out["media_bind"] = _field(media, "bind", str, "media", "0.0.0.0")
    port = _field(media, "port", int, "media", None)
    if port is not None:
        _port(port, "media.port")
        if port % 2 or port >= 65535:
            raise ValueError("device-config: media.port %d must be even (RTCP is port + 1)"
                             % port)
    out["media_port"] = port
    out["media_address"] = _field(media, "advertise", str, "media", out["media_bind"])
    if out["media_address"] == "0.0.0.0":
        raise ValueError("device-config: media.advertise is needed when media.bind is 0.0.0.0")
    amap = _field(net, "address_map", dict, "network", {})
    for k in amap:
        if not isinstance(amap[k], str) or not amap[k]:
            raise ValueError("device-config: network.address_map[%r] must be an address" % (k,))
    out["address_map"] = dict(amap)
    level = _field(config, "min_remote_integrity", str, "device-config", "unattested")
    from firmware.attest import levels
    try:
        levels.rank(level)
    except ValueError as e:
        raise ValueError("device-config: min_remote_integrity: %s" % e)
    out["min_remote_integrity"] = level
    return out
