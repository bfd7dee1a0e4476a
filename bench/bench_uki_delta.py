# UKI delta benchmark (docs/BENCHMARKS.md, "UKI delta"): real UKIs built from this tree and
# build/keys (tests/system/uki_support.py: version 0.1.0 as the installed one; the next version;
# the next version with one line of loader code changed). Reports the full package vs the delta package, the time to make the delta on the host
# and to check and rebuild it with the device's code (firmware/update/uki_package.py, CPython on
# this host; the root broker runs the same code), and the time on the serial line at the rate
# measured into the phone at 115200 baud (6.6 kB/s, "Flashing" above).
#
# Run: python -m bench.bench_uki_delta  (or through `make bench`). main() prints and returns a dict.
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from firmware.boot import signature  # noqa: E402
from firmware.update import uki_package as U  # noqa: E402
from host_tools.image import uki_delta  # noqa: E402
from tests.system.conftest import BOARD  # noqa: E402
from tests.system.uki_support import build_ukis  # noqa: E402

LINE_115200_BPS = 6600  # measured into the phone through a paced 115200-baud line


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        old_build, new_builds = build_ukis(Path(d))
        old = old_build.uki
        out: dict[str, Any] = {"uki_bytes": len(old)}
        for new in new_builds:
            full = new.package
            verify = signature.load_public_key((new.out / "vendor-pubkey.pem").read_bytes())
            t0 = time.monotonic()
            delta = uki_delta.make_delta(full, old)
            t_make = time.monotonic() - t0
            t0 = time.monotonic()
            U.verify(delta, verify, BOARD, 0)
            rebuilt = U.rebuild(delta, lambda off, n: old[off:off + n])
            t_rebuild = time.monotonic() - t0
            assert rebuilt == new.uki
            out[new.name] = {"what": new.what, "full_package_bytes": len(full),
                             "delta_package_bytes": len(delta),
                             "delta_of_full": round(len(delta) / len(full), 4),
                             "make_delta_s": round(t_make, 2),
                             "verify_and_rebuild_s": round(t_rebuild, 2),
                             "line_115200_full_s": round(len(full) / LINE_115200_BPS),
                             "line_115200_delta_s": round(len(delta) / LINE_115200_BPS, 1)}
    for k, v in out.items():
        print("%-12s %s" % (k, v))
    return out


if __name__ == "__main__":
    main()
