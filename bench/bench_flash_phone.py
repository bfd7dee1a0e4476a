# Flashing into a booted QEMU phone (docs/BENCHMARKS.md "Flashing", issue 11): `host_tools.flash`
# uploads a signed bundle into bank b over the phone's console, QEMU's serial port (a pty: QEMU
# does not throttle it), once straight and once through tests/serial_line.py paced at 115200 baud
# 8N1 (11,520 bytes/s each way, as a UART at that rate delivers them). Payload bytes/s and the
# share of the line rate. The bundle is signed with the vendor key for this board with a higher
# anti-rollback counter (so the device writes it) and holds filler components (PACED_SIZE bytes:
# a full 2 MB bundle would take ~4.5 min at 115200); it is uploaded, not marked for test.
#
# Run: PYTHONPATH=. python -m bench flash_phone  (boots one phone, ~2 min)
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from host_tools.console import Console  # noqa: E402
from host_tools.image import bundle as B  # noqa: E402
from host_tools.qemu.device import Device, DeviceConfig  # noqa: E402
from tests.serial_line import SerialLine  # noqa: E402
from tests.system.conftest import BOARD  # noqa: E402

IMAGE = REPO / "build" / BOARD
SIZE = 200_000
LINE_RATE_115200 = 115200 / 10


def _bundle(version: str, counter: int) -> bytes:
    key = B.load_or_create_key(REPO / "build" / "keys" / "dev-signing-key.pem", create=False)
    filler = hashlib.shake_256(version.encode()).digest(SIZE)   # incompressible, like code
    comps = [B.Component("phone-app", version, filler)]
    man = B.manifest(BOARD, version, counter, comps)
    return B.pack(man, B.sign(key, man), comps)


def _flash(port: str, image: bytes, tmp: Path) -> float:
    f = tmp / ("bundle-%s.tar" % hashlib.sha256(image).hexdigest()[:8])
    f.write_bytes(image)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "host_tools.flash", "--port", port, str(f)],
                       cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    if p.returncode != 0:
        raise RuntimeError("flash failed: %s %s" % (p.stdout, p.stderr[-500:]))
    return time.monotonic() - t0


def main() -> dict[str, Any]:
    ref = json.loads((IMAGE / "reference.json").read_text())
    counter = int(ref["anti_rollback_counter"])
    with tempfile.TemporaryDirectory(prefix="bench-flash-phone-") as d:
        tmp = Path(d)
        dev = Device("bench-flash", DeviceConfig(board=BOARD, build_dir=IMAGE, devices_dir=tmp))
        with dev.running("pty") as run:
            con = Console.open(run.target)
            try:
                run.wait_prompt(con, 300)
            finally:
                con.close()
            a = _bundle("0.8.0", counter + 1)
            t_direct = _flash(run.target, a, tmp)
            b = _bundle("0.8.1", counter + 1)
            with SerialLine(run.target, baud=115200) as line:
                t_paced = _flash(line.url, b, tmp)
            con = Console.open(run.target)
            try:
                run.shutdown(con)
            except Exception:  # noqa: BLE001  the measurement is taken
                con.close()
    out = {"bundle_bytes": len(a), "unthrottled_s": round(t_direct, 1),
           "unthrottled_Bps": round(len(a) / t_direct),
           "paced_115200_s": round(t_paced, 1), "paced_115200_Bps": round(len(b) / t_paced),
           "paced_115200_of_line_rate": round(len(b) / t_paced / LINE_RATE_115200, 3)}
    for k, v in out.items():
        print("%-28s %s" % (k, v))
    return out


if __name__ == "__main__":
    main()
