# Sans-I/O core of the phone's serial console: feed one received line (bytes), get back the text
# to send and an action for the caller (nothing, or power off). The device itself is reached only
# through the `device` object given to Console (see phone.py for the real one), so the core runs
# the same under pytest, MicroPython and on the phone.
#
# Output rules the host driver (host_tools/console.py) relies on:
#   * every answer is followed by the prompt PROMPT at the start of a line;
#   * `status`, `pcrs` and `pin` answer one JSON object on one line;
#   * an error is one line starting with "error: " and the console keeps running;
#   * `log` frames each log as  -----BEGIN <NAME> size=<n> sha256=<hex>-----, base64 lines of
#     76 characters, -----END <NAME>-----  so the host can rebuild the bytes exactly and check them.

import binascii
import json

from firmware import compat
from firmware.console import mem
from firmware.console.calls import Refused, parse_options

PROMPT = "phone> "
MAX_LINE = 256  # longest command line accepted; a longer one is answered with an error
ACTION_NONE = 0
ACTION_POWEROFF = 1
B64_CHUNK = 57  # 57 input bytes -> 76 base64 characters per line (RFC 2045 line length)
LOG_NAMES = {"firmware": "FIRMWARE-LOG", "phone": "PHONE-LOG"}
USAGE = {"call": "a URI: call sip:user@host [tone=HZ]", "pin": "the PIN: pin DIGITS",
         "quote": "a nonce: quote NONCE_HEX (2..128 hex digits)",
         "integrity": "a level: integrity verified|outdated|unknown|unattested"}
# The PINs provisioning seals to (host_tools/provision: 4..16 ASCII digits); anything else cannot
# be the PIN, so it never reaches the TPM (and costs no dictionary-attack try).
PIN_MIN = 4
PIN_MAX = 16
# What a `pin` answer may carry: metadata only. The core drops anything else the device returns,
# so neither the secret nor the PIN can reach the serial line through this command.
PIN_ANSWER_KEYS = ("unlocked", "name", "length", "state", "reason", "tpm_rc", "da", "da_error")

HELP = (
    "commands:\n"
    "  help             this list\n"
    "  status           device state as one JSON object (\"da\": the TPM's PIN-guess counter)\n"
    "  pcrs [BANK]      PCR values of one bank (default sha256) as JSON\n"
    "  mem              memory of the user processes (VmHWM, VmRSS) and MemTotal as JSON\n"
    "  log [WHICH]      event logs, base64 framed; WHICH is firmware, phone or all (default)\n"
    "  messages         the phone's last log lines (calls, refusals, timings) as JSON\n"
    "  call URI [tone=HZ]  call a sip: URI (tone=HZ sends a sine instead of silence)\n"
    "  answer [tone=HZ] answer the ringing incoming call\n"
    "  hangup           end, cancel or decline the current call\n"
    "  pin PIN          unseal the PIN-bound user secret; answers metadata only (never the\n"
    "                   secret or the PIN) as JSON; a wrong PIN counts toward the TPM's lockout\n"
    "  quote NONCE_HEX  attestation evidence for that nonce (1..64 bytes as hex) as one JSON\n"
    "                   line: TPM quote of the sha256 PCRs with the AK, its certificate, logs\n"
    "  integrity LEVEL  require at least LEVEL (verified, outdated, unknown, unattested) from\n"
    "                   remote parties for this boot; never below the device-config's\n"
    "  poweroff         shut the TPM down cleanly (TPM2_Shutdown) and power off\n"
)


def frame_blob(name, data):
    """The framed base64 text of one blob (see the module comment), ending with a newline."""
    out = ["-----BEGIN %s size=%d sha256=%s-----" % (name, len(data),
                                                      compat.sha256(data).hex())]
    for i in range(0, len(data), B64_CHUNK):
        out.append(binascii.b2a_base64(data[i:i + B64_CHUNK]).decode().strip())
    out.append("-----END %s-----" % name)
    return "\n".join(out) + "\n"


def _frame_header(line):
    # "-----BEGIN NAME size=N sha256=HEX-----" -> (name, size, digest) or None
    if not (line.startswith("-----BEGIN ") and line.endswith("-----")):
        return None
    fields = line[len("-----BEGIN "):-len("-----")].split(" ")
    if len(fields) != 3 or not fields[1].startswith("size=") or not fields[2].startswith("sha256="):
        raise ValueError("malformed frame header %r" % line)
    try:
        size = int(fields[1][5:])
        digest = binascii.unhexlify(fields[2][7:])
    except ValueError:
        raise ValueError("malformed frame header %r" % line)
    if size < 0 or len(digest) != 32:
        raise ValueError("malformed frame header %r" % line)
    return fields[0], size, digest


