# The console's `pin` command (firmware.console.core) and the TPM dictionary-attack state it and
# `status` report (firmware.secrets.da). The console's device is a small stand-in that records
# what reached it; the DA state is read by the real TPM client from GetCapability responses
# marshalled here per TPM 2.0 Part 3 §30.2 / Part 2 §10.10 (TPMS_CAPABILITY_DATA).
import json

from firmware.console.core import ACTION_NONE, Console
from firmware.console.loop import serve
from firmware.errors import ParseError
from firmware.secrets import da
from firmware.tpm.client import Tpm
from tests.unit.firmware.check import raises, unhex
from tests.unit.firmware.test_console import Lines, Sink

PIN = "739104"
SECRET = "the-user-secret-never-printed"
DA = {"counter": 0, "max_tries": 5, "recovery_s": 600, "lockout_recovery_s": 86400,
      "in_lockout": False}


class PinDevice:
    """Answers like firmware.console.phone.PhoneDevice.unlock_pin: the right PIN unlocks, any
    other counts one failure, max_tries failures lock out (then even the right PIN is refused)."""

    def __init__(self, leak=False, fail=None):
        self.pins = []     # what reached the device
        self.counter = 0
        self.leak = leak   # a buggy device that puts the secret and the PIN into its answer
        self.fail = fail

    def status(self):
        return {"state": "running", "unsealed": True, "da": self._da()}

    def _da(self):
        d = dict(DA)
        d["counter"] = self.counter
        d["in_lockout"] = self.counter >= d["max_tries"]
        return d

    def unlock_pin(self, pin):
        self.pins.append(pin)
        if self.fail:
            raise OSError(self.fail)
        if self.counter >= DA["max_tries"]:
            out = {"unlocked": False, "state": "locked-out", "tpm_rc": "0x921",
                   "reason": "the TPM is in dictionary-attack lockout (TPM_RC_LOCKOUT)"}
        elif pin == PIN.encode():
            out = {"unlocked": True, "name": "user-secret", "length": len(SECRET)}
        else:
            self.counter += 1
            out = {"unlocked": False, "state": "pin-refused", "tpm_rc": "0x98e",
                   "reason": "wrong PIN (TPM_RC_AUTH_FAIL)"}
        if self.leak:
            out["secret"] = SECRET
            out["pin"] = pin.decode()
            out["unlocked"] = "yes"
        out["da"] = self._da()
        return out


def _answer(con, line):
    text, action = con.handle(line)
    assert action == ACTION_NONE
    assert text.endswith("\n") and text.count("\n") == 1, text
    return text


def test_right_pin_unlocks_and_answers_metadata_only():
    dev = PinDevice()
    text = _answer(Console(dev), ("pin " + PIN + "\r\n").encode())
    assert dev.pins == [PIN.encode()]
    assert json.loads(text) == {"unlocked": True, "name": "user-secret", "length": len(SECRET),
                                "da": DA}
    assert PIN not in text and SECRET not in text


def test_wrong_pins_count_then_lockout_refuses_the_right_one():
    dev = PinDevice()
    con = Console(dev)
    for i in range(5):
        wrong = "00000%d" % i
        text = _answer(con, "pin " + wrong)
        obj = json.loads(text)
        assert obj["unlocked"] is False and obj["state"] == "pin-refused", obj
        assert obj["tpm_rc"] == "0x98e" and obj["da"]["counter"] == i + 1
        assert wrong not in text
    assert obj["da"]["in_lockout"] is True
    obj = json.loads(_answer(con, "pin " + PIN))
    assert obj["unlocked"] is False and obj["state"] == "locked-out" and obj["tpm_rc"] == "0x921"
    assert json.loads(_answer(con, "status"))["da"]["counter"] == 5


def test_answer_keeps_only_metadata_and_fails_closed():
    dev = PinDevice(leak=True)
    text = _answer(Console(dev), "pin " + PIN)
    obj = json.loads(text)
    assert "secret" not in obj and "pin" not in obj
    assert SECRET not in text and PIN not in text
    assert obj["unlocked"] is False  # "yes" is not True


