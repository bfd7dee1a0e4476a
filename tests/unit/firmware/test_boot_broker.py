# firmware.boot.broker: the TPM broker's request validation and dispatch (issue 9 part 2). Only
# the listed operations with exactly their fields pass; every refusal is answered and logged and
# neither the answer nor the log line repeats a field's value (a PIN). Runs under pytest and
# MicroPython.
import json

from firmware.boot import broker
from tests.unit.firmware.check import raises


class Ops:
    """Records what the broker dispatched (the TPM side is tested in tests/tpm/test_broker.py)."""

    def __init__(self):
        self.calls = []

    def credentials(self):
        self.calls.append(("credentials",))
        return {"status": {"unsealed": True}, "sip": ["phone1", "pw"]}

    def unlock(self, pin):
        self.calls.append(("unlock", bytes(pin)))
        return {"unlocked": True, "name": "user-secret", "length": 16}

    def pcrs(self, bank):
        self.calls.append(("pcrs", bank))
        return {"pcrs": {"14": "00" * 32}}

    def da(self):
        self.calls.append(("da",))
        return {"da": {"counter": 0}}

    def shutdown(self):
        self.calls.append(("shutdown",))
        return {}

    def quote(self, nonce):
        self.calls.append(("quote", bytes(nonce)))
        return {"quote": "AA==", "signature": "AA=="}


def _ask(b, obj_or_bytes):
    data = obj_or_bytes if isinstance(obj_or_bytes, bytes) else json.dumps(obj_or_bytes).encode()
    answer, line = b.handle(data)
    return json.loads(answer), line


def test_allowed_operations_are_dispatched():
    ops = Ops()
    b = broker.Broker(ops)
    assert _ask(b, {"op": "credentials"}) == ({"ok": True, "status": {"unsealed": True},
                                                "sip": ["phone1", "pw"]}, None)
    assert _ask(b, {"op": "unlock", "pin": "123456"})[0]["unlocked"] is True
    assert _ask(b, {"op": "pcrs", "bank": "sha256"})[0]["pcrs"] == {"14": "00" * 32}
    assert _ask(b, {"op": "da"})[0] == {"ok": True, "da": {"counter": 0}}
    assert _ask(b, {"op": "shutdown"})[0] == {"ok": True}
    assert _ask(b, {"op": "quote", "nonce": "00fF" * 32})[0]["quote"] == "AA=="
    assert _ask(b, {"op": "quote", "nonce": "a5"})[0]["signature"] == "AA=="
    assert ops.calls == [("credentials",), ("unlock", b"123456"), ("pcrs", "sha256"), ("da",),
                         ("shutdown",), ("quote", b"\x00\xff" * 32), ("quote", b"\xa5")]
    assert b.refused == 0


def test_anything_else_is_refused_and_logged_without_values():
    ops = Ops()
    b = broker.Broker(ops)
    cases = [
        ({"op": "extend", "pcr": 14, "digest": "00" * 32},
         "refused: operation not allowed", "broker: refused a request (%d bytes): operation not allowed"),
        ({"op": "unlock", "pin": "12a4"}, "refused: unlock: the PIN must be 4..16 digits",
         "broker: refused a request (op unlock, %d bytes): unlock: the PIN must be 4..16 digits"),
        ({"op": "unlock", "pin": "123"}, "refused: unlock: the PIN must be 4..16 digits", None),
        ({"op": "unlock", "pin": "1" * 17}, "refused: unlock: the PIN must be 4..16 digits", None),
        ({"op": "unlock", "pin": 1234}, "refused: unlock: the PIN must be 4..16 digits", None),
        ({"op": "unlock"}, "refused: unlock: missing field pin", None),
        ({"op": "da", "pin": "987654"}, "refused: da: unexpected field", None),
        ({"op": "pcrs", "bank": "md5"}, "refused: pcrs: bank must be one of sha1, sha256, sha384, sha512", None),
        ({"op": "quote", "nonce": "0g"}, "refused: quote: the nonce must be 2..128 hex digits, an even number", None),
        ({"op": "quote", "nonce": "abc"}, "refused: quote: the nonce must be 2..128 hex digits, an even number", None),
        ({"op": "quote", "nonce": ""}, "refused: quote: the nonce must be 2..128 hex digits, an even number", None),
        ({"op": "quote", "nonce": "00" * 65}, "refused: quote: the nonce must be 2..128 hex digits, an even number", None),
        ({"op": "quote", "nonce": 17}, "refused: quote: the nonce must be 2..128 hex digits, an even number", None),
        ({"op": "quote", "nonce": ["00"]}, "refused: quote: the nonce must be 2..128 hex digits, an even number", None),
        ({"op": "quote", "nonce": "0x12"}, "refused: quote: the nonce must be 2..128 hex digits, an even number", None),
        ({"op": "quote"}, "refused: quote: missing field nonce", None),
        ({"op": "quote", "nonce": "00", "pcrs": [23]}, "refused: quote: unexpected field", None),
        (["credentials"], "refused: request is not a JSON object", None),
        (b"\xff\xfe", "refused: request is not UTF-8 JSON", None),
        (b"{" + b" " * 300 + b"}", "refused: request of 302 bytes (at most 256)", None),
    ]
    for req, error, line in cases:
        data = req if isinstance(req, bytes) else json.dumps(req).encode()
        answer, got_line = _ask(b, data)
        assert answer == {"ok": False, "error": error}, (req, answer)
        assert got_line is not None and got_line.startswith("broker: refused a request ("), got_line
        if line is not None:
            assert got_line == line % len(data), got_line
        for secret in ("12a4", "987654", "1" * 17):
            assert secret not in got_line and secret not in answer["error"]
    assert ops.calls == [] and b.refused == len(cases)


def test_a_failing_operation_is_an_answer_not_a_crash():
    class Broken(Ops):
        def pcrs(self, bank):
            raise RuntimeError("TPM gone")
    answer, line = _ask(broker.Broker(Broken()), {"op": "pcrs", "bank": "sha1"})
    assert answer == {"ok": False, "error": "pcrs failed: RuntimeError: TPM gone"}
    assert line == "broker: pcrs failed: RuntimeError"


def test_client_side_encoding_and_answers():
    assert json.loads(broker.request("unlock", pin="1234")) == {"op": "unlock", "pin": "1234"}
    raises(ValueError, broker.request, "unlock", pin="1" * 300)
    assert broker.parse_answer(b'{"ok": true, "da": {}}') == {"ok": True, "da": {}}
    e = raises(broker.BrokerError, broker.parse_answer, b'{"ok": false, "error": "refused: x"}')
    assert str(e) == "refused: x"
    e = raises(broker.BrokerError, broker.parse_answer, b'{"da": 1}')
    assert str(e) == "answer is not a broker answer"
    raises(broker.BrokerError, broker.parse_answer, b"x" * (broker.MAX_ANSWER + 1))

