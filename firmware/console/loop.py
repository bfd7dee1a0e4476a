# The console's read-eval-print loop over two byte streams (the serial line's input and output).
# Returns EXIT_POWEROFF after `poweroff`, 0 when the input ends.

from firmware.console.core import ACTION_POWEROFF, PROMPT, Console

EXIT_POWEROFF = 80  # the stage loader (PID 1) powers the device off on this exit status


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


def serve_select(device, in_fd, stdout, now_ms, max_wait_ms=1000):
    """The console and the SIP phone in one select() loop (CPython on the device): lines from
    the serial line's descriptor `in_fd` are answered as in serve(); between them the device's
    phone sockets and timers run (device.sockets(), next_deadline(), pending(), step(ready, now);
    see phone.PhoneDevice). Input is read with os.read so a buffered reader never hides a line
    from select()."""
    import os
    import select

    console = Console(device)
    stdout.write(("\n" + PROMPT).encode())
    stdout.flush()
    buf = b""
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
            data = os.read(in_fd, 512)
            if not data:
                return 0
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text, action = console.handle(line)
                stdout.write(text.encode())
                if action == ACTION_POWEROFF:
                    stdout.flush()
                    return EXIT_POWEROFF
                stdout.write(PROMPT.encode())
                stdout.flush()
            if len(buf) > 4 * 256:
                buf = b""   # no newline in a kilobyte: not a command line; the core reports long lines
                stdout.write(b"error: line too long\n" + PROMPT.encode())
                stdout.flush()
        try:
            device.step(ready, now_ms())
            _print_notices(device, stdout)
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
