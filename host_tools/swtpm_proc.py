"""Start, provision and stop software TPMs (swtpm) for QEMU and host tests.

Reusable by the QEMU runner, the image builder and tests::

    from host_tools.swtpm_proc import Swtpm, swtpm_setup, stop_process

    swtpm_setup(state, pcr_banks=["sha256"], create_certs=True, workdir=tmp)
    with Swtpm(state, sock_dir) as tpm:
        qemu_args = tpm.qemu_args()          # -chardev/-tpmdev/-device tpm-crb
        ...

The TPM is started without ``--flags startup-clear``: the firmware (OVMF)
sends TPM2_Startup itself.  An empty state directory gives a TPM 2 with all
four PCR banks (sha1, sha256, sha384, sha512) active; ``swtpm_setup`` with
``pcr_banks`` restricts that (a provisioned device has sha256 only).
Processes are stopped by PID: SIGTERM, wait, then SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Sequence

from host_tools import ports

SWTPM = "swtpm"
SWTPM_SETUP = "swtpm_setup"
SWTPM_LOCALCA = "/usr/bin/swtpm_localca"
LOCALCA_OPTIONS = "/etc/swtpm-localca.options"


class SwtpmError(RuntimeError):
    """swtpm or swtpm_setup failed."""


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None,
                 timeout: float = 5.0) -> int | None:
    """Stop *proc* by its PID: SIGTERM, wait up to *timeout*, then SIGKILL.

    Safe to call several times and on processes that already exited.
    Returns the exit status (None if it could not be reaped).
    """
    if proc is None:
        return None
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.terminate()
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return proc.poll()
    try:
        proc.kill()
        return proc.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        return proc.poll()


def swtpm_version() -> str:
    """First line of ``swtpm --version``."""
    out = subprocess.run([SWTPM, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[0]


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now, below the ephemeral range (host_tools.ports)."""
    return ports.free_port(socket.SOCK_STREAM)


def write_localca_config(workdir: Path) -> Path:
    """Write a swtpm_setup.conf + swtpm-localca.conf using a private CA in *workdir*.

    Avoids the system CA under /var/lib/swtpm-localca.  Returns the path of
    the swtpm_setup.conf to pass as ``--config``.
    """
    workdir = workdir.resolve()
    ca = workdir / "localca"
    ca.mkdir(parents=True, exist_ok=True)
    localca_conf = workdir / "swtpm-localca.conf"
    localca_conf.write_text(
        f"statedir = {ca}\n"
        f"signingkey = {ca}/signkey.pem\n"
        f"issuercert = {ca}/issuercert.pem\n"
        f"certserial = {ca}/certserial\n"
    )
    setup_conf = workdir / "swtpm_setup.conf"
    setup_conf.write_text(
        f"create_certs_tool = {SWTPM_LOCALCA}\n"
        f"create_certs_tool_config = {localca_conf}\n"
        f"create_certs_tool_options = {LOCALCA_OPTIONS}\n"
        "active_pcr_banks = sha256\n"
    )
    return setup_conf


