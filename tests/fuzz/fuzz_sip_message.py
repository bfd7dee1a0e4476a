"""SIP message parsing (firmware/sip/message.py, RFC 3261 §7, §25): parse_message as datagram and as
stream, the StreamFramer, and the typed accessors the UA reads. Documented error: SipParseError."""
import _common  # noqa: F401
import atheris
import runner

with atheris.instrument_imports(include=["firmware"]):
    from firmware.sip.message import NameAddr, SipParseError, SipUri, StreamFramer, parse_message


def one_input(data):
    # the framer sees the bytes in two pieces, as a TLS read may split them
    cut = data[0] % (len(data) + 1) if data else 0
    framer = StreamFramer()
    items = framer.feed(data[:cut]) + framer.feed(data[cut:])
    for kind, raw in items:
        if kind == "message":
            try:
                _use(parse_message(raw, True))
            except SipParseError:
                pass
    msg = parse_message(data, False)
    _use(msg)


def _use(msg):
    # what the UA reads from a message that parsed (ua.py, dialog.py, transaction.py)
    msg.cseq
    msg.from_.tag
    msg.to.tag
    msg.via.branch
    for c in msg.contacts():
        str(c)
    for name in ("Record-Route", "Route"):
        for v in msg.get_all(name):
            NameAddr.parse(v, name)
    if hasattr(msg, "uri"):
        str(msg.uri)
        if isinstance(msg.uri, SipUri):
            msg.uri.copy()
    msg.serialize()


def seeds():
    # RFC 4475 torture cases (tests/data/sip/torture); real Kamailio/baresip traffic is committed
    # in tests/fuzz/corpus/sip_message (capture_sip.py)
    import glob
    import os

    for path in sorted(glob.glob(os.path.join(runner.ROOT, "tests", "data", "sip", "torture", "*", "*.sip"))):
        with open(path, "rb") as f:
            yield f.read()


if __name__ == "__main__":
    runner.main("sip_message", one_input, (SipParseError,), seeds)