def parse_frames(text):
    """{NAME: bytes} from text holding framed blobs; ValueError names the frame and what is wrong
    (missing END, bad base64, size or sha256 mismatch). Lines outside frames are ignored."""
    out = {}
    lines = text.replace("\r", "").split("\n")
    i = 0
    while i < len(lines):
        head = _frame_header(lines[i].strip())
        i += 1
        if head is None:
            continue
        name, size, digest = head
        end = "-----END %s-----" % name
        parts = []
        while True:
            if i >= len(lines):
                raise ValueError("frame %s: no END line" % name)
            line = lines[i].strip()
            i += 1
            if line == end:
                break
            parts.append(line)
        try:
            data = binascii.a2b_base64("".join(parts))
        except (ValueError, binascii.Error):
            raise ValueError("frame %s: bad base64" % name)
        if len(data) != size:
            raise ValueError("frame %s: %d bytes, header says %d" % (name, len(data), size))
        if compat.sha256(data) != digest:
            raise ValueError("frame %s: sha256 does not match its header" % name)
        if name in out:
            raise ValueError("frame %s appears twice" % name)
        out[name] = data
    return out


def _json(obj):
    return json.dumps(obj, separators=(",", ":"))


class Console:
    """handle(line_bytes) -> (text, action). `device` provides:
         status() -> dict            pcrs(bank) -> {index: digest bytes}
         firmware_log() -> bytes     phone_log() -> bytes
         shutdown_tpm() -> None
         call(uri, tone_hz) -> call id    answer(tone_hz) -> call id    hangup() -> call id
         unlock_pin(pin bytes) -> dict (metadata: "unlocked", "state", "reason", "da", ...)
         quote(nonce bytes) -> evidence dict (firmware/attest/evidence.py)
         messages() -> the phone's last log lines (list of str)
       (calls.Refused: printed as is; ValueError: the user's mistake, printed with the command)
       Each may raise any Exception; the console turns it into one "error: " line."""

    def __init__(self, device):
        self.device = device
        self.powered_off = False
        self._commands = {
            "help": (self._help, 0, 0),
            "status": (self._status, 0, 0),
            "pcrs": (self._pcrs, 0, 1),
            "log": (self._log, 0, 1),
            "poweroff": (self._poweroff, 0, 0),
            "call": (self._call, 1, 2),
            "answer": (self._answer, 0, 1),
            "hangup": (self._hangup, 0, 0),
            "pin": (self._pin, 1, 1),
            "quote": (self._quote, 1, 1),
            "integrity": (self._integrity, 1, 1),
            "mem": (lambda args: (mem.answer(), ACTION_NONE), 0, 0),
            "messages": (self._messages, 0, 0),
        }

    def handle(self, line):
        """Answer one received line (bytes or str, with or without its line ending)."""
        if self.powered_off:
            return "error: powering off\n", ACTION_POWEROFF
        if isinstance(line, str):
            text = line
        else:
            if len(line) > MAX_LINE + 2:
                return "error: line too long (%d bytes, at most %d)\n" % (len(line), MAX_LINE), \
                    ACTION_NONE
            try:
                text = bytes(line).decode("utf-8")
            except UnicodeError:
                return "error: input is not UTF-8 text\n", ACTION_NONE
        text = text.strip()
        if len(text) > MAX_LINE:
            return "error: line too long (%d characters, at most %d)\n" % (len(text), MAX_LINE), \
                ACTION_NONE
        if not text:
            return "", ACTION_NONE
        for ch in text:
            if ord(ch) < 0x20 or ord(ch) == 0x7F:
                return "error: control character 0x%02x in input\n" % ord(ch), ACTION_NONE
        words = text.split()
        name, args = words[0], words[1:]
        entry = self._commands.get(name)
        if entry is None:
            return "error: unknown command %r (type help)\n" % _short(name), ACTION_NONE
        fn, least, most = entry
        if not least <= len(args) <= most:
            if most == 0:
                return "error: %s takes no arguments\n" % name, ACTION_NONE
            if len(args) < least:
                return "error: %s needs %s\n" % (name, USAGE.get(name, "an argument")), \
                    ACTION_NONE
            return "error: %s takes at most %d argument%s\n" % (
                name, most, "" if most == 1 else "s"), ACTION_NONE
        try:
            return fn(args)
        except Refused as e:    # state refusals are shown as they are (e.g. sealed credentials)
            return "error: %s\n" % _one_line(e), ACTION_NONE
        except ValueError as e:  # the user's input (bad URI, bad option, no call to answer)
            return "error: %s: %s\n" % (name, _one_line(e)), ACTION_NONE
        except Exception as e:  # device errors: report and keep running
            return "error: %s failed: %s\n" % (name, _one_line(e)), ACTION_NONE

    def _help(self, args):
        return HELP, ACTION_NONE

    def _status(self, args):
        return _json(self.device.status()) + "\n", ACTION_NONE

    def _messages(self, args):
        return _json({"messages": list(self.device.messages())}) + "\n", ACTION_NONE

    def _pcrs(self, args):
        bank = args[0] if args else "sha256"
        if bank not in compat.DIGEST_SIZES:
            return "error: unknown bank %r (one of %s)\n" % (
                _short(bank), ", ".join(sorted(compat.DIGEST_SIZES))), ACTION_NONE
        values = self.device.pcrs(bank)
        # Built by hand so the PCRs come in numeric order on every runtime (MicroPython's dicts
        # do not keep insertion order).
        items = ['"%d":"%s"' % (idx, bytes(values[idx]).hex()) for idx in sorted(values)]
        return '{"%s":{%s}}\n' % (bank, ",".join(items)), ACTION_NONE

    def _log(self, args):
        which = args[0] if args else "all"
        if which == "all":
            names = ("firmware", "phone")
        elif which in LOG_NAMES:
            names = (which,)
        else:
            return "error: unknown log %r (firmware, phone or all)\n" % _short(which), ACTION_NONE
        out = []
        for n in names:
            try:
                data = self.device.firmware_log() if n == "firmware" else self.device.phone_log()
            except Exception as e:
                out.append("error: %s log unavailable: %s\n" % (n, _one_line(e)))
                continue
            out.append(frame_blob(LOG_NAMES[n], data))
        return "".join(out), ACTION_NONE

    def _call(self, args):
        opts = parse_options(args[1:])
        cid = self.device.call(args[0], opts["tone"])
        return "calling %s (call %s)\n" % (args[0], cid), ACTION_NONE

    def _answer(self, args):
        opts = parse_options(args)
        cid = self.device.answer(opts["tone"])
        return "answered call %s\n" % cid, ACTION_NONE

    def _hangup(self, args):
        cid = self.device.hangup()
        return "hanging up call %s\n" % cid, ACTION_NONE

    def _pin(self, args):
        # Never echo the PIN: not in errors, not in the answer (the typed line itself is on the
        # serial line already: that is the user's input, not the firmware's output).
        pin = args[0]
        if not PIN_MIN <= len(pin) <= PIN_MAX or not _ascii_digits(pin):
            return "error: pin: a PIN is %d to %d digits (0-9)\n" % (PIN_MIN, PIN_MAX), ACTION_NONE
        try:
            answer = self.device.unlock_pin(pin.encode())
        except Exception as e:  # transport errors; the message is scrubbed of the PIN anyway
            return "error: pin failed: %s\n" % _one_line(e).replace(pin, "<PIN>"), ACTION_NONE
        out = {}
        for k in PIN_ANSWER_KEYS:
            if k in answer:
                out[k] = answer[k]
        out["unlocked"] = answer.get("unlocked") is True  # fail closed: anything else is "no"
        return _json(out) + "\n", ACTION_NONE

    def _integrity(self, args):
        # raise-only: the device refuses a level below its signed device-config
        return _json(self.device.require_integrity(args[0])) + "\n", ACTION_NONE

    def _quote(self, args):
        from firmware.attest import evidence
        from firmware.attest.errors import EvidenceError
        try:
            nonce = evidence.parse_nonce_hex(args[0])
        except EvidenceError as e:
            return "error: quote: %s\n" % _one_line(e), ACTION_NONE
        ev = self.device.quote(nonce)
        return evidence.encode(ev).decode("utf-8") + "\n", ACTION_NONE

    def _poweroff(self, args):
        # TPM2_Shutdown(CLEAR) first: powering off without it counts as an unclean reset and
        # costs a dictionary-attack failure (DESIGN.md, TPM trials). Power off even if it fails.
        try:
            self.device.shutdown_tpm()
            note = "TPM shut down"
        except Exception as e:
            note = "TPM2_Shutdown failed: %s" % _one_line(e)
        self.powered_off = True
        return "%s; powering off\n" % note, ACTION_POWEROFF


def _ascii_digits(text):
    for ch in text:
        if not "0" <= ch <= "9":
            return False
    return True


def _short(text):
    return text if len(text) <= 32 else text[:32] + "..."


def _one_line(e):
    msg = str(e) or e.__class__.__name__
    return msg.replace("\r", " ").replace("\n", " ")[:200]
