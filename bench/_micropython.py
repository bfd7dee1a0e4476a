"""Run a benchmark script under the real `micropython` binary (the venv's, else PATH's)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script: str, timeout: float = 120) -> str | None:
    """The script's stdout, with `REPO` defined for it; None when no micropython is installed.
    Raises RuntimeError with the tail of its stderr when the script fails."""
    mpy = os.path.join(REPO, ".venv", "bin", "micropython")
    if not os.path.exists(mpy):
        mpy = shutil.which("micropython") or ""
    if not mpy:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write("REPO = %r\n" % REPO + script)
        path = f.name
    try:
        out = subprocess.run([mpy, "-X", "heapsize=64M", path], capture_output=True, text=True,
                             timeout=timeout, cwd=REPO)
    finally:
        os.unlink(path)
    if out.returncode != 0:
        raise RuntimeError("micropython benchmark failed: " + out.stderr.strip()[-500:])
    return out.stdout
