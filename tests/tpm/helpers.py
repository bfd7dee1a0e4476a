"""Helpers for the swtpm tests: a transport that records the wire, tpm2-tools runner, cleanup."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from firmware.tpm import constants as C
from firmware.tpm.client import Tpm
from firmware.tpm.errors import TpmError
from firmware.tpm.transport import open_uri


class RecordingTransport:
    """Passes bytes through to a real transport and keeps every command and response."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.commands: list[bytes] = []
        self.responses: list[bytes] = []

    def send(self, command: bytes) -> bytes:
        self.commands.append(bytes(command))
        rsp: bytes = self.inner.send(command)  # type: ignore[attr-defined]
        self.responses.append(bytes(rsp))
        return rsp

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]

    def wire(self) -> bytes:
        return b"".join(self.commands) + b"".join(self.responses)


def connect(uri: str, record: bool = False) -> Tpm:
    t = open_uri(uri)
    return Tpm(RecordingTransport(t) if record else t)


def tools(tcti: str, *args: str, input: bytes | None = None, cwd: Path | None = None,
          check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run a tpm2-tools command against the test swtpm (our connection must be closed first:
    swtpm serves one client connection at a time)."""
    env = dict(os.environ, TPM2TOOLS_TCTI=tcti)
    proc = subprocess.run(list(args), input=input, capture_output=True, env=env, cwd=cwd,
                          timeout=60, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(args), proc.returncode,
                                                     proc.stderr.decode(errors="replace")))
    return proc


def flush_all(tpm: Tpm) -> None:
    """Flush every loaded object and session: swtpm has no resource manager and few slots."""
    for first in (C.TPM_HT_TRANSIENT << 24, C.TPM_HT_HMAC_SESSION << 24, C.TPM_HT_POLICY_SESSION << 24):
        _, handles = tpm.get_capability(C.TPM_CAP_HANDLES, first, 64)
        # Part 2 §6.12: TPM_HT_LOADED_SESSION (0x02) lists loaded HMAC *and* policy sessions
        for h in handles:
            if h >> 24 in (C.TPM_HT_TRANSIENT, C.TPM_HT_HMAC_SESSION, C.TPM_HT_POLICY_SESSION):
                try:
                    tpm.flush_context(h)
                except TpmError:
                    pass  # listed twice (loaded and active) and already gone
