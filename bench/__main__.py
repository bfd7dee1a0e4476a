"""Run every benchmark module bench/bench_*.py (its main()), in name order, or only those named:
    PYTHONPATH=. python -m bench [verify ...]

A benchmark fails when its main() raises or returns a non-zero int; other return values (None, a
dict of results) count as success. A failing benchmark does not stop the others."""

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
        try:
            module = importlib.import_module("bench." + name)
            rc = module.main()
        except (Exception, SystemExit) as e:
            print("== %s FAILED: %s: %s" % (name, type(e).__name__, e), flush=True)
            failed += 1
            continue
        bad = isinstance(rc, int) and not isinstance(rc, bool) and rc != 0
        print("== %s done in %.1f s%s" % (name, time.monotonic() - start,
                                         " (exit %d)" % rc if bad else ""), flush=True)
        failed += 1 if bad else 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
