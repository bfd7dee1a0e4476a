# The console's read-eval-print loop over two byte streams (the serial line's input and output).
# Returns EXIT_POWEROFF after `poweroff`, EXIT_REBOOT after an SMP OS reset, 0 when the input ends.
#
# On the device the serial line is shared with MCUmgr SMP (docs/flashing.md): serve_select splits
# what arrives (firmware.smp.serial.Splitter) into SMP frames, answered by the device's SMP server
# as SMP serial frames at the start of a line, and text lines for the command loop. The kernel's
# tty echo is off (console __main__: it would send a client its own request back), so text lines
# are echoed here, as the tty did.

from firmware.console.core import ACTION_POWEROFF, PROMPT, Console

EXIT_POWEROFF = 80  # the stage loader (PID 1) powers the device off on this exit status
EXIT_REBOOT = 81    # ... and reboots it on this one (SMP OS group reset)


def serve(device, stdin, stdout):
    console = Console(device)
    stdout.write(("\n" + PROMPT).encode())
    stdout.flush()
    while True:
        line = stdin.readline()
        if not line:
            return 0
        text, action = console.handle(line)
        stdout.write(text.encode())
        if action == ACTION_POWEROFF:
            stdout.flush()
            return EXIT_POWEROFF
        stdout.write(PROMPT.encode())
        stdout.flush()


def serve_select(device, in_fd, stdout, now_ms, max_wait_ms=1000, echo=False):
    """The console and the SIP phone in one select() loop (CPython on the device): lines from
    the serial line's descriptor `in_fd` are answered as in serve(); between them the device's
    phone sockets and timers run (device.sockets(), next_deadline(), pending(), step(ready, now);
    see phone.PhoneDevice). Input is read with os.read so a buffered reader never hides a line
    from select()."""
    import os
    import select

    from firmware.smp.serial import Splitter

    # `echo`: the tty does not echo (console __main__ turned it off), so text lines are echoed
    # here; SMP lines never are (a client would read its own request back as the answer)
    console = Console(device)
    stdout.write(("\n" + PROMPT).encode())
    stdout.flush()
    split = Splitter()
    smp = getattr(device, "smp", None)
    mid_line = True  # the prompt ends the output: an SMP answer must start a line
    errors = 0
    while True:
        now = now_ms()
        wait = max_wait_ms
        t = device.next_deadline()
        if t is not None:
            wait = max(0, min(wait, t - now))
        if device.pending():
            ready = []
            wait = 0
        else:
            ready = select.select([in_fd] + device.sockets(), [], [], wait / 1000.0)[0]
        if in_fd in ready:
            # a notice still pending (a step that raised after the phone learnt a level) goes
            # out before the next answer, so an answer never shows a state its notice lags
            _print_notices(device, stdout)
            data = os.read(in_fd, 4096)
            if not data:
                return 0
            items = split.feed(data)
            for e in split.errors:
                if "line longer" in str(e):
                    # no newline in kilobytes: not a command line (the core reports long lines)
                    stdout.write(b"error: line too long\n" + PROMPT.encode())
                    stdout.flush()
                    mid_line = True
                else:
                    # MCUmgr SMP serial transport: a frame whose CRC16 (or base64, or length)
                    # does not check is dropped unanswered; the client resends after its timeout
                    stdout.write(("%ssmp: dropped a damaged frame: %s\n"
                                  % ("\n" if mid_line else "", e)).encode())
                    stdout.flush()
                    mid_line = False
            # (said before the items of the same read: a reset among them returns at once)
            del split.errors[:]  # a damaged SMP line: the request is dropped, the client resends
            for kind, item in items:
                if kind == "smp":
                    if smp is None:
                        continue
                    if serve_smp(smp, item, stdout, mid_line):
                        return _reboot(device, stdout)
                    mid_line = False
                    continue
                if echo:
                    stdout.write(item.replace(b"\r", b"").rstrip(b"\n") + b"\n")
                text, action = console.handle(item.rstrip(b"\r\n"))
                stdout.write(text.encode())
                if action == ACTION_POWEROFF:
                    stdout.flush()
                    return EXIT_POWEROFF
                stdout.write(PROMPT.encode())
                stdout.flush()
                mid_line = True
        try:
            device.step(ready, now_ms())
            _print_notices(device, stdout)
            if smp is not None:
                line = smp.tick()  # the trial image confirms itself once ready
                if line:
                    stdout.write(("\n" if mid_line else "") .encode() + line.encode() + b"\n")
                    stdout.flush()
                    mid_line = False
        except Exception as e:
            # one bad request or packet must not end the console (and with it, after the
            # loader's restart budget, the device): log one line, go on
            errors += 1
            if errors <= 10 or errors % 100 == 0:
                _log_step_error(device, stdout, e, errors)


def _print_notices(device, stdout):
    """Lines the phone wants the user to see now (the remote party's integrity level), each
    as "notice: ..." so the host driver (host_tools/console.py) can tell them from answers."""
    take = getattr(device, "take_notices", None)
    lines = take() if take is not None else []
    if lines:
        stdout.write("".join("notice: %s\n" % n for n in lines).encode())
        stdout.flush()


def _log_step_error(device, stdout, e, count):
    """One line in the phone's log (shown by `log phone`), or on the console if there is none."""
    text = []
    for ch in str(e)[:160]:
        text.append(ch if " " <= ch <= "~" else "?")
    line = "error: phone step failed (%d): %s: %s" % (count, e.__class__.__name__, "".join(text))
    app = getattr(getattr(device, "phone", None), "app", None)
    log = getattr(app, "log", None)
    if log is not None:
        try:
            log(line)
            return
        except Exception:
            pass
    stdout.write((line + "\n").encode())
    stdout.flush()


def serve_smp(smp, frame, stdout, mid_line):
    """Answer one SMP frame on the line: the server's event lines, then the answer's serial frame
    lines (firmware.smp.serial.encode), starting a line. -> True when the client asked for a
    reset (answered first, as MCUmgr's OS reset does)."""
    from firmware.smp.serial import encode
    answer = smp.server.handle(frame)
    out = [b"\n"] if mid_line else []
    out.extend(("%s\n" % line).encode() for line in smp.server.events)
    del smp.server.events[:]
    if answer is not None:
        out.extend(encode(answer))
    stdout.write(b"".join(out))
    stdout.flush()
    return smp.server.reset_requested


def _reboot(device, stdout):
    """SMP OS reset: TPM2_Shutdown first, as `poweroff` does, then the loader reboots."""
    try:
        device.shutdown_tpm()
        note = "TPM shut down"
    except Exception as e:  # noqa: BLE001  reboot anyway
        note = "TPM2_Shutdown failed: %s" % e
    stdout.write(("%s; rebooting\n" % note).encode())
    stdout.flush()
    return EXIT_REBOOT
