# firmware.console: the sans-I/O core (a line in, text out), the log framing the host decodes,
# and the serve loop over byte streams. The device is a small in-memory stand-in with real data.
import json

from firmware import compat
from firmware.console import core
from firmware.console.core import ACTION_NONE, ACTION_POWEROFF, Console, frame_blob, parse_frames
from firmware.console.loop import EXIT_POWEROFF, serve
from tests.unit.firmware.check import raises

PCR14 = compat.sha256(b"pcr 14")


class Device:
    def __init__(self):
        self.shutdowns = 0
        self.fail = None

    def status(self):
        return {"state": "running", "image_version": "0.1.0", "components": [],
                "pcr14": PCR14.hex(), "unsealed": False, "registered": False}

    def pcrs(self, bank):
        if self.fail:
            raise OSError(self.fail)
        return {0: b"\x00" * 32, 14: PCR14, 7: b"\x07" * 32}

    def firmware_log(self):
        return bytes(range(256)) * 3

    def phone_log(self):
        if self.fail:
            raise OSError(self.fail)
        return b"phone log"

    def messages(self):
        if self.fail:
            raise OSError(self.fail)
        return ["call c1: incoming from sip:alice@lab", 'call c1: refused: "x"']

    def shutdown_tpm(self):
        self.shutdowns += 1
        if self.fail:
            raise OSError(self.fail)


def test_help_lists_every_command():
    text, action = Console(Device()).handle(b"help\n")
    assert action == ACTION_NONE
    for cmd in ("help", "status", "pcrs", "log", "messages", "poweroff"):
        assert "\n  " + cmd in text


def test_status_is_one_json_line():
    text, _ = Console(Device()).handle(b"status\r\n")
    assert text.endswith("\n") and text.count("\n") == 1
    obj = json.loads(text)
    assert obj["state"] == "running" and obj["pcr14"] == PCR14.hex() and obj["unsealed"] is False


def test_messages_are_one_json_line_of_the_phones_log():
    text, _ = Console(Device()).handle(b"messages")
    assert text.endswith("\n") and text.count("\n") == 1
    assert json.loads(text) == {"messages": ["call c1: incoming from sip:alice@lab",
                                             'call c1: refused: "x"']}
    d = Device()
    d.fail = "no phone"
    text, _ = Console(d).handle(b"messages")
    assert text == "error: messages failed: no phone\n"
    text, _ = Console(Device()).handle(b"messages now")
    assert text == "error: messages takes no arguments\n"


def test_pcrs_in_the_verifier_format():
    text, _ = Console(Device()).handle(b"pcrs")
    assert json.loads(text) == {"sha256": {"0": "00" * 32, "7": "07" * 32, "14": PCR14.hex()}}
    assert text.index('"0"') < text.index('"7"') < text.index('"14"')  # numeric order
    text, _ = Console(Device()).handle(b"pcrs sha1")
    assert list(json.loads(text)) == ["sha1"]


def test_log_frames_round_trip_exactly():
    dev = Device()
    text, _ = Console(dev).handle(b"log")
    frames = parse_frames(text)
    assert frames == {"FIRMWARE-LOG": dev.firmware_log(), "PHONE-LOG": b"phone log"}
    for line in text.split("\n"):
        assert line.startswith("-----") or len(line) <= 76  # RFC 2045 line length
    text, _ = Console(dev).handle(b"log phone")
    assert list(parse_frames(text)) == ["PHONE-LOG"]


def test_frame_format_and_tamper_detection():
    text = frame_blob("X", b"abc")
    assert text == ("-----BEGIN X size=3 sha256=%s-----\nYWJj\n-----END X-----\n"
                    % compat.sha256(b"abc").hex())
    assert parse_frames(frame_blob("E", b"")) == {"E": b""}
    e = raises(ValueError, parse_frames, text.replace("YWJj", "YWJk"))
    assert "sha256" in str(e)
    e = raises(ValueError, parse_frames, text.replace("size=3", "size=4"))
    assert "4" in str(e)
    e = raises(ValueError, parse_frames, text.replace("-----END X-----\n", ""))
    assert "no END" in str(e)
    e = raises(ValueError, parse_frames, text + text)
    assert "twice" in str(e)


def test_bad_input_gets_one_line_and_console_keeps_running():
    con = Console(Device())
    cases = [
        (b"reboot", "error: unknown command 'reboot' (type help)\n"),
        (b"status now", "error: status takes no arguments\n"),
        (b"pcrs sha256 extra", "error: pcrs takes at most 1 argument\n"),
        (b"pcrs md5", "error: unknown bank 'md5' (one of sha1, sha256, sha384, sha512)\n"),
        (b"log kernel", "error: unknown log 'kernel' (firmware, phone or all)\n"),
        (b"\xff\xfe", "error: input is not UTF-8 text\n"),
        (b"sta\x1btus", "error: control character 0x1b in input\n"),
        (b"x" * 300, "error: line too long (300 bytes, at most 256)\n"),
        (b"y" * 258 + b"\n", "error: line too long (259 bytes, at most 256)\n"),
        (b"A" * 40, "error: unknown command '%s...' (type help)\n" % ("A" * 32)),
    ]
    for line, want in cases:
        assert con.handle(line) == (want, ACTION_NONE), line
    assert con.handle(b"\n") == ("", ACTION_NONE)
    assert json.loads(con.handle(b"status")[0])["state"] == "running"


def test_device_errors_are_reported_not_raised():
    dev = Device()
    dev.fail = "TPM gone"
    con = Console(dev)
    assert con.handle(b"pcrs") == ("error: pcrs failed: TPM gone\n", ACTION_NONE)
    text, _ = con.handle(b"log")
    assert "error: phone log unavailable: TPM gone\n" in text
    assert list(parse_frames(text)) == ["FIRMWARE-LOG"]


def test_poweroff_shuts_the_tpm_down_first():
    dev = Device()
    con = Console(dev)
    assert con.handle(b"poweroff") == ("TPM shut down; powering off\n", ACTION_POWEROFF)
    assert dev.shutdowns == 1
    assert con.handle(b"status") == ("error: powering off\n", ACTION_POWEROFF)
    dev2 = Device()
    dev2.fail = "no TPM"
    text, action = Console(dev2).handle(b"poweroff")
    assert text == "TPM2_Shutdown failed: no TPM; powering off\n" and action == ACTION_POWEROFF


class Lines:
    def __init__(self, data):
        self.lines = [ln + b"\n" for ln in data.split(b"\n")]

    def readline(self):
        return self.lines.pop(0) if self.lines else b""


class Sink:
    def __init__(self):
        self.data = b""

    def write(self, b):
        self.data += b

    def flush(self):
        pass


def test_serve_loop_prompts_and_stops_on_poweroff():
    out = Sink()
    rc = serve(Device(), Lines(b"help\nbogus\npoweroff\nstatus"), out)
    assert rc == EXIT_POWEROFF
    text = out.data.decode()
    assert text.startswith("\n" + core.PROMPT)
    assert text.count(core.PROMPT) == 3  # initial, after help, after bogus; none after poweroff
    assert "error: unknown command 'bogus'" in text
    assert text.endswith("powering off\n")


def test_serve_loop_returns_at_end_of_input():
    out = Sink()
    assert serve(Device(), Lines(b"status"), out) == 0
