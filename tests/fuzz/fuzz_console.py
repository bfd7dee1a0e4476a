"""The serial console's command line (firmware/console/core.py Console.handle, calls.parse_uri and
parse_options) and the host side's frame parser (core.parse_frames). Each input is split into
lines and fed to one Console as the serial loop does. Console.handle documents no exception at
all (every error is one "error: " line); parse_frames documents ValueError.
The device behind the console is the real CallControl (not attached: the phone is not started,
so call commands are refused with the reason) plus fixed status/PCR/log answers; its unlock_pin
fails with the PIN in the message, so the harness also checks the console never echoes a PIN.
`mem` is answered from one snapshot taken at start (it reads /proc, not the line)."""
import _common  # noqa: F401
import atheris
import runner

with atheris.instrument_imports(include=["firmware"]):
    from firmware.console import core
    from firmware.console import mem
    from firmware.console.calls import CallControl

# `mem` scans the host's /proc (3-20 ms, it would dominate the run); it takes no input from the
# line, so it is answered once here and the fuzzer spends its time on the parsing.
MEM_ANSWER = mem.answer()


class Device:
    def __init__(self):
        self.calls = CallControl()

    def status(self):
        out = {"state": "running", "da": {"counter": 0}}
        out.update(self.calls.status())
        return out

    def pcrs(self, bank):
        return {i: bytes([i]) * 32 for i in range(24)}

    def firmware_log(self):
        return b"\x00" * 100

    def phone_log(self):
        raise OSError("no phone log yet")

    def shutdown_tpm(self):
        pass

    def call(self, uri, tone=None):
        return self.calls.call(uri, tone)

    def answer(self, tone=None):
        return self.calls.answer(tone)

    def hangup(self):
        return self.calls.hangup()

    def unlock_pin(self, pin):
        if pin[-1] % 2:
            raise OSError("TPM transport failed while sending %s" % pin.decode())
        return {"unlocked": False, "state": "sealed", "reason": "wrong PIN", "pin": pin.decode()}


def one_input(data):
    console = core.Console(Device())
    console._commands["mem"] = (lambda args: (MEM_ANSWER, core.ACTION_NONE), 0, 0)
    for line in data.split(b"\n"):
        text, action = console.handle(line)
        assert isinstance(text, str) and action in (core.ACTION_NONE, core.ACTION_POWEROFF)
        assert text == "" or text.endswith("\n")
        words = line.split()
        if (len(words) == 2 and words[0] == b"pin" and words[1].isdigit()
                and core.PIN_MIN <= len(words[1]) <= core.PIN_MAX):
            assert words[1].decode() not in text, "PIN echoed: %r" % text
    try:
        core.parse_frames(data.decode("utf-8", "replace"))
    except ValueError:
        pass


def seeds():
    yield (b"help\nstatus\npcrs sha1\nlog all\nmem\ncall sip:bob@127.0.0.1 tone=440\nanswer\n"
           b"hangup\npin 12345\npin 2468\npoweroff\nstatus")
    yield b"pcrs sha256\r\nlog firmware\r\nbogus command\r\ncall x\r\n"
    yield core.frame_blob("FIRMWARE-LOG", bytes(range(256))).encode()


if __name__ == "__main__":
    runner.main("console", one_input, (), seeds)