def swtpm_setup(state_dir: Path, pcr_banks: Sequence[str] = ("sha256",), *,
                create_certs: bool = False, workdir: Path | None = None,
                timeout: float = 120.0) -> str:
    """Manufacture a TPM 2 in *state_dir* with only *pcr_banks* active.

    With *create_certs*, also create EK and platform certificates signed by a
    private local CA kept in *workdir* (a temporary directory if None; that CA
    is then thrown away).  Returns swtpm_setup's log output.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="swtpm-setup-")
        workdir = Path(tmp.name)
    try:
        conf = write_localca_config(workdir)
        cmd = [SWTPM_SETUP, "--tpm2", "--tpmstate", str(state_dir), "--config", str(conf),
               "--pcr-banks", ",".join(pcr_banks), "--overwrite"]
        if create_certs:
            cmd += ["--create-ek-cert", "--create-platform-cert"]
        env = dict(os.environ, XDG_CONFIG_HOME=str(workdir))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                              check=False)
        if proc.returncode != 0:
            raise SwtpmError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}{proc.stderr}")
        return proc.stdout + proc.stderr
    finally:
        if tmp is not None:
            tmp.cleanup()


class Swtpm:
    """A running ``swtpm socket --tpm2`` (context manager).

    For QEMU (the default, ``server=False``) only the control channel is
    opened, as a unix socket (``ctrl_path``): QEMU's ``-tpmdev emulator``
    hands swtpm the data channel over it (CMD_SET_DATAFD), which swtpm refuses
    when it also has a ``--server`` socket ("Failed to send CMD_SET_DATAFD").

    For host tools (``server=True``) a command channel is opened too: a unix
    socket (``server_path``) or, with ``tcp=True``, TCP on
    ``127.0.0.1:server_port`` with ctrl on ``ctrl_port``, e.g. for
    ``TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=...`` (see ``tcti()``); that
    TPM then needs TPM2_Startup from the client (``tpm2_startup -c``) or
    ``extra_args=["--flags", "startup-clear"]``.
    """

    def __init__(self, state_dir: Path, sock_dir: Path, *, server: bool = False,
                 tcp: bool = False,
                 log_file: Path | None = None, log_level: int = 1,
                 extra_args: Sequence[str] = ()) -> None:
        self.state_dir = state_dir.resolve()
        self.sock_dir = sock_dir.resolve()
        if tcp and not server:
            raise SwtpmError("tcp=True needs server=True")
        self.server = server
        self.tcp = tcp
        self.log_file = log_file
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.ctrl_path = self.sock_dir / "swtpm-ctrl.sock"
        self.server_path = self.sock_dir / "swtpm.sock"
        self.server_port: int | None = None
        self.ctrl_port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [SWTPM, "socket", "--tpm2", "--tpmstate", f"dir={self.state_dir}"]
        if self.tcp:
            self.server_port = free_tcp_port()
            self.ctrl_port = free_tcp_port()
            cmd += ["--server", f"type=tcp,port={self.server_port},bindaddr=127.0.0.1",
                    "--ctrl", f"type=tcp,port={self.ctrl_port},bindaddr=127.0.0.1"]
        elif self.server:
            cmd += ["--server", f"type=unixio,path={self.server_path}",
                    "--ctrl", f"type=unixio,path={self.ctrl_path}"]
        else:
            cmd += ["--ctrl", f"type=unixio,path={self.ctrl_path}"]
        if self.log_file is not None:
            cmd += ["--log", f"file={self.log_file.resolve()},level={self.log_level}"]
        return cmd + self.extra_args

    def start(self, timeout: float = 10.0) -> "Swtpm":
        if self.proc is not None:
            raise SwtpmError("swtpm already started")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.sock_dir.mkdir(parents=True, exist_ok=True)
        for p in (self.ctrl_path, self.server_path):
            p.unlink(missing_ok=True)
        cmd = self.command()
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._stderr,
                                     stderr=self._stderr, start_new_session=True)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SwtpmError(f"swtpm exited with {self.proc.returncode}: {self.output()}")
            if self.tcp:
                assert self.ctrl_port is not None and self.server_port is not None
                if all(_tcp_listening(p) for p in (self.ctrl_port, self.server_port)):
                    return
            elif self.ctrl_path.exists() and (not self.server or self.server_path.exists()):
                return
            time.sleep(0.02)
        raise SwtpmError(f"swtpm not ready after {timeout} s: {self.output()}")

    def output(self) -> str:
        """What swtpm wrote to stdout/stderr so far."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def tcti(self) -> str:
        """A TCTI string for tpm2-tools / tpm2-tss (needs ``tcp=True``)."""
        if not self.tcp:
            raise SwtpmError("tcti() needs Swtpm(..., tcp=True)")
        return f"swtpm:host=127.0.0.1,port={self.server_port}"

    def qemu_args(self, device: str = "tpm-crb", ident: str = "tpm0") -> list[str]:
        """QEMU arguments attaching this TPM (unix control socket only)."""
        if self.server:
            raise SwtpmError("qemu_args() needs Swtpm(..., server=False)")
        return ["-chardev", f"socket,id=chr{ident},path={self.ctrl_path}",
                "-tpmdev", f"emulator,id={ident},chardev=chr{ident}",
                "-device", f"{device},tpmdev={ident}"]

    def stop(self, timeout: float = 5.0) -> int | None:
        rc = stop_process(self.proc, timeout)
        for p in (self.ctrl_path, self.server_path):
            try:
                p.unlink(missing_ok=True)
            except OSError:
                pass
        return rc

    def __enter__(self) -> "Swtpm":
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def _tcp_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def make_state_dir(path: Path, *, fresh: bool = True) -> Path:
    """Create *path* as an (by default: emptied) swtpm state directory."""
    if fresh and path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


__all__ = ["Swtpm", "SwtpmError", "swtpm_setup", "swtpm_version", "stop_process",
           "write_localca_config", "free_tcp_port", "make_state_dir"]
