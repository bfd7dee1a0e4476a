"""Every fuzz target runs in CI for a short fixed budget: atheris in a subprocess, RUNS inputs from
the committed and generated seeds (fewer for the slow targets) (libFuzzer -seed=1, a fresh work corpus), and the target must
run all of them without a crash. `make fuzz` runs the long campaigns (tests/fuzz/README.md)."""
import os

import pytest

from tests.fuzz.run import TARGETS, run_target

RUNS = 2000
# The slow targets get fewer inputs (rates in docs/BENCHMARKS.md): one UA input is a whole
# session of ~10 messages; ustar checksums 512-byte headers byte by byte.
BUDGET = {"ua": 150, "sip_message": 1000, "ustar": 1000, "console": 1000}


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_runs_without_crash(target, tmp_path):
    runs = BUDGET.get(target, RUNS)
    ok, executed, _secs, out = run_target(target, runs, work=str(tmp_path))
    crashes = [f for f in os.listdir(tmp_path / target) if f.startswith(("crash-", "timeout-", "oom-"))]
    assert crashes == [], "%s crashed:\n%s" % (target, out[-4000:])
    assert "Uncaught Python exception" not in out, out[-4000:]
    assert executed == runs, out[-4000:]
    assert ok, out[-4000:]
    assert "Done %d runs" % runs in out
