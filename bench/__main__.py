"""Run every benchmark module bench/bench_*.py (its main()), in name order, or only those named:
    PYTHONPATH=. python -m bench [verify ...]"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    if argv:
        wanted = {a if a.startswith("bench_") else "bench_" + a for a in argv}
        unknown = wanted - set(names)
        if unknown:
            sys.stderr.write("bench: no such benchmark: %s\n" % ", ".join(sorted(unknown)))
            return 2
        names = [n for n in names if n in wanted]
    failed = 0
    for name in names:
        print("== %s" % name, flush=True)
        start = time.monotonic()
        module = importlib.import_module("bench." + name)
        rc = module.main()
        print("== %s done in %.1f s%s" % (name, time.monotonic() - start,
                                         "" if not rc else " (exit %s)" % rc), flush=True)
        failed += 1 if rc else 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
