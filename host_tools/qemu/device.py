"""One emulated phone: per-device state, swtpm + QEMU processes, the booted console.

A device NAME keeps its state under ``build/devices/NAME/`` so it behaves like one physical
phone across boots::

    tpm/            swtpm state (the phone's TPM: NV, seeds, DA counter survive reboots)
    OVMF_VARS.fd    its UEFI variables (copy of OVMF_VARS_4M.fd)
    disk.img        its flash: a copy of build/<board>/disk.img made on first use
    console.log     everything the serial console printed in the last boot
    qemu.log        QEMU's own stderr of the last boot

``Device(name).boot()`` is a context manager: it starts swtpm and QEMU, waits for the console
prompt and yields a ``host_tools.console.Console``; on exit it powers the phone off through the
console (TPM2_Shutdown first) and stops whatever still runs by PID.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterator

from serial import SerialException

from host_tools import board as boards
from host_tools.console import Console, ConsoleError, open_port
from host_tools.swtpm_proc import Swtpm, free_tcp_port, stop_process

REPO = Path(__file__).resolve().parents[2]
KEYS_DIR = REPO / "build" / "keys"  # the vendor's keys and CAs (manufacturer CA, device CA, ...)
BOARD = "qemu-x86_64"
# The machine, firmware, TPM device and QEMU binary are the board's (board.json "emulator",
# host_tools/board.py); these are qemu-x86_64's, kept for callers that name them.
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# Secure Boot (issue 9): the SMM build of OVMF keeps the variable store out of the OS's reach; it
# needs q35 with SMM and the pflash marked secure (only SMM code may write it).
OVMF_CODE_SECBOOT = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
SECBOOT_ARGS = ("-global", "driver=cfi.pflash01,property=secure,value=on")
ENROLLED_VARS_NAME = "OVMF_VARS.secboot.fd"  # host_tools/image/secureboot.py writes it
QEMU = "qemu-system-x86_64"
DISK_NAME = "disk.img"
# The board's hardware RNG: QEMU's virtio-rng fed from the host's /dev/urandom. OVMF then offers
# EFI_RNG_PROTOCOL, the kernel's EFI stub passes a seed (LINUX_EFI_RANDOM_SEED_TABLE) and the CRNG
# is ready at time 0. Without one the first getrandom() of the guest (every python3 start-up:
# hash seed; OpenSSL) blocks about 1.2 s under TCG while the kernel gathers jitter entropy.
# No option ROM and nothing measured into the policy PCRs (reference.json still matches).
RNG_ARGS = ("-object", "rng-random,id=rng0,filename=/dev/urandom",
            "-device", "virtio-rng-pci,rng=rng0")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HOSTFWD_RE = re.compile(r"^(tcp|udp):(\d{1,3}(\.\d{1,3}){3})?:\d{1,5}-(\d{1,3}(\.\d{1,3}){3})?:\d{1,5}$")
_PTY_RE = re.compile(r"char device redirected to (/dev/pts/\d+) \(label ser0\)")


class DeviceError(RuntimeError):
    """The device cannot be prepared or started; QEMU died (message carries its stderr)."""


@dataclass
class DeviceConfig:
    board: str = BOARD
    build_dir: Path | None = None    # default <repo>/build/<board>
    devices_dir: Path | None = None  # default <repo>/build/devices
    memory_mb: int = 512
    kvm: bool = False                # KVM is broken on our machines: opt-in only (DESIGN.md)
    network: bool = False
    # QEMU user-mode forwards into the guest ("udp:127.0.0.1:40000-:40000"): how host peers reach
    # the phone's RTP/RTCP ports behind the NAT (docs/calling.md). Needs network=True.
    host_forwards: list[str] = field(default_factory=list)
    # After the prompt, forward the RTP/RTCP ports the phone reports in `status` (media_port)
    # from the host's 127.0.0.1 into the guest, through QEMU's monitor (hostfwd_add): each phone
    # picks its own ports, so several phones from one image can run side by side.
    forward_media: bool = False
    extra_qemu_args: list[str] = field(default_factory=list)
    # UEFI Secure Boot with the vendor's keys: None follows the build (on when it wrote the
    # enrolled variable store); False boots the old way (plain OVMF, no keys), for attack tests.
    secure_boot: bool | None = None
    # A guest reboot (the phone's SMP OS reset, docs/flashing.md) restarts the machine in the same
    # QEMU; by default (-no-reboot) it ends QEMU, which tests of power-off paths rely on.
    reboot: bool = False


class Device:
    def __init__(self, name: str, config: DeviceConfig | None = None) -> None:
        if not _NAME_RE.match(name):
            raise DeviceError(f"bad device name {name!r} (letters, digits, _.-; at most 64)")
        self.name = name
        self.config = config or DeviceConfig()
        self.build_dir = self.config.build_dir or REPO / "build" / self.config.board
        self.dir = (self.config.devices_dir or REPO / "build" / "devices") / name
        self.tpm_dir = self.dir / "tpm"
        self.vars = self.dir / "OVMF_VARS.fd"
        self.disk = self.dir / DISK_NAME
        self.console_log = self.dir / "console.log"
        self.qemu_log = self.dir / "qemu.log"
        self._lock: IO[bytes] | None = None
        for fwd in self.config.host_forwards:
            if not _HOSTFWD_RE.match(fwd):
                raise DeviceError(f"bad host forward {fwd!r} "
                                  "(PROTO:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT, PROTO tcp or udp)")
        if (self.config.host_forwards or self.config.forward_media) and not self.config.network:
            raise DeviceError("host forwards need the network (--net)")
        self.monitor_path = self.dir / "qmp.sock"
        self.enrolled_vars = self.build_dir / ENROLLED_VARS_NAME
        self.secure_boot = (self.enrolled_vars.is_file() if self.config.secure_boot is None
                            else self.config.secure_boot)
        try:
            self.emulator = boards.emulator(boards.description(self.config.board, REPO))
        except boards.BoardError as e:
            raise DeviceError(str(e)) from None

    # --- state ----------------------------------------------------------------------------

    @property
    def image(self) -> Path:
        return self.build_dir / DISK_NAME

    def prepare(self, reflash: bool = False) -> list[str]:
        """Create the device's state on first use (or re-copy the image with *reflash*).
        Returns notes for the user (e.g. that the flash is older than the built image)."""
        notes: list[str] = []
        self.dir.mkdir(parents=True, exist_ok=True)
        self._check_board()
        self.tpm_dir.mkdir(exist_ok=True)
        self._prepare_vars(notes)
        if reflash or not self.disk.exists():
            if not self.image.is_file():
                raise DeviceError(f"no image {self.image}: run `make image` first")
            tmp = self.disk.with_suffix(".tmp")
            shutil.copyfile(self.image, tmp)
            os.replace(tmp, self.disk)
            notes.append(f"flashed {self.image} to {self.disk}")
        elif self.image.is_file() and self.image.stat().st_mtime > self.disk.stat().st_mtime:
            notes.append(f"note: {self.image} is newer than this device's flash; "
                         "use --reflash to boot the new image")
        self._manufacture_tpm(notes)
        return notes

    def _manufacture_tpm(self, notes: list[str]) -> None:
        """A new device's TPM is manufactured like a real one: EK certificates from the project's
        TPM manufacturer CA (host_tools/provision/manufacturer.py), all four PCR banks. An
        existing TPM state is never touched."""
        from host_tools.provision import manufacturer
        if manufacturer.manufactured(self.tpm_dir):
            return
        manufacturer.manufacture(self.tpm_dir, KEYS_DIR)
        notes.append(f"manufactured the TPM in {self.tpm_dir} (EK certificates from "
                     f"{manufacturer.ca_workdir(KEYS_DIR)})")

    def _check_board(self) -> None:
        """A device is one board for life: its flash, UEFI variables and TPM state were made for
        that board's firmware and image. The board is recorded at first use (``board``); booting
        the device as another board is refused (a device from before boards were recorded is
        taken to be the one asked for)."""
        marker = self.dir / "board"
        if marker.is_file():
            was = marker.read_text().strip()
            if was != self.config.board:
                raise DeviceError(f"device {self.name} is a {was} device (its flash, UEFI "
                                  f"variables and TPM were made for that board), not "
                                  f"{self.config.board}: use another device name or delete "
                                  f"{self.dir}")
            return
        marker.write_text(self.config.board + "\n")

    def _prepare_vars(self, notes: list[str]) -> None:
        """The device's UEFI variables: with Secure Boot, a copy of the build's store with the
        vendor's PK/KEK/db enrolled (this is the enrollment: at provisioning, which prepares the
        device, or at the first boot of an unprovisioned one); without, OVMF's empty store. A
        store of the other kind is replaced (its boot entries are lost; the keys are the point)."""
        if self.secure_boot and not self.enrolled_vars.is_file():
            raise DeviceError(f"no enrolled variable store {self.enrolled_vars}: the build has "
                              "Secure Boot off (board.json secure_boot) or `make image` did not run")
        if self.vars.exists():
            from host_tools.qemu import uefivars
            try:
                enrolled = uefivars.variable_data(self.vars, "PK") is not None
            except uefivars.VarsError:
                enrolled = not self.secure_boot  # unreadable: replace it
            if enrolled == self.secure_boot:
                return
            notes.append(f"{self.vars}: {'enrolling Secure Boot keys' if self.secure_boot else 'Secure Boot off: fresh variables without keys'}")
        tmp = self.vars.with_suffix(".tmp")
        shutil.copyfile(self.enrolled_vars if self.secure_boot else self.emulator.firmware_vars,
                        tmp)
        os.replace(tmp, self.vars)

    def lock(self) -> None:
        """One QEMU per device: its TPM state and flash are not shareable."""
        self.dir.mkdir(parents=True, exist_ok=True)
        f = (self.dir / "lock").open("wb")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise DeviceError(f"device {self.name} is already running") from None
        self._lock = f

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # --- QEMU -----------------------------------------------------------------------------

    def qemu_command(self, tpm_args: list[str], serial_chardev: str) -> list[str]:
        accel = "kvm" if self.config.kvm else "tcg"
        emu = self.emulator
        code = emu.firmware_code_secure_boot if self.secure_boot else emu.firmware_code
        cmd = [emu.binary, "-machine", emu.machine_secure_boot if self.secure_boot else emu.machine,
               *(("-cpu", emu.cpu) if emu.cpu else ()), "-accel", accel,
               "-m", str(self.config.memory_mb),
               "-nodefaults", "-no-user-config", "-display", "none",
               *(() if self.config.reboot else ("-no-reboot",)),
               "-chardev", f"{serial_chardev},logfile={self.console_log}",
               "-serial", "chardev:ser0",
               *(emu.secure_boot_args if self.secure_boot else ()),
               "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
               "-drive", f"if=pflash,format=raw,unit=1,file={self.vars}",
               "-drive", f"if=virtio,format=raw,file={self.disk}",
               *RNG_ARGS, *tpm_args]
        if self.config.network:
            # An empty romfile keeps iPXE's option ROM out of PCR 2 (DESIGN.md).
            netdev = "user,id=net0" + "".join(f",hostfwd={f}" for f in self.config.host_forwards)
            cmd += ["-netdev", netdev, "-device", "virtio-net-pci,netdev=net0,romfile=",
                    # QMP, for hostfwd_add once the phone has bound its media ports
                    "-qmp", f"unix:{self.monitor_path},server=on,wait=off"]
        else:
            cmd += ["-nic", "none"]
        return cmd + self.config.extra_qemu_args

    @contextlib.contextmanager
    def running(self, console: str = "tcp") -> Iterator["Running"]:
        """Start swtpm and QEMU and yield a Running; both are stopped by PID on exit, whatever
        happened.  The serial line is

        * ``"tcp"``: a TCP socket QEMU holds the machine for until this driver has connected
          (``wait=on``), so nothing the phone prints is lost; ``Running.console`` is connected;
        * ``"tcp-external"``: a TCP socket for another tool (``wait=off``);
        * ``"pty"``: a pseudo-terminal for another tool (``Running.target`` is its path).
        """
        if console not in ("tcp", "tcp-external", "pty"):
            raise DeviceError(f"console must be tcp, tcp-external or pty, not {console!r}")
        self.lock()
        try:
            self.prepare()
            with Swtpm(self.tpm_dir, self.dir) as tpm:
                port = free_tcp_port() if console != "pty" else 0
                wait = "on" if console == "tcp" else "off"
                chardev = (f"socket,id=ser0,host=127.0.0.1,port={port},server=on,wait={wait}"
                           if console != "pty" else "pty,id=ser0")
                cmd = self.qemu_command(tpm.qemu_args(self.emulator.tpm_device), chardev)
                self.console_log.unlink(missing_ok=True)
                with self.qemu_log.open("wb") as err:
                    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err,
                                            stderr=subprocess.STDOUT, start_new_session=True)
                run = Running(self, proc, tpm, time.monotonic())
                try:
                    if console == "pty":
                        run.target = run.wait_pty()
                    else:
                        run.target = f"socket://127.0.0.1:{port}"
                        if console == "tcp":
                            run.console = run.connect_retry()
                        else:
                            run.wait_listening(port)
                    yield run
                finally:
                    run.stop()
        finally:
            self.unlock()

    @contextlib.contextmanager
    def boot(self, timeout: float = 240.0,
             progress: Callable[[float, str], None] | None = None) -> Iterator[Console]:
        """Boot and yield the console at its first prompt; power off cleanly on exit."""
        with self.running("tcp") as run:
            con = run.console
            assert con is not None
            try:
                run.wait_prompt(con, timeout, progress)
                if self.config.forward_media:
                    run.forward_media(con)
                yield con
            finally:
                run.shutdown(con)


class Running:
    """A started QEMU (+ swtpm) of one device."""

    def __init__(self, device: Device, proc: subprocess.Popen[bytes], tpm: Swtpm,
                 started: float) -> None:
        self.device = device
        self.proc = proc
        self.tpm = tpm
        self.started = started
        self.target = ""  # pyserial URL or pty path of the console
        self.console: Console | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def qemu_output(self) -> str:
        try:
            return self.device.qemu_log.read_text(errors="replace").strip()
        except OSError:
            return ""

    def check_alive(self) -> None:
        """Raise DeviceError with QEMU's stderr if QEMU has exited."""
        rc = self.proc.poll()
        if rc is not None:
            raise DeviceError(f"QEMU exited with status {rc} after {self.elapsed():.1f} s: "
                              f"{self.qemu_output()[-2000:] or '(no output)'}")

    def wait_listening(self, port: int, timeout: float = 30.0) -> None:
        """Wait until QEMU's console socket accepts (``wait=off``: probing costs nothing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise DeviceError(f"QEMU never listened on 127.0.0.1:{port}: {self.qemu_output()}")

    def connect_retry(self, timeout: float = 30.0,
                      on_text: Callable[[str], None] | None = None) -> Console:
        """Connect the console driver as soon as QEMU listens (it then starts the machine)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                return Console(open_port(self.target), on_text)
            except (OSError, SerialException) as e:
                if time.monotonic() > deadline:
                    raise DeviceError(f"cannot connect to {self.target}: {e}; "
                                      f"{self.qemu_output()}") from None
                time.sleep(0.05)

    def wait_pty(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            m = _PTY_RE.search(self.qemu_output())
            if m:
                return m.group(1)
            time.sleep(0.05)
        raise DeviceError(f"QEMU did not report its pty: {self.qemu_output()}")

    def wait_prompt(self, con: Console, timeout: float,
                    progress: Callable[[float, str], None] | None = None) -> float:
        def tick() -> None:
            if progress is not None:
                progress(self.elapsed(), con.last_line())
        # The driver is attached from power-on (wait=on): it sees the first prompt, no pokes.
        return con.wait_prompt(timeout, alive=self.check_alive, tick=tick,
                               poke=self.console is not con)

    def monitor(self, command: str, timeout: float = 10.0) -> str:
        """One QEMU human-monitor command through QMP (`human-monitor-command`; needs
        network=True, which adds the QMP socket); returns the command's output ("" when quiet)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.device.monitor_path))
            f = s.makefile("rwb")

            def reply() -> dict[str, object]:
                while True:
                    line = f.readline()
                    if not line:
                        raise DeviceError("QMP closed the connection")
                    msg = json.loads(line)
                    if "event" in msg:
                        continue   # asynchronous events interleave with replies
                    if not isinstance(msg, dict):
                        raise DeviceError(f"QMP sent {msg!r}")
                    return msg

            def execute(cmd: str, **args: object) -> object:
                f.write(json.dumps({"execute": cmd, "arguments": args} if args
                                   else {"execute": cmd}).encode() + b"\n")
                f.flush()
                msg = reply()
                if "error" in msg:
                    raise DeviceError(f"QMP {cmd}: {msg['error']}")
                return msg.get("return")

            reply()   # greeting
            execute("qmp_capabilities")
            out = execute("human-monitor-command", **{"command-line": command})
        return out if isinstance(out, str) else ""

    def hostfwd_add(self, rule: str) -> None:
        """Forward a host port into the guest now (rule as for DeviceConfig.host_forwards)."""
        if not _HOSTFWD_RE.match(rule):
            raise DeviceError(f"bad host forward {rule!r}")
        out = self.monitor(f"hostfwd_add net0 {rule}")
        if out.strip():
            raise DeviceError(f"hostfwd_add {rule}: {out.strip()}")

    def forward_media(self, con: Console, timeout: float = 30.0) -> int:
        """Wait until the phone reports its RTP port in status (media_port; RTCP is +1), forward
        both from 127.0.0.1 into the guest, and return the port. A phone whose credentials stayed
        sealed never binds media: its status has no media_port and nothing is forwarded."""
        deadline = time.monotonic() + timeout
        while True:
            st = con.status()
            port = st.get("media_port")
            if isinstance(port, int):
                break
            if st.get("unsealed") is False or time.monotonic() > deadline:
                return 0
            time.sleep(0.5)
        for p in (port, port + 1):
            self.hostfwd_add(f"udp:127.0.0.1:{p}-:{p}")
        return port

    def shutdown(self, con: Console | None, timeout: float = 30.0) -> None:
        """Clean power-off through the console when QEMU still runs; then stop by PID."""
        try:
            # Only a phone that reached its prompt can power off; otherwise stop by PID at once.
            if con is not None and con.prompt_seen and self.proc.poll() is None:
                try:
                    con.poweroff(timeout)
                except (ConsoleError, OSError):
                    pass
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if con is not None:
                con.close()
            self.stop()

    def stop(self) -> None:
        stop_process(self.proc, 5.0)
        self.tpm.stop()


def stderr_progress(name: str) -> Callable[[float, str], None]:
    """A progress display on stderr: one rewritten line on a terminal, a line per 5 s otherwise."""
    tty = sys.stderr.isatty()
    state = {"printed": -5.0}

    def show(elapsed: float, last: str) -> None:
        width = shutil.get_terminal_size((100, 20)).columns
        line = f"[{name}] booting {elapsed:5.1f} s | {last}"
        if tty:
            sys.stderr.write("\r" + line[:width - 1].ljust(width - 1))
            sys.stderr.flush()
        elif elapsed - state["printed"] >= 5.0:
            state["printed"] = elapsed
            sys.stderr.write(line[:160] + "\n")

    return show


def clear_progress() -> None:
    if sys.stderr.isatty():
        width = shutil.get_terminal_size((100, 20)).columns
        sys.stderr.write("\r" + " " * (width - 1) + "\r")
        sys.stderr.flush()
