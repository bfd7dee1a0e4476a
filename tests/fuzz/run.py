"""Run every fuzz target (or the ones named) for a fixed number of inputs, one after the other,
and print inputs/s. `make fuzz` runs this with FUZZ_RUNS (default 1000000).

    PYTHONPATH=. .venv/bin/python tests/fuzz/run.py [-runs=N] [TARGET ...]

Exit status 1 if any target crashed (the input is in build/fuzz/<target>/crash-*) or did not run
the given number of inputs."""
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = ("sip_message", "sdp", "sdes", "rtp", "srtp", "eventlog", "tpm_response", "manifest",
           "ustar", "console", "ua", "uki_delta", "efivars")


def run_target(name, runs, work=None, extra=()):
    """(ok, executed inputs, seconds, libFuzzer output) of one target run for `runs` inputs."""
    env = dict(os.environ)
    if work is not None:
        env["FUZZ_WORK"] = work
    cmd = [sys.executable, os.path.join(HERE, "fuzz_%s.py" % name), "-runs=%d" % runs,
           "-print_final_stats=1", "-seed=1"] + list(extra)
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    secs = time.monotonic() - t0
    out = p.stdout.decode("utf-8", "replace")
    m = re.search(r"stat::number_of_executed_units: (\d+)", out)
    executed = int(m.group(1)) if m else 0
    ok = p.returncode == 0 and executed == runs and "Uncaught Python exception" not in out
    return ok, executed, secs, out


def main(argv):
    runs = 1000000
    names = []
    for a in argv:
        if a.startswith("-runs="):
            runs = int(a[6:])
        else:
            names.append(a)
    bad = []
    print("%-14s %10s %9s %10s" % ("target", "inputs", "seconds", "inputs/s"))
    for name in names or TARGETS:
        ok, executed, secs, out = run_target(name, runs)
        print("%-14s %10d %9.1f %10.0f %s" % (name, executed, secs, executed / secs if secs else 0,
                                             "ok" if ok else "FAILED"), flush=True)
        if not ok:
            bad.append(name)
            sys.stdout.write(out[-3000:])
    if bad:
        print("failed: %s (inputs in build/fuzz/<target>/crash-*)" % " ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
