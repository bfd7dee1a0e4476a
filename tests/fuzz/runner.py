"""Shared runner for the atheris harnesses in tests/fuzz/ (one fuzz_<target>.py per parser).

A harness calls `main(NAME, one_input, ALLOWED, seeds)`:
  * `one_input(data)` feeds one input to the real parser; it returns normally, or raises one of the
    `ALLOWED` exception types (the parser's documented errors). Anything else is a crash: atheris
    prints the traceback and libFuzzer writes the input to build/fuzz/<NAME>/crash-<sha1>.
  * `seeds()` yields seed inputs made at run time from real sources (tests/data logs, recorded TPM
    responses, the built bundle); tests/fuzz/corpus/<NAME>/ holds the committed ones.

Usage (libFuzzer flags pass through):
    python tests/fuzz/fuzz_sip_message.py                    # fuzz until stopped
    python tests/fuzz/fuzz_sip_message.py -runs=1000000      # a fixed number of inputs
    python tests/fuzz/fuzz_sip_message.py CRASHFILE          # re-run one input (reproduce a crash)
New inputs go to build/fuzz/<NAME>/corpus, or $FUZZ_WORK/<NAME>/corpus (the committed corpus is
never written to).
"""

import hashlib
import os
import sys

import atheris

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
WORK = os.environ.get("FUZZ_WORK") or os.path.join(ROOT, "build", "fuzz")


def _write_seed(d, data):
    path = os.path.join(d, hashlib.sha1(data).hexdigest())
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)


def prepare_corpus(name, seeds=None):
    """build/fuzz/<name>/corpus holding the committed seeds and the generated ones."""
    work = os.path.join(WORK, name, "corpus")
    os.makedirs(work, exist_ok=True)
    committed = os.path.join(CORPUS, name)
    if os.path.isdir(committed):
        for fn in sorted(os.listdir(committed)):
            with open(os.path.join(committed, fn), "rb") as f:
                _write_seed(work, f.read())
    if seeds is not None:
        for data in seeds():
            _write_seed(work, bytes(data))
    return work


def main(name, one_input, allowed, seeds=None):
    allowed = tuple(allowed)

    def test_one_input(data):
        try:
            one_input(data)
        except allowed:
            pass

    argv = list(sys.argv)
    inputs = [a for a in argv[1:] if not a.startswith("-")]
    flags = [a for a in argv[1:] if a.startswith("-")]
    if not inputs or all(os.path.isdir(a) for a in inputs):
        # Fuzzing (not reproducing one file): work corpus first, so new inputs are saved there.
        os.makedirs(os.path.join(WORK, name), exist_ok=True)
        inputs = [prepare_corpus(name, seeds)] + inputs
        if not any(f.startswith("-artifact_prefix=") for f in flags):
            flags.append("-artifact_prefix=" + os.path.join(WORK, name) + os.sep)
    if not any(f.startswith("-timeout=") for f in flags):
        flags.append("-timeout=20")   # a slow input is a finding too (quadratic parsing)
    atheris.Setup([argv[0]] + flags + inputs, test_one_input)
    atheris.Fuzz()