def test_bad_pin_input_is_one_error_line_never_echoing_it():
    dev = PinDevice()
    con = Console(dev)
    cases = [
        ("pin", "error: pin needs the PIN: pin DIGITS\n"),
        ("pin 987", "error: pin: a PIN is 4 to 16 digits (0-9)\n"),
        ("pin 98765432109876543", "error: pin: a PIN is 4 to 16 digits (0-9)\n"),
        ("pin 98a7", "error: pin: a PIN is 4 to 16 digits (0-9)\n"),
        ("pin -987", "error: pin: a PIN is 4 to 16 digits (0-9)\n"),
        # Arabic-Indic digits: str.isdigit() would take them; the PIN is ASCII
        ("pin \u0669\u0668\u0667\u0665", "error: pin: a PIN is 4 to 16 digits (0-9)\n"),
        ("pin 9876 5432", "error: pin takes at most 1 argument\n"),
    ]
    for line, want in cases:
        assert con.handle(line.encode()) == (want, ACTION_NONE), line
    assert dev.pins == []  # nothing malformed reaches the TPM (no DA try spent)
    assert json.loads(_answer(con, "status"))["state"] == "running"


def test_device_error_is_reported_without_the_pin():
    dev = PinDevice(fail="TPM transport closed after pin 7391")
    text = _answer(Console(dev), "pin 7391")
    assert text == "error: pin failed: TPM transport closed after pin <PIN>\n"


def test_serve_loop_output_never_carries_the_pin():
    out = Sink()
    serve(PinDevice(), Lines(("pin 123456\npin %s\nstatus" % PIN).encode()), out)
    text = out.data.decode()
    assert text.count('"unlocked":false') == 1 and text.count('"unlocked":true') == 1
    assert PIN not in text and "123456" not in text and SECRET not in text


def test_help_lists_pin():
    text, _ = Console(PinDevice()).handle(b"help")
    assert "\n  pin PIN " in text


# --- firmware.secrets.da over the real client ------------------------------------------------

# TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES, TPM_PT_PERMANENT, 18): tag TPM_ST_NO_SESSIONS, size
# 22, TPM_CC_GetCapability 0x17A, capability 6, property 0x200, propertyCount 18
CMD_FROM_PERMANENT = unhex("8001 00000016 0000017a 00000006 00000200 00000012")
CMD_FROM_20A = unhex("8001 00000016 0000017a 00000006 0000020a 00000008")


def _prop(pt, value):
    return "%08x%08x" % (pt, value)


def _response(more, props):
    body = "%02x" % more + "00000006" + "%08x" % len(props) + "".join(props)
    return unhex("8001" + "%08x" % (10 + len(body) // 2) + "00000000" + body)


def _var_props(counter, permanent):
    # TPM_PT_PERMANENT .. TPM_PT_LOCKOUT_RECOVERY (0x200..0x211), values as swtpm reports them
    # for a TPM provisioned with 5 tries / 600 s / 86400 s
    vals = dict((0x200 + i, 0) for i in range(18))
    vals[0x200] = permanent
    vals[0x20E] = counter
    vals[0x20F] = 5
    vals[0x210] = 600
    vals[0x211] = 86400
    return [_prop(pt, vals[pt]) for pt in sorted(vals)]


class Script:
    def __init__(self, pairs):
        self.pairs = list(pairs)

    def send(self, command):
        want, rsp = self.pairs.pop(0)
        assert command == want, command.hex()
        return rsp


def test_da_state_reads_counter_limits_and_in_lockout():
    t = Script([(CMD_FROM_PERMANENT, _response(1, _var_props(2, 0x00000004)))])
    assert da.state(Tpm(t)) == {"counter": 2, "max_tries": 5, "recovery_s": 600,
                                "lockout_recovery_s": 86400, "in_lockout": False}
    # TPMA_PERMANENT bit 9 inLockout (Part 2 §8.6); bit 2 lockoutAuthSet is not it
    t = Script([(CMD_FROM_PERMANENT, _response(1, _var_props(5, 0x00000204)))])
    st = da.state(Tpm(t))
    assert st["in_lockout"] is True and st["counter"] == 5


def test_da_state_follows_more_data():
    props = _var_props(1, 0)
    t = Script([(CMD_FROM_PERMANENT, _response(1, props[:10])),
                (CMD_FROM_20A, _response(0, props[10:]))])
    assert da.state(Tpm(t))["counter"] == 1
    assert t.pairs == []


def test_da_state_refuses_to_guess_a_missing_property():
    props = _var_props(1, 0)
    t = Script([(CMD_FROM_PERMANENT, _response(0, props[:15]))])  # no 0x20F..0x211
    e = raises(ParseError, da.state, Tpm(t))
    assert "0x20f" in str(e)
