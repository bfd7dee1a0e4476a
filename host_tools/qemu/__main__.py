"""python -m host_tools.qemu --device NAME [--exec CMD ...] [--console stdio|pty|tcp] [--kvm]

Boots one emulated phone (state under build/devices/NAME/) under QEMU with its software TPM.

* default (``--console stdio``): a progress line while it boots, then your terminal is the
  phone's serial console; Ctrl-] (or Ctrl-C) powers it off cleanly and leaves;
* ``--console pty`` / ``--console tcp``: the console is a pseudo-terminal / a TCP socket for
  another tool (its path or ``socket://`` URL is printed); Ctrl-C stops the device;
* ``--exec CMD`` (repeatable): boot, wait for the prompt, run each console command, print each
  answer on stdout, power off.  Exit status 0; 3 when the prompt never came; 1 when QEMU failed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from host_tools.console import PROMPT, Console, ConsoleError, ConsoleTimeout, last_line
from host_tools.qemu import interactive
from host_tools.qemu.device import (BOARD, Device, DeviceConfig, DeviceError, Running, clear_progress,
                                    stderr_progress)

EXIT_OK, EXIT_QEMU, EXIT_USAGE, EXIT_NO_PROMPT = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m host_tools.qemu",
                                description="Boot an emulated phone (QEMU + swtpm).")
    p.add_argument("--device", required=True, metavar="NAME",
                   help="device name; its state lives in build/devices/NAME/")
    p.add_argument("--exec", action="append", default=[], metavar="CMD", dest="commands",
                   help="run this console command after boot (repeatable), then power off")
    p.add_argument("--console", choices=("stdio", "pty", "tcp"), default="stdio",
                   help="where the serial console goes (default: this terminal)")
    p.add_argument("--kvm", action="store_true", help="use KVM instead of TCG (opt-in)")
    p.add_argument("--net", action="store_true", help="user-mode network (virtio-net)")
    p.add_argument("--hostfwd", action="append", default=[], metavar="FWD",
                   help="with --net: forward a host port into the guest, e.g. "
                        "udp:127.0.0.1:40000-:40000 (repeatable)")
    p.add_argument("--forward-media", action="store_true",
                   help="with --net: after boot, forward the RTP/RTCP ports the phone reports "
                        "(status media_port) from 127.0.0.1 so host softphones can send it media")
    p.add_argument("--no-secure-boot", action="store_true",
                   help="boot without Secure Boot (plain OVMF, no keys; PCRs 4 and 7 differ from "
                        "reference.json, so a sealed device does not unseal)")
    p.add_argument("--memory", type=int, default=512, metavar="MB")
    p.add_argument("--board", default=BOARD)
    p.add_argument("--image-dir", type=Path, metavar="DIR",
                   help="built image directory (default build/<board>)")
    p.add_argument("--devices-dir", type=Path, metavar="DIR",
                   help="where device state lives (default build/devices)")
    p.add_argument("--reflash", action="store_true",
                   help="copy the built image to the device's flash again before booting")
    p.add_argument("--timeout", type=float, default=240.0,
                   help="seconds to wait for the console prompt (default 240)")
    return p


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _forward(device: Device, run: Running, con: Console) -> None:
    if device.config.forward_media:
        port = run.forward_media(con)
        if port:
            print(f"[{device.name}] media: host 127.0.0.1:{port}/{port + 1} (udp) -> phone",
                  file=sys.stderr)
        else:
            print(f"[{device.name}] media: the phone reported no media port (no phone running)",
                  file=sys.stderr)


def run_exec(device: Device, commands: list[str], timeout: float) -> int:
    with device.running("tcp") as run:
        con = run.console
        assert con is not None
        try:
            waited = run.wait_prompt(con, timeout, stderr_progress(device.name))
            clear_progress()
            print(f"[{device.name}] prompt after {run.elapsed():.1f} s "
                  f"(waited {waited:.1f} s)", file=sys.stderr)
            _forward(device, run, con)
            for cmd in commands:
                print(f"[{device.name}] phone> {cmd}", file=sys.stderr)
                if cmd.strip() == "poweroff":
                    break
                answer = con.command(cmd)
                sys.stdout.write(answer)
                sys.stdout.flush()
        finally:
            clear_progress()
            run.shutdown(con)
        print(f"[{device.name}] powered off after {run.elapsed():.1f} s", file=sys.stderr)
    return EXIT_OK


def run_stdio(device: Device, timeout: float) -> int:
    with device.running("tcp") as run:
        con = run.console
        assert con is not None
        try:
            run.wait_prompt(con, timeout, stderr_progress(device.name))
            clear_progress()
            _forward(device, run, con)
            print(f"[{device.name}] ready after {run.elapsed():.1f} s; Ctrl-] powers off and "
                  "leaves", file=sys.stderr)
            sys.stdout.write(con.text().rsplit("\n", 1)[-1])
            sys.stdout.flush()
            interactive.bridge(con, lambda: run.proc.poll() is None)
        finally:
            clear_progress()
            print(f"\n[{device.name}] powering off", file=sys.stderr)
            run.shutdown(con)
    return EXIT_OK


def run_external(device: Device, console: str, timeout: float) -> int:
    with device.running("pty" if console == "pty" else "tcp-external") as run:
        print(f"[{device.name}] console on {run.target} (log: {device.console_log}); "
              "Ctrl-C stops the device", file=sys.stderr)
        print(run.target, flush=True)
        show = stderr_progress(device.name)
        ready = False
        while run.proc.poll() is None:
            time.sleep(0.5)
            if not ready:
                # QEMU's chardev logfile has every byte, whoever is attached to the console.
                text = _tail(device.console_log)
                ready = PROMPT in text
                if ready:
                    clear_progress()
                    print(f"[{device.name}] phone prompt after {run.elapsed():.1f} s",
                          file=sys.stderr)
                else:
                    show(run.elapsed(), last_line(text))
        clear_progress()
        print(f"[{device.name}] QEMU exited with status {run.proc.returncode}",
              file=sys.stderr)
    return EXIT_OK


def _tail(path: Path, size: int = 4096) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Ctrl-C and SIGTERM both end in the finally blocks that stop QEMU and swtpm by PID (set
    # explicitly: a shell may start us with SIGINT ignored).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    config = DeviceConfig(board=args.board, build_dir=args.image_dir,
                          devices_dir=args.devices_dir, memory_mb=args.memory, kvm=args.kvm,
                          network=args.net, host_forwards=args.hostfwd,
                          forward_media=args.forward_media,
                          secure_boot=False if args.no_secure_boot else None)
    try:
        device = Device(args.device, config)
        for note in device.prepare(reflash=args.reflash):
            print(f"[{device.name}] {note}", file=sys.stderr)
        if args.commands:
            return run_exec(device, args.commands, args.timeout)
        if args.console == "stdio":
            return run_stdio(device, args.timeout)
        return run_external(device, args.console, args.timeout)
    except ConsoleTimeout as e:
        clear_progress()
        print(f"qemu: error: {e} (console log: {Path(device.console_log)})", file=sys.stderr)
        return EXIT_NO_PROMPT
    except (DeviceError, ConsoleError, OSError) as e:
        clear_progress()
        print(f"qemu: error: {e}", file=sys.stderr)
        return EXIT_QEMU
    except KeyboardInterrupt:
        clear_progress()
        print("qemu: interrupted; everything stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
