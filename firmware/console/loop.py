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
