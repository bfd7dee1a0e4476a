"""Shared fixtures: real software TPMs (swtpm) for tests/tpm.

`swtpm` is one TPM for the session (tests flush what they load); `fresh_swtpm` is a new TPM with
an empty state directory for tests that change global state (dictionary-attack lockout). Each is
`swtpm socket --tpm2` on two consecutive free TCP ports P (commands) and P+1 (control), the
convention of `firmware.tpm.transport.open_uri("swtpm:HOST:P")` and of tpm2-tools' swtpm TCTI, and
is stopped by PID (terminate, wait, kill).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest



@pytest.fixture(autouse=True)
def _randomness_restored() -> Iterator[None]:
    """Every test leaves firmware.compat.random_bytes as it found it. A replay helper that swapped
    in its counter for good once made every later TPM nonce and salt in the run predictable (the
    salted-unseal test then found the PIN's bytes in a counter-made nonce)."""
    from firmware import compat

    saved = compat.random_bytes
    yield
    if compat.random_bytes is not saved:
        compat.random_bytes = saved
        pytest.fail("the test replaced firmware.compat.random_bytes and did not restore it")


def pytest_configure(config: pytest.Config) -> None:
    """Before any xdist worker starts: the vendor's device CA and the TPM manufacturer CA exist
    (both are created on first use; two workers creating them at once would each trust a
    different CA)."""
    if hasattr(config, "workerinput"):
        return
    keys = Path(__file__).resolve().parents[1] / "build" / "keys"
    if not keys.is_dir():
        return  # no build yet: nothing boots or provisions without `make image`
    from host_tools.provision import device_ca, manufacturer

    device_ca.load_or_create(keys)
    if not manufacturer.known_cas(keys)[0]:
        tmp = Path(tempfile.mkdtemp(prefix="manufacturer-ca-"))
        try:
            manufacturer.manufacture(tmp, keys)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    # Registered here (the rootdir conftest) so `pytest tests --target X` works, not only
    # `pytest tests/hil --target X`; tests/hil/conftest.py tolerates the double registration.
    parser.addoption("--target", default=None, metavar="PORT",
                     help="serial console of a real board for tests/hil (/dev/ttyUSB0, "
                          "socket://host:port); default: boot a QEMU device")


class SwtpmProcess:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state_dir / "swtpm.log"

    @property
    def uri(self) -> str:
        return f"swtpm:127.0.0.1:{self.port}"

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def start(self, timeout: float = 10.0) -> None:
        if shutil.which("swtpm") is None:
            pytest.skip("swtpm is not installed")
        for _ in range(20):
            self.port = _two_free_ports()
            cmd = ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.state_dir}",
                   "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
                   "--ctrl", f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1",
                   "--flags", "not-need-init,startup-clear",
                   "--log", f"file={self.log},level=1"]
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break  # lost the port race: try other ports
                if _listening(self.port) and _listening(self.port + 1):
                    return
                time.sleep(0.02)
            self.stop()
        raise RuntimeError("swtpm did not start: " + self.log.read_text(errors="replace")
                           if self.log.exists() else "swtpm did not start")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def _two_free_ports() -> int:
    while True:
        p = random.randint(20000, 60000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _run_swtpm() -> Iterator[SwtpmProcess]:
    tmp = Path(tempfile.mkdtemp(prefix="swtpm-test-"))
    sw = SwtpmProcess(tmp)
    try:
        sw.start()
        yield sw
    finally:
        sw.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def swtpm() -> Iterator[SwtpmProcess]:
    yield from _run_swtpm()


@pytest.fixture
def fresh_swtpm() -> Iterator[SwtpmProcess]:
    yield from _run_swtpm()


@pytest.fixture(scope="module")
def module_swtpm() -> Iterator[SwtpmProcess]:
    """A TPM of its own for one test module (tests that reboot it or provision it once)."""
    yield from _run_swtpm()
