# Flash benchmark (docs/BENCHMARKS.md, "Flashing"): host_tools.flash uploading a signed bundle into
# the phone's SMP server (firmware/smp, firmware/update) behind an unthrottled pty, the same code
# the phone runs on its console. Reports payload bytes/s, the wire efficiency (payload bytes /
# bytes on the line: base64, SMP header, CBOR, CRC, line framing) and from it the ceiling on a
# 115200-baud 8N1 line (11520 bytes/s of line rate), plus upload-to-confirmed on the pty.
#
# Run: python -m bench.bench_flash  (or through `make bench`). main() prints and returns a dict.
from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from firmware.smp import header as H  # noqa: E402
from firmware.update import slots as S  # noqa: E402
from host_tools.flash.__main__ import Progress, check, upload  # noqa: E402
from host_tools.flash.client import SmpLink  # noqa: E402
from tests.interop.smp_device import PtyDevice  # noqa: E402
from tests.interop.test_smp_smpclient import FACTORY, VENDOR, _pem, make_bundle  # noqa: E402
from tests.serial_line import SerialLine  # noqa: E402

SIZE = 1_500_000  # about build/qemu-x86_64/bundle.tar
PACED_SIZE = 200_000  # ~30 s at 115200 baud
LINE_RATE_115200 = 115200 / 10


class _Null:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _flash(port: str, dev: PtyDevice, image: bytes) -> tuple[float, float, int, int]:
    """(upload s, upload-to-confirmed s, bytes sent on the line, chunk size) through `port`."""
    link = SmpLink.open(port, timeout=10)
    try:
        t0 = time.monotonic()
        params = link.request(H.OP_READ, H.GROUP_OS, H.OS_MCUMGR_PARAMS, {})
        chunk = int(params["buf_size"]) - 64
        upload(link, image, Progress(len(image), _Null()), chunk)  # type: ignore[arg-type]
        t_up = time.monotonic() - t0
        check(link.request(H.OP_WRITE, H.GROUP_IMAGE, H.IMG_STATE,
                           {"hash": hashlib.sha256(image).digest(), "confirm": False}), link)
        _, dev.slots.rec, _ = S.choose(dev.slots.rec)  # the loader's trial boot
        check(link.request(H.OP_WRITE, H.GROUP_IMAGE, H.IMG_STATE, {"confirm": True}), link)
        return t_up, time.monotonic() - t0, link.bytes_sent, chunk
    finally:
        link.close()


def _device(d: str) -> PtyDevice:
    dev = PtyDevice(Path(d), _pem(VENDOR), "qemu-x86_64", floor=1, factory=FACTORY)
    dev.slots.rec = S.initial("a", "1.0.0", 1, hashlib.sha256(FACTORY).digest())
    dev.slots.save()
    return dev


def main() -> dict[str, Any]:
    image = make_bundle("1.1.0", 2, size=SIZE)
    with tempfile.TemporaryDirectory() as d:
        dev = _device(d)
        try:
            t_up, t_conf, wire, chunk = _flash(dev.path, dev, image)
        finally:
            dev.close()
    eff = len(image) / wire
    # the same through a line paced at 115200 baud 8N1 (tests/serial_line.py), smaller image
    small = make_bundle("1.1.0", 2, size=PACED_SIZE)
    with tempfile.TemporaryDirectory() as d:
        dev = _device(d)
        try:
            with SerialLine(dev.path, baud=115200) as line:
                p_up, p_conf, _, _ = _flash(line.url, dev, small)
        finally:
            dev.close()
    out = {"bytes": len(image), "chunk": chunk, "upload_s": round(t_up, 2),
           "payload_Bps": round(len(image) / t_up), "wire_efficiency": round(eff, 3),
           "ceiling_115200_Bps": round(LINE_RATE_115200 * eff),
           "upload_to_confirmed_s": round(t_conf, 2),
           "paced_115200_bytes": len(small), "paced_115200_upload_s": round(p_up, 2),
           "paced_115200_payload_Bps": round(len(small) / p_up),
           "paced_115200_of_line_rate": round(len(small) / p_up / LINE_RATE_115200, 3),
           "paced_115200_upload_to_confirmed_s": round(p_conf, 2)}
    for k, v in out.items():
        print("%-36s %s" % (k, v))
    return out


if __name__ == "__main__":
    main()
